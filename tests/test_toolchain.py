"""`invoke e2e.toolchain` against fixture Dockerfiles, and a real podman image built for arm64
for the image-vs-node check."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, Project

DF = ROOT / "tests" / "fixtures" / "dockerfiles"


def _toolchain(project: Project, *args: str) -> tuple[int, dict]:
    result = project.run("e2e.toolchain", "--json", *args)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def _checks(doc: dict, prefix: str) -> dict[str, dict]:
    return {c["name"].split(": ", 1)[1]: c for c in doc["checks"] if c["name"].startswith(prefix)}


@pytest.mark.parametrize("arch", ["arm64", "amd64"])
def test_compliant_dockerfile_passes_for_both_architectures(project: Project, arch: str):
    _, doc = _toolchain(project, "--dockerfile", str(DF / "compliant.Dockerfile"), "--arch", arch)
    checks = _checks(doc, "compliant.Dockerfile")
    assert all(c["status"] != "fail" for c in checks.values()), checks
    assert checks["targetarch"]["status"] == "ok"
    assert doc["facts"]["target_arch"] == arch


def test_golang_alpine_with_goarch_amd64_fails_on_arm64(project: Project):
    code, doc = _toolchain(project, "--dockerfile", str(DF / "golang-alpine-amd64.Dockerfile"), "--arch", "arm64")
    assert code == 1
    checks = _checks(doc, "golang-alpine-amd64.Dockerfile")
    assert checks["base-image"]["status"] == "fail" and "registry.access.redhat.com" in checks["base-image"]["fix"]
    assert checks["goarch"]["status"] == "fail" and "TARGETARCH" in checks["goarch"]["fix"]
    assert "1.24" in checks["go-version"]["detail"]


def test_golang_alpine_on_amd64_still_fails_the_registry_policy_only(project: Project):
    code, doc = _toolchain(project, "--dockerfile", str(DF / "golang-alpine-amd64.Dockerfile"), "--arch", "amd64")
    checks = _checks(doc, "golang-alpine-amd64.Dockerfile")
    assert code == 1 and checks["base-image"]["status"] == "fail"
    assert checks["goarch"]["status"] != "fail"


def test_platform_pin_fails_on_arm64_not_on_amd64(project: Project):
    code, doc = _toolchain(project, "--dockerfile", str(DF / "platform-pinned.Dockerfile"), "--arch", "arm64")
    assert _checks(doc, "platform-pinned.Dockerfile")["platform"]["status"] == "fail"
    _, doc = _toolchain(project, "--dockerfile", str(DF / "platform-pinned.Dockerfile"), "--arch", "amd64")
    assert _checks(doc, "platform-pinned.Dockerfile")["platform"]["status"] != "fail"


def test_built_image_architecture_against_the_node(project: Project, tmp_path: Path, hello_binary: Path):
    # A real arm64 image (FROM scratch: no emulator needed to build it).
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy(hello_binary, ctx / "hello")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY hello /hello\n")
    ref = project.images["gateway"]
    # --no-cache: podman 4.3 would reuse an amd64 layer built from the same instructions.
    project.podman("build", "--no-cache", "--platform", "linux/arm64", "-t", ref, str(ctx), check=True)
    inspected = project.podman("image", "inspect", "--format", "{{.Architecture}}", ref, check=True)
    assert inspected.stdout.strip() == "arm64"

    code, doc = _toolchain(project, "--arch", "amd64")
    image = next(c for c in doc["checks"] if c["name"] == "image gateway")
    assert code == 1 and image["status"] == "fail" and "emulated" in image["detail"]
    _, doc = _toolchain(project, "--arch", "arm64")
    assert next(c for c in doc["checks"] if c["name"] == "image gateway")["status"] == "ok"


def test_go_mod_lines_are_reported(project: Project):
    _, doc = _toolchain(project, "--dockerfile", str(DF / "compliant.Dockerfile"))
    go_mod = next(c for c in doc["checks"] if c["name"] == "go-mod")
    # The fixture tree's go.mod needs Go 1.26.6; the compliant fixture builds with Go 1.24.
    assert go_mod["status"] == "fail" and "go 1.26.6 needs a newer Go than the builder's 1.24" in go_mod["detail"]


def test_bad_input_is_exit_2(project: Project):
    missing = project.run("e2e.toolchain", "--dockerfile", "/no/such/Dockerfile")
    assert missing.returncode == 2 and "--dockerfile /no/such/Dockerfile" in missing.stderr
    bad_arch = project.run("e2e.toolchain", "--arch", "sparc9")
    assert bad_arch.returncode == 2 and "--arch sparc9" in bad_arch.stderr


def test_a_build_whose_dockerfile_hardcodes_another_arch_fails_before_building(project: Project, tmp_path: Path):
    other = "arm64" if project.podman("info", "--format", "{{.Host.Arch}}").stdout.strip() == "amd64" else "amd64"
    (tmp_path / "Dockerfile.bad").write_text(f"FROM scratch\nENV GOARCH={other}\nCOPY hello /usr/local/bin/gateway\n")
    stack = tmp_path / "stack.yaml"
    stack.write_text(f"extends: {project.stack}\nimages:\n  gateway:\n    dockerfile: Dockerfile.bad\n")
    result = project.run("e2e.up", "--only", "images", extra_env={"INVOKE_E2E_STACK": str(stack)})
    assert result.returncode == 1
    assert "Dockerfile check failed" in result.stdout and "GOARCH" in result.stdout
    steps = {s["name"]: s for s in project.timings()["steps"]}
    assert steps["build-gateway"]["status"] == "failed"
    assert "$ podman build" not in (project.last_run_dir() / "build-gateway.log").read_text()  # never started
    # The check belongs to the build: it did not hold up the cluster.
    assert steps["cluster"]["start"] < steps["build-gateway"]["end"]


def test_upstreams_own_dockerfile_from_the_source_tree_is_planned_and_checked(project: Project, tmp_path: Path):
    # A stack may build an image with upstream's Dockerfile (here the fixture tree's, shaped like it).
    stack = tmp_path / "stack.yaml"
    stack.write_text(f"extends: {project.stack}\nimages:\n  gateway:\n    dockerfile: null\n"
                     "    source_dockerfile: docker/gateway.Dockerfile\n")
    env = {"INVOKE_E2E_STACK": str(stack)}
    plan = json.loads(project.run("e2e.plan", "--json", extra_env=env).stdout)
    build = next(c for s in plan["steps"] if s["name"] == "build-gateway" for c in s["commands"] if " build " in c)
    assert f"-f {project.source / 'docker' / 'gateway.Dockerfile'}" in build
    result = project.run("e2e.toolchain", "--json", "--arch", "arm64", extra_env=env)
    doc = json.loads(result.stdout)
    rows = {c["name"]: c for c in doc["checks"] if c["name"].startswith("gateway.Dockerfile")}
    assert rows["gateway.Dockerfile: goarch"]["status"] == "ok"
    assert rows["gateway.Dockerfile: targetarch"]["status"] == "ok"
    # A source tree without that Dockerfile is named before anything runs.
    (project.source / "docker" / "gateway.Dockerfile").unlink()
    missing = project.run("e2e.up", extra_env=env)
    assert missing.returncode == 2
    assert f"{project.source / 'docker' / 'gateway.Dockerfile'}: Dockerfile of image gateway does not exist " \
           "(in the source tree)" in missing.stderr
