"""A third service added by data alone (tests/stacks/toy: stack data, a manifest, a Dockerfile, no
code) appears in plan, render, up, clean and the summary, like the Gateway and DataStorage."""
from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import MIGRATION_LOG, TESTS, Project, free_ports, host_ports_setting
from tests.kindstate import clusters
from tests.kubeapi import JobSucceeds

TOY = TESTS / "stacks" / "toy" / "stack.yaml"
NS = "kubernaut-system"


def _env(project: Project) -> dict[str, str]:
    ports = dict(project.host_ports)
    ports["echo-api"] = free_ports(1)[0]
    return {"INVOKE_E2E_STACK": str(TOY), "INVOKE_E2E_HOST_PORTS": host_ports_setting(ports)}


def test_plan_and_render_show_the_third_service(project: Project, tmp_path: Path):
    env = _env(project)
    plan = project.run("e2e.plan", "--json", extra_env=env)
    assert plan.returncode == 0, plan.stderr
    steps = {s["name"]: s for s in json.loads(plan.stdout)["steps"]}
    assert {"build-echo", "save-echo", "load-echo", "echo"} <= set(steps)
    assert set(steps["echo"]["needs"]) == {"namespace", "load-echo"}
    assert "echo" in steps["health"]["needs"]
    assert any("/healthz" in c for c in steps["health"]["commands"])
    out = tmp_path / "render"
    assert project.run("e2e.render", "--out", str(out), extra_env=env).returncode == 0
    [echo_file] = out.glob("*-echo.yaml")
    assert "localhost/e2etest-echo:" in echo_file.read_text() and "nodePort: 30555" in echo_file.read_text()
    [kind_config] = out.glob("00-kind-config.yaml")
    assert "containerPort: 30555" in kind_config.read_text()


def test_up_and_clean_handle_the_third_service(project: Project, kubeapi):
    env = {**_env(project), "KIND_STANDIN_API_SERVER": kubeapi.url,
           "INVOKE_E2E_STACK": str(TOY.parent / "no-smoke-toy.yaml")}
    kubeapi.script_job("e2e-migrations", JobSucceeds(after=0.2, log=MIGRATION_LOG))
    result = project.run("e2e.up", extra_env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    cluster = project.env["INVOKE_E2E_CLUSTER_NAME"]
    echo_ref = f"localhost/e2etest-echo:{cluster}"
    deployment = kubeapi.get("deployments", "echo", NS)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == echo_ref
    assert echo_ref in clusters(project.kind_state)[cluster]["images"]
    steps = {s["name"]: s for s in project.timings()["steps"]}
    assert steps["echo"]["status"] == "done" and steps["build-echo"]["status"] == "done"
    assert "echo" in result.stdout  # the summary table lists it
    health = next(c for c in project.timings()["checklist"] if c["name"] == "health check passed")
    assert health["passed"] and "/healthz" in health["detail"]
    pods = next(c for c in project.timings()["checklist"] if c["name"] == "every service has a Running, ready pod")
    assert "echo:" in pods["detail"]
    cleaned = project.run("e2e.clean", extra_env=env)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert f"removed image {echo_ref}" in cleaned.stdout and not project.image_exists(echo_ref)
