"""kubernaut_e2e.kube, kubernaut_e2e.readiness and the deploy steps against the Kubernetes API stand-in, through
the real `kubernetes` client over HTTP."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from kubernaut_e2e import deploy
from kubernaut_e2e.config import load_config
from kubernaut_e2e.context import RunContext, StepContext
from kubernaut_e2e.errors import StepFailed
from kubernaut_e2e.kube import Kube
from kubernaut_e2e.preflight import Tools
from kubernaut_e2e.readiness import NotReady, wait_deployment
from kubernaut_e2e.runner import Cancellation, LocalRunner
from tests.conftest import MIGRATION_LOG, make_source_tree
from tests.kubeapi import CrashLoop, ImageNeverPull, JobSucceeds, NeverReady, Ready

NS = "kubernaut-system"
LFSTACK_LOG = """\
{"level":"info","msg":"starting gateway","version":"v0.1.0"}
runtime: lfstack.push invalid packing: node=0xffffb9b77ec0 cnt=0x1 packed=0xffffb9b77ec00001 -> node=0xffffffffb9b77ec0
fatal error: lfstack.push

goroutine 1 gp=0xc000002380 m=0 mp=0x1c2f6e0 [running]:
runtime.throw({0x14d2c4b?, 0x0?})
	/usr/lib/golang/src/runtime/panic.go:1101 +0x48 fp=0xc000075d60 sp=0xc000075d30 pc=0x473a28
runtime.systemstack()
	/usr/lib/golang/src/runtime/asm_amd64.s:514 +0x4a fp=0xc000075e38 sp=0xc000075e28 pc=0x47a2ea
