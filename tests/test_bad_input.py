"""Bad input: one line naming the input (and where it was set), exit 2, before any side effect,
and never a traceback."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, Project

def _kind_side_effects(project: Project) -> list[list[str]]:
    """The kind commands run, but for preflight's questions (its version, its clusters)."""
    return [c["argv"] for c in project.kind_calls() if c["argv"] not in (["version"], ["get", "clusters"])]


CASES = [
    ("unknown --only", ["e2e.up", "--only", "gatewy"], {}, "--only gatewy: no such step or group"),
    ("negative timeout", ["e2e.up"], {"INVOKE_E2E_READY_TIMEOUT": "-5"},
     "config e2e.ready_timeout (from INVOKE_E2E_READY_TIMEOUT): -5 must be a positive"),
    ("bad jobs flag", ["e2e.up", "--jobs", "many"], {}, "config e2e.jobs (from --jobs): expected an integer"),
    ("bad jobs short flag", ["e2e.ci", "-j", "many"], {}, "config e2e.jobs (from --jobs): expected an integer"),
    ("bad jobs env", ["e2e.plan"], {"INVOKE_E2E_JOBS": "abc"},
     "config e2e.jobs (from INVOKE_E2E_JOBS): expected an integer, got 'abc'"),
    ("unknown env key", ["e2e.plan"], {"INVOKE_E2E_BOGUS": "1"}, "config e2e.bogus (from INVOKE_E2E_BOGUS): unknown key"),
    ("bad provider flag", ["e2e.plan", "--provider", "lxc"], {},
     "config e2e.provider (from --provider): 'lxc' must be one of"),
    ("jobs zero flag", ["e2e.up", "-j", "0"], {}, "config e2e.jobs (from --jobs): 0 must be at least 1"),
    ("missing stack", ["e2e.up"], {"INVOKE_E2E_STACK": "/no/such/stack.yaml"},
     "stack /no/such/stack.yaml: cannot be read"),
    ("bad image tag", ["e2e.clean"], {"INVOKE_E2E_IMAGE_TAG": "Bad Tag"},
     "config e2e.image_tag (from INVOKE_E2E_IMAGE_TAG): 'Bad Tag'"),
    ("unknown host port", ["e2e.plan"], {"INVOKE_E2E_HOST_PORTS": "gatway-api=1"},
     "config e2e.host_ports (from INVOKE_E2E_HOST_PORTS): 'gatway-api=1' names no port of the stack"),
    ("unsplittable test command", ["e2e.test"], {"INVOKE_E2E_TEST_COMMAND": "go 'test"}, "e2e.test_command"),
    ("state dir under a file", ["e2e.up", "--only", "cluster"], {"INVOKE_E2E_STATE_DIR": "/dev/null/state"},
     "config e2e.state_dir: cannot create the lock /dev/null/state/locks/"),
]


