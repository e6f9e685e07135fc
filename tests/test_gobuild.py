"""The host-compile image path (`images.<name>.build: host`, kubernaut_e2e.gobuild).

Pure parts first (argv, environment, generated Dockerfile and its checks, the ELF check; the
stack's keys are tested in test_stack.py), then the real thing: `e2e.up --only build-gateway` compiling the fixture tree's
real (tiny) Go main with the host's Go and packing it with real podman.
"""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import pytest

from kubernaut_e2e import gobuild, podman
from kubernaut_e2e.stack import load_stack
from tests.conftest import FAST_STACK, Project

HOST_ARCH = podman.normalize_arch(platform.machine())
REDHAT_BASE = "registry.access.redhat.com/ubi10/ubi-minimal:latest"


def _stack(tmp_path: Path, image: str) -> Path:
    path = tmp_path / "stack.yaml"
    path.write_text(f"extends: {FAST_STACK}\nimages:\n  gateway:\n{image}")
    return path


def _host_image(tmp_path: Path, extra: str = "", base: str = "scratch") -> Path:
    return _stack(tmp_path, f"    dockerfile: null\n    build_args: null\n    build: host\n"
                            f"    package: ./cmd/gateway\n    base: {base}\n{extra}")


# --- pure builders ---------------------------------------------------------------------------------