"""


@pytest.fixture
def world(tmp_path: Path, kubeapi):  # type: ignore[no-untyped-def]
    cfg = load_config({"source_dir": str(make_source_tree(tmp_path)), "state_dir": str(tmp_path / "state"),
                       "ready_timeout": 20, "health_timeout": 3})
    kubeapi.kubeconfig(cfg.kubeconfig)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cancellation = Cancellation()
    run = RunContext(cfg, Tools("podman", "kind"), LocalRunner(cancellation), run_dir, cancellation)
    return cfg, run


def _ctx(run: RunContext, step: str) -> StepContext:
    return StepContext(run, step)


def _deployment(name: str, image: str = "localhost/x:1") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": image,
                                                           "imagePullPolicy": "Never"}]}}}}


def _kube(cfg) -> Kube:  # type: ignore[no-untyped-def]
    return Kube(cfg.kubeconfig)


def test_apply_twice_second_is_a_no_op(world, kubeapi):
    cfg, run = world
    kube = _kube(cfg)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": NS},
          "data": {"k": "v"}}
    assert [kube.apply(o).action for o in (ns, cm)] == ["created", "created"]
    rv = kubeapi.get("configmaps", "c", NS)["metadata"]["resourceVersion"]
    assert [kube.apply(o).action for o in (ns, cm)] == ["unchanged", "unchanged"]
    assert kubeapi.get("configmaps", "c", NS)["metadata"]["resourceVersion"] == rv
    assert kube.apply({**cm, "data": {"k": "v2"}}).action == "configured"
    patches = [r for r in kubeapi.requests if r[0] == "PATCH"]
    assert all(q.get("fieldManager") == "kubernaut-e2e" for _, _, q in patches)


def test_wait_ready_path(world, kubeapi):
    cfg, _ = world
    kube = _kube(cfg)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    kubeapi.script("redis", Ready(after=0.5))
    kube.apply(_deployment("redis"))
    took = wait_deployment(kube, NS, "redis", "app=redis", 15, Cancellation())
    assert 0.3 < took < 10


def test_crash_loop_fails_fast_with_pod_container_reason_and_log(world, kubeapi):
    cfg, _ = world
    kube = _kube(cfg)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    kubeapi.script("gateway", CrashLoop(after=0.3, exit_code=2, log=LFSTACK_LOG))
    kube.apply(_deployment("gateway"))
    timeout = 60
    started = time.monotonic()
    with pytest.raises(NotReady) as info:
        wait_deployment(kube, NS, "gateway", "app=gateway", timeout, Cancellation())
    took = time.monotonic() - started
    assert took < 10, took  # the pod showed it; the 60 s timeout was not waited out
    text = str(info.value)
    pod = kubeapi.objects("pods", NS)[0]["metadata"]["name"]
    assert f"pod {NS}/{pod} container gateway" in text
    assert "CrashLoopBackOff" in text and "exit code 2" in text and "restarts" in text
    assert "fatal error: lfstack.push" in text  # from the previous container's log
    assert info.value.problem.reason.startswith("CrashLoopBackOff")


def test_image_never_pull_fails_fast(world, kubeapi):
    cfg, _ = world
    kube = _kube(cfg)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    kubeapi.script("datastorage", ImageNeverPull(after=0.2))
    kube.apply(_deployment("datastorage", "localhost/kubernaut-datastorage:e2e-test"))
    started = time.monotonic()
    with pytest.raises(NotReady, match="ErrImageNeverPull"):
        wait_deployment(kube, NS, "datastorage", "app=datastorage", 60, Cancellation())
    assert time.monotonic() - started < 10


def test_timeout_path_names_the_pods(world, kubeapi):
    cfg, _ = world
    kube = _kube(cfg)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    kubeapi.script("gateway", NeverReady())
    kube.apply(_deployment("gateway"))
    started = time.monotonic()
    with pytest.raises(NotReady, match=r"not ready after 2s: 0/1 available") as info:
        wait_deployment(kube, NS, "gateway", "app=gateway", 2, Cancellation())
    assert 1.9 < time.monotonic() - started < 10
    assert "pod gateway-" in str(info.value)


def _step(run: RunContext, name: str) -> object:
    return deploy.run_component(_ctx(run, name))


def test_crds_step_applies_and_waits_for_established(world, kubeapi):
    cfg, run = world
    kubeapi.set_crd_established_after(0.5)
    result = _step(run, "crds")
    assert sorted(result.value) == ["actiontypes.kubernaut.ai", "remediationrequests.kubernaut.ai"]
    crd = kubeapi.get("customresourcedefinitions", "remediationrequests.kubernaut.ai")
    assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])


def test_postgresql_generates_password_once_and_never_logs_it(world, kubeapi):
    cfg, run = world
    kubeapi.script("postgresql", Ready(after=0.2))
    _step(run, "namespace")
    _step(run, "postgresql")
    secret = kubeapi.get("secrets", "postgresql-secret", NS)
    import base64

    password = base64.b64decode(secret["data"]["POSTGRES_PASSWORD"]).decode()
    assert len(password) >= 32
    assert password in base64.b64decode(secret["data"]["db-secrets.yaml"]).decode()
    run.generated.clear()  # a new run reads it back from the cluster
    _step(run, "postgresql")
    again = kubeapi.get("secrets", "postgresql-secret", NS)
    assert again["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]
    logs = "".join(p.read_text() for p in run.run_dir.glob("*.log"))
    assert "postgresql-secret" in logs and password not in logs
    assert "unchanged" in (run.run_dir / "postgresql.log").read_text()


def _migrated(world, kubeapi):  # type: ignore[no-untyped-def]
    cfg, run = world
    kubeapi.script("postgresql", Ready(after=0.1))
    _step(run, "namespace")
    _step(run, "postgresql")
    return cfg, run


def test_migrations_step_verifies_the_final_schema_and_a_rerun_runs_no_job(world, kubeapi):
    cfg, run = _migrated(world, kubeapi)
    kubeapi.script_job("e2e-migrations", JobSucceeds(after=0.2, log=MIGRATION_LOG))
    result = _step(run, "migrations")
    assert result.value == ["action_type_catalog", "audit_events", "notification_audit", "retention_operations"]
    assert "goose version 5" in result.note
    cm = kubeapi.get("configmaps", "e2e-migrations", NS)
    assert list(cm["data"]) == ["00000001.sql", "00000002.sql", "00000003.sql", "00000004.sql",
                                "00000005.notx.sql"]
    assert cm["metadata"]["annotations"]["e2e.kubernaut.ai/database-volume"] == \
        kubeapi.get("persistentvolumeclaims", "postgresql-data", NS)["metadata"]["uid"]
    jobs_before = [r for r in kubeapi.requests if r[0] == "POST" and r[1].endswith("/jobs")]
    again = _step(run, "migrations")
    assert again.note.startswith("reused:")
    assert [r for r in kubeapi.requests if r[0] == "POST" and r[1].endswith("/jobs")] == jobs_before
    # New migration content: the Job runs again (and replaces the old one).
    (cfg.source_dir / "migrations" / "006_more.sql").write_text("-- +goose Up\nCREATE TABLE more (id int);\n")
    kubeapi.script_job("e2e-migrations", JobSucceeds(after=0.1, log=MIGRATION_LOG.replace(
        "TABLES: ", "TABLES: more,")))
    third = _step(run, "migrations")
    assert "more" in third.value and not third.note.startswith("reused")


def test_migrations_step_fails_when_a_table_is_missing(world, kubeapi):
    cfg, run = _migrated(world, kubeapi)
    kubeapi.script_job("e2e-migrations", JobSucceeds(after=0.1, log="TABLES: audit_events\n"))
    with pytest.raises(StepFailed, match="missing: action_type_catalog, notification_audit, retention_operations"):
        _step(run, "migrations")


def test_tls_generates_once_writes_the_ca_and_regenerates_what_is_missing(world, kubeapi):
    from kubernaut_e2e import tls

    cfg, run = world
    _step(run, "namespace")
    first = _step(run, "tls")
    assert first.note.startswith("generated (no CA yet)")
    ca = cfg.ca_file.read_text()
    assert oct(cfg.ca_file.stat().st_mode & 0o777) == "0o600"
    assert kubeapi.get("configmaps", "inter-service-ca", NS)["data"]["ca.crt"] == ca
    import base64

    leaf = base64.b64decode(kubeapi.get("secrets", "datastorage-tls", NS)["data"]["tls.crt"]).decode()
    tls.verify_chain(ca, leaf, "data-storage-service.kubernaut-system.svc")
    tls.verify_chain(ca, leaf, "127.0.0.1")
    assert _step(run, "tls").note.startswith("reused")
    assert first.value == _step(run, "tls").value == tls.ca_fingerprint(ca)
    Kube(cfg.kubeconfig).delete("Secret", "gateway-tls", NS)
    regenerated = _step(run, "tls")
    assert "missing gateway-tls" in regenerated.note and regenerated.value != first.value
    key = base64.b64decode(kubeapi.get("secrets", "datastorage-tls", NS)["data"]["tls.key"]).decode()
    logs = "".join(p.read_text() for p in run.run_dir.glob("*.log"))
    assert "BEGIN" not in logs and key.splitlines()[1] not in logs


def test_actiontypes_get_their_status_once(world, kubeapi):
    cfg, run = world
    kubeapi.set_crd_established_after(0.1)
    _step(run, "crds")
    _step(run, "namespace")
    result = _step(run, "actiontypes")
    assert "status set on 11" in result.note
    items = kubeapi.objects("actiontypes", NS)
    assert len(items) == 11
    assert all(i["status"] == {"registered": True, "catalogStatus": "Active", "registeredBy": "kubernaut-e2e"}
               for i in items)
    writes = len([r for r in kubeapi.requests if r[0] in ("PATCH", "POST", "PUT")])
    again = _step(run, "actiontypes")
    assert "status set" not in again.note
    # Objects that are what we last applied are not sent again; no status write on top.
    assert [r[:2] for r in kubeapi.requests if r[0] in ("PATCH", "POST", "PUT")][writes:] == []


def test_health_fails_when_the_port_does_not_answer_200(world, kubeapi):
    import http.server
    import threading
    from dataclasses import replace

    class Unready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(503 if self.path == "/readyz" else 200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg, run = world
        port = server.server_address[1]
        run.cfg = replace(cfg, host_ports={**cfg.host_ports, "gateway-health": port, "datastorage-health": port},
                          health_timeout=2)
        with pytest.raises(StepFailed, match=rf"http://127.0.0.1:{port}/readyz -> HTTP 503"):
            deploy.health(_ctx(run, "health"))
    finally:
        server.shutdown()
        server.server_close()