def _one_clean_line(result: subprocess.CompletedProcess[str]) -> None:
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("args, env, says", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exit_2_one_line_no_side_effect(project: Project, args, env, says):
    result = project.run(*args, extra_env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr
    _one_clean_line(result)
    assert _kind_side_effects(project) == []
    assert not (project.state / "runs").exists()


def test_read_only_state_dir_is_one_line_exit_2(project: Project, small_fs):
    state = small_fs(size="1m", read_only=True)
    result = project.run("e2e.up", "--only", "cluster", extra_env={"INVOKE_E2E_STATE_DIR": str(state / "e2e")})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "config e2e.state_dir: cannot create the lock" in result.stderr
    assert "Read-only file system" in result.stderr
    _one_clean_line(result)
    assert _kind_side_effects(project) == []


def test_crd_that_is_not_yaml_stops_up_before_anything(project: Project):
    crd = project.source / "config" / "crd" / "bases" / "kubernaut.ai_remediationrequests.yaml"
    crd.write_text("apiVersion: apiextensions.k8s.io/v1\nkind: [CustomResourceDefinition\n")
    result = project.run("e2e.up")
    assert result.returncode == 2
    assert f"manifest {crd}: not valid YAML" in result.stderr
    assert _kind_side_effects(project) == []


def test_crd_alias_bomb_is_refused_before_anything(project: Project):
    crd = project.source / "config" / "crd" / "bases" / "kubernaut.ai_remediationrequests.yaml"
    crd.write_text(_BOMB + "kind: CustomResourceDefinition\nmetadata: {name: x}\n")
    started = __import__("time").monotonic()
    result = project.run("e2e.up", timeout=60)
    assert __import__("time").monotonic() - started < 30
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"manifest {crd}" in result.stderr and "aliases" in result.stderr
    _one_clean_line(result)
    assert _kind_side_effects(project) == []


def test_no_migrations_stops_up_before_anything(project: Project):
    for path in (project.source / "migrations").iterdir():
        path.unlink()
    result = project.run("e2e.up")
    assert result.returncode == 2, result.stderr
    assert f"{project.source}/migrations/*.sql: no files match, but component migrations applies them" \
        in result.stderr
    assert _kind_side_effects(project) == []


def test_stack_with_a_missing_dockerfile_is_named_with_its_key(project: Project, tmp_path):
    stack = tmp_path / "stack.yaml"
    stack.write_text(f"extends: {project.stack}\nimages:\n  gateway:\n    dockerfile: nope.Dockerfile\n")
    result = project.run("e2e.up", extra_env={"INVOKE_E2E_STACK": str(stack)})
    assert result.returncode == 2
    assert f"stack {stack}: images.gateway.dockerfile: {tmp_path / 'nope.Dockerfile'} does not exist" in result.stderr
    assert _kind_side_effects(project) == []


def test_source_tree_missing_what_the_stack_builds_from_stops_up(project: Project):
    import shutil

    shutil.rmtree(project.source / "cmd" / "gateway")
    result = project.run("e2e.up")
    assert result.returncode == 2
    assert f"preflight: {project.source}/cmd/gateway: missing, but image gateway is built from it" in result.stderr
    assert _kind_side_effects(project) == []


def test_go_mod_newer_than_the_builder_stops_up_naming_both(project: Project, tmp_path):
    # The fast stack's test Dockerfile has no Go builder; this stack builds with Go 1.24.
    dockerfile = tmp_path / "Dockerfile.go124"
    dockerfile.write_text("FROM registry.access.redhat.com/ubi9/go-toolset:1.24 AS builder\nARG TARGETARCH\n"
                          "RUN GOARCH=${TARGETARCH} go build ./cmd/gateway\nFROM scratch\nUSER 1001\n")
    stack = tmp_path / "stack.yaml"
    stack.write_text(f"extends: {project.stack}\nimages:\n  gateway:\n    dockerfile: Dockerfile.go124\n")
    result = project.run("e2e.up", extra_env={"INVOKE_E2E_STACK": str(stack)})
    assert result.returncode == 2
    assert "go 1.26.6 needs a newer Go than the builder's 1.24" in result.stderr
    assert str(dockerfile) in result.stderr and "fix: use a go-toolset tag >= 1.26.6" in result.stderr
    assert _kind_side_effects(project) == []


def test_busy_host_port_stops_up_before_the_cluster_is_created(project: Project):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", project.host_ports["gateway-health"]))
        holder.listen()
        result = project.run("e2e.up")
    assert result.returncode == 2
    port = project.host_ports["gateway-health"]
    assert f"preflight: host port {port} (gateway-health: Gateway /healthz and /readyz) is in use" in result.stderr
    assert [c["argv"][:2] for c in project.kind_calls()] == [["version"], ["get", "clusters"]]


def test_kind_older_than_the_node_image_needs_is_named(project: Project, tmp_path):
    stack = tmp_path / "stack.yaml"
    stack.write_text(f"extends: {project.stack}\ncluster:\n  kind_min_version: v0.40.0\n")
    result = project.run("e2e.up", extra_env={"INVOKE_E2E_STACK": str(stack)})
    assert result.returncode == 2
    assert "kind v0.32.0 is older than v0.40.0, which the node image kindest/node:v1.36.1 needs" \
        in result.stderr
    assert not any(c["argv"][:2] == ["create", "cluster"] for c in project.kind_calls())


# --- invoke.yaml: checked before Invoke reads it --------------------------------------------------

#: "Billion laughs": 9 levels of 9 aliases, 9^9 leaves once expanded.
_BOMB = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))


