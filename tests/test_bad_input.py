"""Bad input: one line naming the input, exit 2, before any side effect."""
from __future__ import annotations

import pytest

from tests.conftest import Project

CASES = [
    ("unknown --only", ["e2e.up", "--only", "gatewy"], {}, "--only gatewy: no such step or group"),
    ("negative timeout", ["e2e.up"], {"INVOKE_E2E_READY_TIMEOUT": "-5"}, "e2e.ready_timeout: -5"),
    ("bad jobs", ["e2e.up", "--jobs", "many"], {}, "e2e.jobs: expected an integer"),
    ("missing stack", ["e2e.up"], {"INVOKE_E2E_STACK": "/no/such/stack.yaml"},
     "stack /no/such/stack.yaml: cannot be read"),
    ("bad image tag", ["e2e.clean"], {"INVOKE_E2E_IMAGE_TAG": "Bad Tag"}, "e2e.image_tag: 'Bad Tag'"),
    ("unknown host port", ["e2e.plan"], {"INVOKE_E2E_HOST_PORTS": "gatway-api=1"},
     "e2e.host_ports: 'gatway-api=1' names no port of the stack"),
    ("unsplittable test command", ["e2e.test"], {"INVOKE_E2E_TEST_COMMAND": "go 'test"}, "e2e.test_command"),
]


@pytest.mark.parametrize("args, env, says", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exit_2_one_line_no_side_effect(project: Project, args, env, says):
    result = project.run(*args, extra_env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert project.kind_calls() == []
    assert not (project.state / "runs").exists()


def test_crd_that_is_not_yaml_stops_up_before_anything(project: Project):
    crd = project.source / "config" / "crd" / "bases" / "kubernaut.ai_remediationrequests.yaml"
    crd.write_text("apiVersion: apiextensions.k8s.io/v1\nkind: [CustomResourceDefinition\n")
    result = project.run("e2e.up")
    assert result.returncode == 2
    assert f"manifest {crd}: not valid YAML" in result.stderr
    assert project.kind_calls() == []


def test_no_migrations_stops_up_before_anything(project: Project):
    for path in (project.source / "migrations").iterdir():
        path.unlink()
    result = project.run("e2e.up")
    assert result.returncode == 2, result.stderr
    assert f"{project.source}/migrations/*.sql: no files match, but component migrations applies them" \
        in result.stderr
    assert project.kind_calls() == []


def test_stack_with_a_missing_dockerfile_is_named_with_its_key(project: Project, tmp_path):
    stack = tmp_path / "stack.yaml"
    stack.write_text(f"extends: {project.stack}\nimages:\n  gateway:\n    dockerfile: nope.Dockerfile\n")
    result = project.run("e2e.up", extra_env={"INVOKE_E2E_STACK": str(stack)})
    assert result.returncode == 2
    assert f"stack {stack}: images.gateway.dockerfile: {tmp_path / 'nope.Dockerfile'} does not exist" in result.stderr
    assert project.kind_calls() == []


def test_source_tree_missing_what_the_stack_builds_from_stops_up(project: Project):
    import shutil

    shutil.rmtree(project.source / "cmd" / "gateway")
    result = project.run("e2e.up")
    assert result.returncode == 2
    assert f"preflight: {project.source}/cmd/gateway: missing, but image gateway is built from it" in result.stderr
    assert project.kind_calls() == []


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
    assert project.kind_calls() == []


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
