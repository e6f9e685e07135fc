"""Tests for kubernaut_e2e/dockerfile.py, the pure Dockerfile analysis behind the `toolchain` check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kubernaut_e2e.dockerfile import (
    Check,
    builder_go_version,
    check_dockerfile,
    check_go_mod,
    go_version_of_image,
    parse_dockerfile,
    parse_go_mod,
    registry_of,
    substitute,
)

DOCKERFILES = Path(__file__).parent / "fixtures" / "dockerfiles"


def run(name_or_text: str, arch: str) -> list[Check]:
    path = DOCKERFILES / name_or_text
    if path.suffix == ".Dockerfile" and path.exists():
        return check_dockerfile(path.read_text(), name_or_text, arch)
    return check_dockerfile(name_or_text, "Dockerfile", arch)


def named(checks: list[Check], name: str) -> list[Check]:
    return [c for c in checks if c.name == name]


def statuses(checks: list[Check], name: str) -> set[str]:
    return {c.status for c in named(checks, name)}


# --------------------------------------------------------------------------- the three fixtures


@pytest.mark.parametrize("arch", ["arm64", "amd64"])
def test_compliant_dockerfile_passes_on_both_architectures(arch: str) -> None:
    checks = run("compliant.Dockerfile", arch)
    assert [c for c in checks if c.status != "ok"] == []
    assert {c.name for c in checks} == {"base-image", "go-version", "goarch", "platform", "targetarch", "user"}
    (version,) = named(checks, "go-version")
    assert "Go 1.24" in version.detail and "ubi9/go-toolset:1.24" in version.detail  # ARG GO_VERSION resolved
    (targetarch,) = named(checks, "targetarch")
    assert "compliant.Dockerfile:16" in targetarch.detail


def test_golang_alpine_fails_registry_and_goarch_on_arm64() -> None:
    checks = run("golang-alpine-amd64.Dockerfile", "arm64")
    registry = named(checks, "base-image")
    assert [c.status for c in registry] == ["fail", "fail"]
    assert "docker.io/library/golang:1.24-alpine" in registry[0].detail
    assert "registry.access.redhat.com/ubi9/go-toolset" in registry[0].fix
    (goarch,) = named(checks, "goarch")
    assert goarch.status == "fail"
    assert "golang-alpine-amd64.Dockerfile:3" in goarch.detail and "GOARCH=amd64" in goarch.detail
    assert "use ${TARGETARCH}" in goarch.fix
    assert "Go 1.24" in named(checks, "go-version")[0].detail
    assert statuses(checks, "targetarch") == {"warn"}


def test_golang_alpine_on_amd64_still_fails_registry_and_warns_about_goarch() -> None:
    checks = run("golang-alpine-amd64.Dockerfile", "amd64")
    assert statuses(checks, "base-image") == {"fail"}
    assert statuses(checks, "goarch") == {"warn"}


def test_platform_pinned_fails_on_arm64_only() -> None:
    arm = run("platform-pinned.Dockerfile", "arm64")
    platform = named(arm, "platform")
    assert [c.status for c in platform] == ["fail", "fail"]
    assert "--platform=linux/amd64" in platform[0].detail and "target is arm64" in platform[0].detail
    assert "${TARGETARCH}" in platform[0].fix
    assert statuses(arm, "base-image") == {"ok"}
    amd = run("platform-pinned.Dockerfile", "amd64")
    assert not [c for c in amd if c.status == "fail"]
    assert statuses(amd, "platform") == {"warn"}


# --------------------------------------------------------------------------- GOARCH and TARGETARCH


UBI = "registry.access.redhat.com/ubi9/go-toolset:1.24"


def test_build_platform_cross_compile_is_fine() -> None:
    text = f"""