@pytest.fixture
def elsewhere(tmp_path: Path, project: Project):  # type: ignore[no-untyped-def]
    """A project folder of its own (tasks.py + invoke.yaml), using this checkout's package."""
    folder = tmp_path / "proj"
    folder.mkdir()
    shutil.copy(ROOT / "tasks.py", folder / "tasks.py")

    def run(yaml_text: str, *args: str, unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        (folder / "invoke.yaml").write_text(yaml_text)
        env = {k: v for k, v in {**project.env, "PYTHONPATH": str(ROOT)}.items() if k not in unset}
        return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=60)

    return run


@pytest.mark.parametrize("text, says", [
    (_BOMB, "invoke.yaml: line 2: YAML aliases (*a0) are not accepted here"),
    ("e2e:\n  jobs: [1, 2\n", "invoke.yaml: not valid YAML (line 3)"),
    ("e2e:\n  clustr_name: x\n", "config e2e.clustr_name (from {folder}/invoke.yaml): unknown key"),
    ("e2e:\n  jobs: four\n", "config e2e.jobs (from {folder}/invoke.yaml): expected an integer, got 'four'"),
    ("e2e: 5\n", "invoke.yaml: e2e must be a mapping of settings"),
    ("x" * (9 * 1024 * 1024), "is larger than the 8 MB accepted"),
], ids=["alias bomb", "not yaml", "unknown key", "bad value", "not a mapping", "huge"])
def test_bad_invoke_yaml_is_one_line_exit_2_at_once(elsewhere, tmp_path: Path, text: str, says: str):
    import time

    started = time.monotonic()
    result = elsewhere(text, "e2e.plan")
    assert time.monotonic() - started < 20  # the bomb is refused, not expanded
    assert result.returncode == 2, result.stdout + result.stderr
    assert says.format(folder=tmp_path / "proj") in result.stderr
    _one_clean_line(result)


def test_runtime_config_file_is_checked_too(elsewhere, tmp_path: Path):
    runtime = tmp_path / "ci.yaml"
    runtime.write_text(_BOMB)
    result = elsewhere("e2e:\n  jobs: 2\n", "-f", str(runtime), "e2e.plan")
    assert result.returncode == 2 and f"{runtime}: line 2: YAML aliases" in result.stderr
    _one_clean_line(result)


def test_good_invoke_yaml_is_used(elsewhere):
    result = elsewhere("e2e:\n  cluster_name: from-yaml\n", "e2e.plan", "--json", unset=("INVOKE_E2E_CLUSTER_NAME",))
    assert result.returncode == 0, result.stderr
    assert '"cluster": "from-yaml"' in result.stdout


def test_broken_invoke_yaml_does_not_kill_pytest_collection(tmp_path: Path):
    folder = tmp_path / "proj"
    folder.mkdir()
    shutil.copy(ROOT / "tasks.py", folder / "tasks.py")
    (folder / "invoke.yaml").write_text("e2e:\n  jobs: [1, 2\n")
    (folder / "test_imports_tasks.py").write_text("import tasks\n\n\ndef test_collection():\n"
                                                  "    assert tasks.ns.collections['e2e']\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
                            cwd=folder, env={**__import__("os").environ, "PYTHONPATH": f"{ROOT}:{folder}"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
