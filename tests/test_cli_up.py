"""A full `invoke e2e.up` as a subprocess: stand-in kind whose kubeconfig points at the API
stand-in, real podman building the test images, scripted pods; then a crash-looping Gateway."""
from __future__ import annotations

import json
import time

from tests.conftest import MIGRATION_LOG, Project
from tests.kubeapi import CrashLoop, JobSucceeds, Ready
from tests.test_kube import LFSTACK_LOG

NS = "kubernaut-system"


def _env(project: Project, kubeapi) -> dict[str, str]:  # type: ignore[no-untyped-def]
    kubeapi.script_job("e2e-migrations", JobSucceeds(after=0.2, log=MIGRATION_LOG))
    return {"KIND_STANDIN_API_SERVER": kubeapi.url}


def test_full_up_creates_everything_and_passes_the_checklist(project: Project, kubeapi):
    kubeapi.script("gateway", Ready(after=0.5))
    env = _env(project, kubeapi)
    result = project.run("e2e.up", extra_env=env)
    assert result.returncode == 0, result.stdout + result.stderr

    deployments = {d["metadata"]["name"]: d for d in kubeapi.objects("deployments", NS)}
    assert set(deployments) == {"postgresql", "redis", "datastorage", "gateway"}
    gw_template = deployments["gateway"]["spec"]["template"]
    assert gw_template["spec"]["containers"][0]["image"] == project.images["gateway"]  # built = deployed
    image_id = project.podman("image", "inspect", "--format", "{{.Id}}", project.images["gateway"]).stdout.strip()
    assert gw_template["metadata"]["annotations"]["e2e.kubernaut.ai/image-gateway"] == image_id
    assert kubeapi.get("customresourcedefinitions", "remediationrequests.kubernaut.ai")
    assert kubeapi.get("clusterroles", "gateway-role")
    assert kubeapi.get("services", "gateway-service", NS)["spec"]["type"] == "NodePort"
    assert len(kubeapi.objects("actiontypes", NS)) == 11
    assert kubeapi.get("configmaps", "inter-service-ca", NS)

    doc = project.timings()
    assert all(s["status"] == "done" for s in doc["steps"])
    checks = {c["name"]: c for c in doc["checklist"]}
    assert all(c["passed"] for c in checks.values()), checks
    assert "image builds ran in parallel" in checks
    assert "Checklist" in result.stdout

    # The generated DB password is in the cluster's Secret and in no log or output.
    import base64

    secret = kubeapi.get("secrets", "postgresql-secret", NS)
    password = base64.b64decode(secret["data"]["POSTGRES_PASSWORD"]).decode()
    run_dir = project.last_run_dir()
    for path in run_dir.iterdir():
        if path.is_file():
            assert password not in path.read_text(errors="replace"), path
    assert password not in result.stdout + result.stderr

    # A second up changes nothing and succeeds: reused cluster and images, no save, no Job,
    # no API write (idempotent apply, status already set, migrations recorded).
    rv = kubeapi.get("deployments", "gateway", NS)["metadata"]["resourceVersion"]
    writes_before = [r for r in kubeapi.requests if r[0] in ("POST", "PUT", "DELETE")]
    again = project.run("e2e.up", extra_env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert kubeapi.get("deployments", "gateway", NS)["metadata"]["resourceVersion"] == rv
    assert [r for r in kubeapi.requests if r[0] in ("POST", "PUT", "DELETE")] == writes_before
    assert "reused existing cluster" in again.stdout
    steps = {s["name"]: s for s in project.timings()["steps"]}
    for name in ("build-gateway", "save-gateway", "load-gateway", "preload-postgres", "migrations", "tls"):
        assert steps[name]["note"].startswith("reused"), steps[name]
    assert base64.b64decode(kubeapi.get("secrets", "postgresql-secret", NS)["data"]["POSTGRES_PASSWORD"]
                            ).decode() == password


def test_crash_looping_gateway_fails_within_seconds_with_reason_and_log(project: Project, kubeapi):
    kubeapi.script("gateway", CrashLoop(after=0.3, exit_code=2, log=LFSTACK_LOG))
    env = _env(project, kubeapi)
    started = time.monotonic()
    result = project.run("e2e.up", extra_env=env)
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert took < 90, took  # ready_timeout is 180 s: the failure came from the pod, not the clock
    steps = {s["name"]: s for s in project.timings()["steps"]}
    assert steps["gateway"]["status"] == "failed"
    assert steps["gateway"]["duration"] < 20
    assert steps["health"]["status"] == "skipped"
    out = result.stdout
    assert "CrashLoopBackOff" in out and "exit code 2" in out
    assert "fatal error: lfstack.push" in out
    # The matching diagnosis is printed with the failure: the real root cause and its fix.
    assert "diagnosis:" in out and "emulat" in out and "fix:" in out
    assert "gateway.log" in out and "invoke e2e.diagnose" in out
    checks = {c["name"]: c for c in project.timings()["checklist"]}
    assert not checks["every step done"]["passed"] and not checks["no step errors"]["passed"]
    # Kept for diagnosis by default.
    from tests.kindstate import clusters

    assert project.env["INVOKE_E2E_CLUSTER_NAME"] in clusters(project.kind_state)
    json.dumps(steps)  # timings.json is valid JSON all the way through


def _imports_after_start_client_import(only: str) -> str:
    """In a fresh interpreter: start the background import for the fast stack's graph (restricted
    to `only`), wait for it, and report which heavy modules are loaded."""
    import subprocess
    import sys

    from tests.conftest import FAST_STACK, ROOT

    code = ("import sys\nfrom kubernaut_e2e.stack import load_stack\nfrom kubernaut_e2e.steps import build_registry\n"
            "from kubernaut_e2e.up import start_client_import\n"
            f"graph = build_registry(load_stack(__import__('pathlib').Path({str(FAST_STACK)!r}))).graph()"
            f".select({[only] if only else []!r})\n"
            "thread = start_client_import(graph)\nthread is not None and thread.join(60)\n"
            "print(thread is not None and thread.daemon, 'kubernetes' in sys.modules, "
            "'kubernaut_e2e.deploy' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_kubernetes_client_is_imported_in_the_background_only_when_a_step_needs_it():
    # A graph with Kubernetes steps: a daemon thread imports the client and the deploy code.
    assert _imports_after_start_client_import("") == "True True True"
    # Builds alone never talk to the API server: nothing is imported.
    assert _imports_after_start_client_import("build-gateway") == "False False False"