FROM --platform=$BUILDPLATFORM {UBI} AS builder
ARG TARGETOS TARGETARCH
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app ./cmd/app
FROM registry.access.redhat.com/ubi9/ubi-minimal
COPY --from=builder /out/app /app
USER 1001
"""
    checks = run(text, "arm64")
    assert [c for c in checks if c.status != "ok"] == []
    assert "follows the build" in named(checks, "platform")[0].detail


def test_build_platform_without_goarch_builds_for_the_build_host() -> None:
    text = f"FROM --platform=$BUILDPLATFORM {UBI}\nRUN go build -o /out/app ./cmd/app\nUSER 1001\n"
    (check,) = named(run(text, "arm64"), "targetarch")
    assert check.status == "warn"
    assert "build host" in check.detail
    assert "ARG TARGETARCH" in check.fix


@pytest.mark.parametrize(
    ("body", "how"),
    [
        ("ARG GOARCH=amd64\nRUN go build ./...", "ARG default"),
        ("ARG ARCH=amd64\nENV GOARCH=${ARCH}\nRUN go build ./...", "ENV"),
        ("ENV GOARCH amd64\nRUN go build ./...", "ENV"),
        ("RUN GOARCH=amd64 go build ./...", "RUN"),
        ("RUN go env -w GOARCH=amd64 && go build ./...", "RUN"),
        ('RUN GOARCH="amd64" CGO_ENABLED=0 go build ./...', "RUN"),
    ],
)
def test_hard_coded_goarch_is_found_wherever_it_hides(body: str, how: str) -> None:
    checks = run(f"FROM {UBI}\n{body}\n", "arm64")
    fails = [c for c in named(checks, "goarch") if c.status == "fail"]
    assert fails, checks
    assert how in fails[0].detail and "amd64" in fails[0].detail
    assert fails[0].fix.startswith("use ${TARGETARCH}")


def test_goarch_from_targetarch_with_default_is_dynamic() -> None:
    checks = run(f"FROM {UBI}\nARG TARGETARCH\nRUN GOARCH=${{TARGETARCH:-amd64}} go build ./...\n", "arm64")
    assert statuses(checks, "goarch") == {"ok"}
    assert statuses(checks, "targetarch") == {"ok"}


def test_goarch_from_a_build_arg_without_default_is_not_hard_coded() -> None:
    checks = run(f"FROM {UBI}\nARG ARCH\nRUN GOARCH=$ARCH go build ./...\n", "arm64")
    assert statuses(checks, "goarch") == {"ok"}
    assert statuses(checks, "targetarch") == {"warn"}


def test_targetarch_used_but_never_declared() -> None:
    (check,) = named(run(f"FROM {UBI}\nRUN GOARCH=${{TARGETARCH}} go build ./...\n", "arm64"), "targetarch")
    assert check.status == "warn" and "never declares" in check.detail


def test_targetarch_declared_but_not_passed() -> None:
    (check,) = named(run(f"FROM {UBI}\nARG TARGETARCH\nRUN go build ./...\n", "arm64"), "targetarch")
    assert check.status == "warn" and "does not reach go build" in check.detail


def test_no_go_build_at_all_is_a_warning() -> None:
    checks = run("FROM registry.access.redhat.com/ubi9/ubi-minimal\nCOPY gateway /gateway\nUSER 1001\n", "arm64")
    assert statuses(checks, "targetarch") == {"warn"}
    assert "no Go builder stage" in named(checks, "go-version")[0].detail


def test_env_goarch_is_inherited_from_a_parent_stage() -> None:
    text = f"""
FROM {UBI} AS base
ARG TARGETARCH
ENV GOARCH=${{TARGETARCH}}
FROM base AS builder
ARG TARGETARCH
RUN go build -o /out/app .
"""
    checks = run(text, "arm64")
    assert statuses(checks, "targetarch") == {"ok"}
    assert statuses(checks, "base-image") == {"ok"}  # FROM base is a stage, not a registry
    assert "stage base builds with Go 1.24" in named(checks, "go-version")[0].detail


# --------------------------------------------------------------------------- parsing


def test_arg_substitution_in_from() -> None:
    text = """