def test_go_build_targets_the_node_and_never_rewrites_go_mod():
    argv = gobuild.build_argv(Path("/src"), "./cmd/gateway", Path("/b/binary"))
    assert argv == ["go", "-C", "/src", "build", "-trimpath", "-ldflags=-s -w", "-o", "/b/binary", "./cmd/gateway"]
    assert not any(a.startswith("-mod") for a in argv)
    assert gobuild.build_env("arm64") == {"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "arm64"}
    assert gobuild.build_env("amd64", "-cover")["GOFLAGS"] == "-cover"


def test_generated_dockerfile_packs_binary_and_files_into_the_base(tmp_path: Path):
    spec = load_stack(_host_image(tmp_path, "    files: {api/openapi/data-storage-v1.yaml: /usr/share/api.yaml}\n",
                                  base=REDHAT_BASE)).image("gateway")
    text = gobuild.dockerfile_text(spec)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines[0] == f"FROM {REDHAT_BASE}"
    assert "COPY binary /usr/local/bin/gateway" in lines
    assert "COPY file-0-data-storage-v1.yaml /usr/share/api.yaml" in lines
    assert lines[-2:] == ["USER 1001", 'ENTRYPOINT ["/usr/local/bin/gateway"]']
    assert f"LABEL {gobuild.GOOS_LABEL}=${{TARGETOS}} {gobuild.GOARCH_LABEL}=${{TARGETARCH}}" in lines
    plan = gobuild.copy_plan(spec, Path("/src"), Path("/ctx"))
    assert plan == {Path("/src/api/openapi/data-storage-v1.yaml"): Path("/ctx/file-0-data-storage-v1.yaml")}


def test_generated_dockerfile_passes_the_toolchain_checks_only_from_an_approved_registry(tmp_path: Path):
    approved = ("registry.access.redhat.com",)
    good = load_stack(_host_image(tmp_path, base=REDHAT_BASE)).image("gateway")
    found = {c.name: c for c in gobuild.checks(good, "arm64", approved, "generated")}
    assert all(c.status == "ok" for c in found.values()), found
    assert "GOARCH=arm64" in found["targetarch"].detail  # answered by how the binary is built
    bad = load_stack(_host_image(tmp_path, base="docker.io/library/alpine:3")).image("gateway")
    failed = [c for c in gobuild.checks(bad, "arm64", approved, "generated") if c.status == "fail"]
    assert [c.name for c in failed] == ["base-image"] and "docker.io" in failed[0].detail


def test_elf_arch_reads_the_machine_field():
    def header(machine: int, order: str = "little") -> bytes:
        return b"\x7fELF" + bytes([2, 1 if order == "little" else 2]) + bytes(12) + machine.to_bytes(2, order)

    assert gobuild.elf_arch(header(62)) == "amd64"
    assert gobuild.elf_arch(header(183)) == "arm64"
    assert gobuild.elf_arch(header(22, "big")) == "s390x"
    assert gobuild.elf_arch(b"#!/bin/sh\n" + bytes(10)) is None
    with open(sys.executable, "rb") as fh:  # a real executable of this machine
        assert gobuild.elf_arch(fh.read(20)) == HOST_ARCH


def test_source_problems_name_go_the_package_and_the_files(tmp_path: Path):
    spec = load_stack(_host_image(tmp_path, "    files: {api/x.yaml: /x.yaml}\n")).image("gateway")
    problems = gobuild.source_problems(spec, tmp_path / "src", tmp_path / "stack.yaml", lambda tool: None)
    assert len(problems) == 3
    assert "`go` is not on PATH" in problems[0]
    assert problems[1].startswith(f"{tmp_path / 'src' / 'cmd' / 'gateway'}: missing, but image gateway compiles it")
    assert "api/x.yaml: missing" in problems[2]


def test_podman_build_takes_a_platform():
    argv = podman.build("podman", Path("/b/Dockerfile"), "localhost/g:t", Path("/b/context"), "arm64",
                        platform="linux/arm64")
    assert argv[argv.index("--platform") + 1] == "linux/arm64"
    assert "--platform" not in podman.build("podman", Path("/d"), "r:t", Path("/c"), "arm64")


# --- for real: go build on the host, podman packs it ------------------------------------------------

def _inspect(project: Project, ref: str) -> dict:
    return json.loads(project.podman("image", "inspect", ref, check=True).stdout)[0]


def _build_note(project: Project) -> str:
    return next(s for s in project.timings()["steps"] if s["name"] == "build-gateway")["note"] or ""


def test_host_build_makes_a_native_image_and_rebuilds_only_on_change(project: Project, tmp_path: Path):
    stack = _host_image(tmp_path, "    files: {api/openapi/data-storage-v1.yaml: /etc/kubernaut/api.yaml}\n")
    env = {"INVOKE_E2E_STACK": str(stack)}
    ref = project.images["gateway"]
    main = project.source / "cmd" / "gateway" / "main.go"
    main.write_text('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("gateway r1") }\n')

    first = project.run("e2e.up", "--only", "build-gateway", extra_env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "compiled on the host" in _build_note(project)
    image = _inspect(project, ref)
    assert (image["Os"], image["Architecture"]) == ("linux", HOST_ARCH)
    assert image["Labels"][gobuild.GOARCH_LABEL] == HOST_ARCH and image["Labels"][gobuild.GOOS_LABEL] == "linux"
    assert image["Config"]["User"] == "1001"
    # The binary runs natively from the image, and the extra file is in it.
    ran = project.podman("run", "--rm", ref)
    assert ran.returncode == 0 and ran.stdout.strip() == "gateway r1", ran.stdout + ran.stderr
    container = project.podman("create", ref, check=True).stdout.strip()
    try:
        copied = project.podman("cp", f"{container}:/etc/kubernaut/api.yaml", str(tmp_path / "api.yaml"))
        assert copied.returncode == 0, copied.stderr
    finally:
        project.podman("rm", container)
    assert (tmp_path / "api.yaml").read_text() == (project.source / "api/openapi/data-storage-v1.yaml").read_text()
    # The build context was the binary and the file, never the source tree.
    context = project.state / "state" / project.env["INVOKE_E2E_CLUSTER_NAME"] / "host-builds" / "gateway" / "context"
    assert sorted(p.name for p in context.iterdir()) == ["binary", "file-0-data-storage-v1.yaml"]

    again = project.run("e2e.up", "--only", "build-gateway", extra_env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _build_note(project) == "reused: inputs unchanged"
    assert _inspect(project, ref)["Id"] == image["Id"]

    main.write_text('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("gateway r2") }\n')
    changed = project.run("e2e.up", "--only", "build-gateway", extra_env=env)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "compiled on the host" in _build_note(project)
    assert _inspect(project, ref)["Id"] != image["Id"]
    assert project.podman("run", "--rm", ref).stdout.strip() == "gateway r2"


def test_host_build_from_an_unapproved_base_fails_before_compiling(project: Project, tmp_path: Path):
    stack = _host_image(tmp_path, base="docker.io/library/alpine:3")
    result = project.run("e2e.up", "--only", "build-gateway", extra_env={"INVOKE_E2E_STACK": str(stack)})
    assert result.returncode == 1
    assert "generated Dockerfile fails its checks" in result.stdout and "docker.io" in result.stdout
    log = (project.last_run_dir() / "build-gateway.log").read_text()
    assert "go -C" not in log and not project.image_exists(project.images["gateway"])


def test_host_build_with_a_missing_package_stops_in_preflight(project: Project, tmp_path: Path):
    stack = _stack(tmp_path, "    dockerfile: null\n    build: host\n    package: ./cmd/nope\n    base: scratch\n")
    result = project.run("e2e.up", extra_env={"INVOKE_E2E_STACK": str(stack)})
    assert result.returncode == 2
    assert f"preflight: {project.source}/cmd/nope: missing, but image gateway compiles it" in result.stderr
    assert project.kind_calls() == []


def test_plan_and_toolchain_show_the_host_build(project: Project, tmp_path: Path):
    env = {"INVOKE_E2E_STACK": str(_host_image(tmp_path))}
    plan = project.run("e2e.plan", extra_env=env)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"GOARCH={HOST_ARCH}" in plan.stdout and "go -C" in plan.stdout and "--platform" in plan.stdout
    toolchain = project.run("e2e.toolchain", extra_env=env)
    assert "no such file" not in toolchain.stderr, toolchain.stderr
    assert "gateway (build: host): base-image" in toolchain.stdout
    assert "gateway (build: host): targetarch" in toolchain.stdout
