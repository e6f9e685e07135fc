"""`e2e.smoke` (and `e2e.ci`, which runs it after `up`) on the real control plane, against stand-ins
of the Gateway and DataStorage (tests/services.py) that enforce upstream's contract with the real
API server's TokenReview and SubjectAccessReview. The stand-in kind forwards the published host
ports of the two services to them, as the NodePorts would to the pods."""
from __future__ import annotations

import datetime
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from kubernaut_e2e import tls
from kubernaut_e2e.stack import load_stack
from tests.conftest import TESTS, Project
from tests.realcluster import RealCluster
from tests.services import AuditLog, DataStorage, Gateway

FAKE_SUITE = TESTS / "bin" / "fake-go-suite"


@pytest.fixture
def world(project: Project, real_cluster: RealCluster, real_kube: Any, tmp_path: Path):  # type: ignore[no-untyped-def]
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    stack = tmp_path / "real-stack.yaml"
    stack.write_text(f"extends: {project.stack}\nnamespace: {namespace}\n"
                     "smoke:\n  audit:\n    retry_seconds: 4\n")
    audit = AuditLog()
    gateway, datastorage = Gateway(real_kube, namespace, audit), DataStorage(real_kube, namespace, audit)
    rest = project.env["PATH"].split(os.pathsep, 1)[1]
    env = {"KIND_STANDIN_REAL_KUBECONFIG": str(real_cluster.kubeconfig),
           "PATH": os.pathsep.join([str(TESTS / "bin"), str(real_cluster.bin_dir), rest]),
           "INVOKE_E2E_STACK": str(stack),
           "KIND_STANDIN_PORT_BACKENDS": f"{project.host_ports['gateway-api']}=127.0.0.1:{gateway.port},"
                                         f"{project.host_ports['datastorage-api']}=127.0.0.1:{datastorage.port}",
           "INVOKE_E2E_TEST_COMMAND": str(FAKE_SUITE), "FAKE_SUITE_SCENARIO": "pass"}
    yield env, namespace, gateway, datastorage
    project.run("e2e.clean", extra_env=env)
    gateway.close()
    datastorage.close()


def _smoke(project: Project, env: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    result = project.run("e2e.smoke", extra_env=env, timeout=120)
    document = json.loads((project.last_run_dir() / "smoke.json").read_text())
    return result, document


def test_ci_runs_the_smoke_test_and_each_broken_hop_is_named(project: Project, real_kube: Any, world):
    env, namespace, gateway, datastorage = world
    ci = project.run("e2e.ci", "--keep", extra_env=env, timeout=300)
    assert ci.returncode == 0, ci.stdout + ci.stderr
    assert "== smoke ==" in ci.stdout and "smoke passed: 6 hops" in ci.stdout
    summary = json.loads((project.last_run_dir() / "ci.json").read_text())
    assert summary["passed"] and summary["smoke"]["passed"]
    assert [h["name"] for h in summary["smoke"]["hops"]] == ["namespace", "token", "signal", "remediation",
                                                              "audit token", "audit"]
    rr = [i["metadata"]["name"] for i in real_kube.request(
        "GET", f"/apis/kubernaut.ai/v1alpha1/namespaces/{namespace}/remediationrequests")["items"]]
    assert len(rr) == 1 and rr[0] in summary["smoke"]["hops"][2]["detail"]
    # Each hop's latency is printed as it completes; the tokens never are.
    for line in ("ok   namespace", "ok   signal", "ok   audit "):
        assert line in ci.stdout
    assert "eyJ" not in ci.stdout  # a ServiceAccount token is a JWT: never shown

    # DataStorage presenting a certificate of another CA: the audit hop fails on TLS verification.
    material = tls.generate({"ca": {"configmap": "x", "key": "ca.crt", "common_name": "someone-else", "valid_hours": 1},
                             "certificates": [{"secret": "other", "service": "data-storage-service"}]}, namespace)
    other = next(o for o in material.objects if o["kind"] == "Secret")["stringData"]
    datastorage.use_certificate(other["tls.crt"], other["tls.key"])
    result, document = _smoke(project, env)
    assert result.returncode == 1
    assert "smoke FAILED at hop 'audit': TLS with https://127.0.0.1:" in result.stdout
    assert "CERTIFICATE_VERIFY_FAILED" in result.stdout
    assert not document["passed"] and document["hops"][-1]["name"] == "audit"
    datastorage.use_certificate(*_cluster_certificate(real_kube, namespace))

    # A Gateway that records only one of the two audit events: the trail is incomplete.
    gateway.audited = ("gateway.signal.received",)
    result, _ = _smoke(project, env)
    assert result.returncode == 1
    assert "smoke FAILED at hop 'audit': the audit trail of rr-" in result.stdout
    assert "missing gateway.crd.created" in result.stdout
    gateway.audited = ("gateway.signal.received", "gateway.crd.created")
    assert _smoke(project, env)[0].returncode == 0

    # The suite's ServiceAccount losing its Gateway access: the real SubjectAccessReview says no.
    real_kube.delete("ClusterRoleBinding", "e2e-gateway-suite-sa-gateway-client")
    result, document = _smoke(project, env)
    assert result.returncode == 1
    assert "smoke FAILED at hop 'signal': POST http://127.0.0.1:" in result.stdout
    assert "answered 403" in result.stdout and f"system:serviceaccount:{namespace}:e2e-gateway-suite-sa" in result.stdout
    assert [h["ok"] for h in document["hops"]] == [True, True, False]


def _cluster_certificate(kube: Any, namespace: str) -> tuple[str, str]:
    import base64

    data = kube.get("Secret", "datastorage-tls", namespace)["data"]
    return base64.b64decode(data["tls.crt"]).decode(), base64.b64decode(data["tls.key"]).decode()


def test_smoke_without_a_cluster_is_exit_2(project: Project):
    result = project.run("e2e.smoke")
    assert result.returncode == 2 and "no cluster" in result.stderr
    assert not (project.state / "runs").exists()


def test_alert_payload_and_audit_completeness_are_pure():
    from kubernaut_e2e.smoke import alert_payload, audit_complete

    body = alert_payload("ns-1", "pod-1", "Smoke", datetime.datetime(2026, 11, 29, tzinfo=datetime.timezone.utc).timestamp())
    alert = body["alerts"][0]
    assert alert["labels"] == {"alertname": "Smoke", "namespace": "ns-1", "severity": "warning", "pod": "pod-1"}
    assert alert["startsAt"] == "2026-11-29T00:00:00Z" and body["status"] == "firing"
    ok, seen = audit_complete({"data": [{"event_type": "a"}, {"event_type": "b"}], "pagination": {"total": 2}},
                              ["a", "b"])
    assert ok and seen == "2 event(s): a, b"
    ok, seen = audit_complete({"data": [{"event_type": "a"}]}, ["a", "b"])
    assert not ok and seen.endswith("missing b")