ARG REGISTRY=registry.access.redhat.com
ARG GO_VERSION
ARG BASE=golang:1.23-bookworm
FROM $REGISTRY/ubi9/go-toolset:${GO_VERSION:-1.25} AS builder
FROM ${BASE} AS other
FROM ${RUNTIME:-scratch}
"""
    dockerfile = parse_dockerfile(text, "arm64")
    assert [s.image for s in dockerfile.stages] == [
        "registry.access.redhat.com/ubi9/go-toolset:1.25",
        "golang:1.23-bookworm",
        "scratch",
    ]
    assert dockerfile.global_args == (
        ("REGISTRY", "registry.access.redhat.com"),
        ("GO_VERSION", None),
        ("BASE", "golang:1.23-bookworm"),
    )
    checks = check_dockerfile(text, "Dockerfile", "arm64")
    assert [c.status for c in named(checks, "base-image")] == ["ok", "fail", "ok"]
    assert parse_dockerfile(text, "amd64", build_args={"GO_VERSION": "1.24"}).stages[0].image.endswith(":1.24")


def test_unresolvable_from_is_a_warning() -> None:
    (check,) = named(check_dockerfile("FROM ${BASE_IMAGE}\n", "Dockerfile", "arm64"), "base-image")
    assert check.status == "warn" and "cannot resolve" in check.detail


def test_continuations_comments_and_line_numbers() -> None:
    text = f"""# build
FROM {UBI} AS builder

RUN CGO_ENABLED=0 \\
    # a comment inside the continuation does not end it
    GOARCH=amd64 \\

    go build -o /out/app ./cmd/app
"""
    dockerfile = parse_dockerfile(text)
    (run_instruction,) = dockerfile.stages[0].instructions
    assert run_instruction.keyword == "RUN" and run_instruction.line == 4
    assert "GOARCH=amd64" in run_instruction.args and "go build" in run_instruction.args
    assert "comment" not in run_instruction.args
    (goarch,) = named(check_dockerfile(text, "Dockerfile", "arm64"), "goarch")
    assert goarch.status == "fail" and "Dockerfile:4" in goarch.detail


def test_escape_directive() -> None:
    text = f"# escape=`\nFROM {UBI}\nRUN GOARCH=amd64 `\n    go build .\n"
    (run_instruction,) = parse_dockerfile(text).stages[0].instructions
    assert "go build" in run_instruction.args


def test_heredoc_run() -> None:
    text = f"""FROM {UBI}
ARG TARGETARCH
RUN <<EOF
set -e
GOARCH=${{TARGETARCH}} go build -o /out/app ./cmd/app
EOF
USER 1001
"""
    dockerfile = parse_dockerfile(text)
    assert [i.keyword for i in dockerfile.stages[0].instructions] == ["ARG", "RUN", "USER"]
    checks = check_dockerfile(text, "Dockerfile", "arm64")
    assert statuses(checks, "targetarch") == {"ok"}


def test_no_from_is_a_parse_failure() -> None:
    assert check_dockerfile("# nothing\n", "Dockerfile", "arm64") == [
        Check("parse", "fail", "Dockerfile: no FROM instruction", "is this a Dockerfile?")
    ]


def test_root_final_stage_is_a_warning() -> None:
    (check,) = named(check_dockerfile(f"FROM {UBI}\nUSER root\n", "Dockerfile", "arm64"), "user")
    assert check.status == "warn"


def test_substitute() -> None:
    variables = {"A": "x", "EMPTY": "", "UNSET": None}
    assert substitute("$A/${A}", variables) == "x/x"
    assert substitute("${EMPTY:-d} ${A:-d} ${MISSING:-d}", variables) == "d x d"
    assert substitute("${A:+alt}|${EMPTY:+alt}", variables) == "alt|"
    assert substitute("\\$A ${MISSING} $UNSET", variables) == "$A ${MISSING} $UNSET"


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("registry.access.redhat.com/ubi9/go-toolset:1.24", "1.24"),
        ("ubi9/go-toolset:1.24.6-1754467841", "1.24.6"),
        ("golang:1.24-alpine", "1.24"),
        ("docker.io/library/golang:1.25.4-bookworm", "1.25.4"),
        ("golang:latest", None),
        ("golang", None),
        ("registry.access.redhat.com/ubi9/ubi-minimal:9.5", None),
    ],
)
def test_go_version_of_image(image: str, version: str | None) -> None:
    assert go_version_of_image(image) == version


def test_floating_go_builder_is_a_warning() -> None:
    (check,) = named(check_dockerfile("FROM golang:latest\nRUN go build .\n", "Dockerfile", "arm64"), "go-version")
    assert check.status == "warn"


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("golang:1.24-alpine", "docker.io"),
        ("library/golang", "docker.io"),
        ("registry.access.redhat.com/ubi9/ubi-minimal", "registry.access.redhat.com"),
        ("localhost/kubernaut-gateway:e2e-test", "localhost"),
        ("quay.io:443/x/y", "quay.io:443"),
    ],
)
def test_registry_of(image: str, registry: str) -> None:
    assert registry_of(image) == registry


def test_other_approved_registries() -> None:
    checks = check_dockerfile("FROM quay.io/kubernaut/base:1\nUSER 1\n", "Dockerfile", "arm64", approved_registries=("quay.io/kubernaut",))
    assert statuses(checks, "base-image") == {"ok"}


# --------------------------------------------------------------------------- go.mod


GO_MOD = """module github.com/jordigilh/kubernaut

