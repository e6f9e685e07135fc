"""`pip install .` into a fresh venv gives a working `kubernaut-e2e`: the stack and knowledge
base ship as package data, and the command works from any directory, relative to it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, make_source_tree

PACKAGE = ROOT / "kubernaut_e2e"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with this project installed by `pip install .` (from a copy: the build must not
    write into the checkout). pip may use the wheels it has cached."""
    base = tmp_path_factory.mktemp("install")
    copy = base / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".e2e", "build", "*.egg-info", "__pycache__",
                                                              ".pytest_cache", "tests"))
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True)
    pip = subprocess.run([str(base / "venv" / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "."],
                         cwd=copy, capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    yield base / "venv"


def _site_package(venv: Path) -> Path:
    found = list(venv.glob("lib/python*/site-packages/kubernaut_e2e"))
    assert len(found) == 1, found
    return found[0]


def _run(venv: Path, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "PYTHON"))}
    return subprocess.run([str(venv / "bin" / "kubernaut-e2e"), *args], cwd=cwd, capture_output=True, text=True,
                          env={**clean, **(env or {})}, timeout=120)


def test_the_installed_package_holds_the_stack_and_the_knowledge_base(venv: Path):
    installed = _site_package(venv)
    shipped = [p.relative_to(PACKAGE) for p in (PACKAGE / "stacks").rglob("*") if p.is_file()
               and "__pycache__" not in p.parts]
    shipped.append(Path("signatures.yaml"))
    assert any(p.name == "Dockerfile.gateway" for p in shipped) and any(p.suffix == ".yaml" for p in shipped)
    for rel in shipped:
        assert (installed / rel).is_file(), f"{rel} is missing from the installed package"
        assert (installed / rel).read_bytes() == (PACKAGE / rel).read_bytes()
    modules = {p.name for p in PACKAGE.glob("*.py")}
    assert modules <= {p.name for p in installed.glob("*.py")}


def test_list_and_help_from_an_unrelated_directory(venv: Path, tmp_path: Path):
    listed = _run(venv, "--list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines()[1:] if line.startswith("  ") and line.split()}
    assert {"up", "clean", "plan", "diagnose", "toolchain", "test", "ci"} <= names
    assert not any(name.startswith("e2e.") for name in names)
    helped = _run(venv, "--help", "up", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("Usage: kubernaut-e2e [--core-opts] up")
    assert "Docstring:" in helped.stdout and "--source-dir" in helped.stdout and "--keep-going" in helped.stdout


def _plan(result: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
    assert result.returncode == 0, result.stderr
    return {step["name"]: step["commands"] for step in json.loads(result.stdout)["steps"]}


def _build_command(plan: dict) -> str:
    """The `podman build` line of the plan's build-gateway step (a Dockerfile check comes first)."""
    return next(c for c in plan["build-gateway"] if " build " in c)


def test_plan_takes_relative_paths_from_where_the_user_stands(venv: Path, tmp_path: Path):
    src = make_source_tree(tmp_path / "elsewhere")
    work = tmp_path / "work"
    work.mkdir()
    plan = _plan(_run(venv, "plan", "--json", "--source-dir", "../elsewhere/kubernaut", "--state-dir", "st",
                      cwd=work))
    build = _build_command(plan)
    assert build.endswith(f" {src}"), build  # the build context: the tree given, relative to `work`
    assert f"-f {_site_package(venv)}/stacks/gateway-e2e/Dockerfile.gateway" in build
    assert f"--kubeconfig {work / 'st' / 'state' / 'gateway-e2e' / 'kubeconfig'}" in " ".join(plan["cluster"])


def test_inside_a_kubernaut_checkout_it_is_the_default_source(venv: Path, tmp_path: Path):
    src = make_source_tree(tmp_path)
    xdg = tmp_path / "xdg"
    plan = _plan(_run(venv, "plan", "--json", cwd=src / "cmd" / "gateway", env={"XDG_STATE_HOME": str(xdg)}))
    assert _build_command(plan).endswith(f" {src}")
    assert any(str(src / "config" / "crd" / "bases") in c for c in plan["crds"])
    # Run state is the user's, not a folder inside the checkout.
    assert f"--kubeconfig {xdg / 'kubernaut-e2e' / 'state' / 'gateway-e2e' / 'kubeconfig'}" in " ".join(plan["cluster"])


def test_the_commands_config_file_is_read_where_the_user_stands(venv: Path, tmp_path: Path):
    src = make_source_tree(tmp_path / "trees")
    (tmp_path / "kubernaut-e2e.yaml").write_text("e2e:\n  source_dir: trees/kubernaut\n  cluster_name: mine\n")
    plan = _plan(_run(venv, "plan", "--json", cwd=tmp_path))
    assert _build_command(plan).endswith(f" {src}")
    assert "--name mine" in " ".join(plan["cluster"])
    (tmp_path / "kubernaut-e2e.yaml").write_text("e2e:\n  jobs: [1, 2\n")
    broken = _run(venv, "plan", cwd=tmp_path)
    assert broken.returncode == 2 and broken.stdout == ""
    assert broken.stderr.strip().startswith("kubernaut-e2e: ")
    assert "kubernaut-e2e.yaml: not valid YAML (line 3)" in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1


def test_invoke_from_this_checkout_still_takes_paths_from_the_project():
    result = subprocess.run([sys.executable, "-m", "invoke", "e2e.plan", "--json", "--source-dir", "some/tree"],
                            cwd=ROOT / "tests", capture_output=True, text=True, timeout=60)
    plan = _plan(result)
    assert _build_command(plan).endswith(f" {ROOT / 'some' / 'tree'}")
