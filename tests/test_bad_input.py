"""Bad input: one line naming the input, exit 2, before any side effect."""
from __future__ import annotations

import pytest

from tests.conftest import Project

CASES = [
    ("unknown --only", ["e2e.up", "--only", "gatewy"], {}, "--only gatewy: no such step or group"),
    ("negative timeout", ["e2e.up"], {"INVOKE_E2E_READY_TIMEOUT": "-5"}, "e2e.ready_timeout: -5"),
    ("bad jobs", ["e2e.up", "--jobs", "many"], {}, "e2e.jobs: expected an integer"),
    ("missing Dockerfile dir", ["e2e.up"], {"INVOKE_E2E_DOCKERFILE_DIR": "/no/such/dir"},
     "e2e.dockerfile_dir: /no/such/dir/Dockerfile.gateway does not exist"),
    ("bad image ref", ["e2e.clean"], {"INVOKE_E2E_GATEWAY_IMAGE": "Bad Ref"}, "e2e.gateway_image"),
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
    assert result.returncode == 2 and "e2e.migrations_glob: no files match" in result.stderr