// Keep in step with the go-toolset builder.
go 1.24.6 // minimum

toolchain go1.25.4

require (
\tgithub.com/go-redis/redis/v9 v9.7.0 // go 1.25 is not a directive here
)
"""


def test_parse_go_mod() -> None:
    assert parse_go_mod(GO_MOD) == ("1.24.6", "go1.25.4")
    assert parse_go_mod("module x\n\ngo 1.24\n") == ("1.24", None)
    assert parse_go_mod("module x\n") == (None, None)


def test_check_go_mod() -> None:
    assert check_go_mod("1.23", "module x\ngo 1.24.6\n").status == "fail"
    floating = check_go_mod("1.24", "module x\ngo 1.24.6\n")
    assert floating.status == "ok" and "floats" in floating.detail
    assert check_go_mod("1.25", "module x\ngo 1.24.6\n").status == "ok"
    newer_toolchain = check_go_mod("1.24", GO_MOD)
    assert newer_toolchain.status == "warn" and "toolchain go1.25.4" in newer_toolchain.detail
    assert check_go_mod(None, "module x\n").status == "warn"


# --- upstream's generation of Dockerfiles (issue: ARG GOARCH=${TARGETARCH}) ---------------------

UPSTREAM_STYLE = (DOCKERFILES / "upstream-style.Dockerfile").read_text()


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_goarch_through_an_arg_that_defaults_to_targetarch_is_dynamic(arch):
    checks = check_dockerfile(UPSTREAM_STYLE, "up.Dockerfile", arch, ("registry.access.redhat.com",))
    by_name = {c.name: c for c in checks}
    assert by_name["goarch"].status == "ok" and "no hard-coded GOARCH" in by_name["goarch"].detail
    assert by_name["targetarch"].status == "ok"
    assert "go build gets GOARCH=${TARGETARCH}" in by_name["targetarch"].detail
    assert all(c.status == "ok" for c in checks), [c for c in checks if c.status != "ok"]


def test_each_finding_once_and_every_row_with_a_line_number():
    # Two `go build` branches in one RUN, both with a hard-coded GOARCH: one row, not two.
    text = UPSTREAM_STYLE.replace("ARG GOARCH=${TARGETARCH}", "ARG GOARCH=amd64")
    checks = check_dockerfile(text, "up.Dockerfile", "arm64", ("registry.access.redhat.com",))
    goarch = [c for c in checks if c.name == "goarch"]
    assert len(goarch) == len({c.detail for c in goarch}) == 2  # the ARG default and the RUN
    assert {c.status for c in goarch} == {"fail"}
    assert len(checks) == len(set(checks))
    assert all(re.match(r"up\.Dockerfile:\d+: ", c.detail) for c in checks), [c.detail for c in checks]


def test_an_arg_derived_from_targetarch_without_declaring_it_is_still_a_warning():
    text = "FROM registry.access.redhat.com/ubi10/go-toolset:1.26\nARG GOARCH=${TARGETARCH}\n" \
           "RUN GOARCH=${GOARCH} go build ./cmd/x\nUSER 1001\n"
    by_name = {c.name: c for c in check_dockerfile(text, "d", "arm64", ("registry.access.redhat.com",))}
    assert by_name["targetarch"].status == "warn" and "never declares `ARG TARGETARCH`" in by_name["targetarch"].detail


def test_builder_go_version_is_the_stage_that_builds():
    assert builder_go_version(UPSTREAM_STYLE) == "1.26"
    assert builder_go_version("FROM scratch\nCOPY x /x\n") is None
