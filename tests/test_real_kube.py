"""kubernaut_e2e.kube, and the objects the product applies, against the real kube-apiserver.

The real server is the authority the stand-in (tests/kubeapi.py) only imitates: server-side apply
with its managed fields and defaulting (re-applying an unchanged object must not bump its
resourceVersion), strict field validation, unique NodePorts, CRDs becoming Established, garbage
collection. These tests go through the product's own client; they check the layer, not today's
manifest contents (the stack is data and changes).
"""
from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from kubernaut_e2e.config import load_config
from kubernaut_e2e.kube import FIELD_MANAGER, KubeError
from kubernaut_e2e.render import component_objects
from tests.conftest import KUBERNAUT_FIXTURE

CRD = (KUBERNAUT_FIXTURE / "config" / "crd" / "bases" / "kubernaut.ai_remediationrequests.yaml").read_text()


def configmap(namespace: str, name: str = "settings", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": data or {"LOG_LEVEL": "info"}}


def test_apply_creates_then_is_idempotent_then_configures(real_kube, real_namespace):
    first = real_kube.apply(configmap(real_namespace))
    assert (first.action, first.description) == ("created", f"ConfigMap/{real_namespace}/settings")
    version = real_kube.get("ConfigMap", "settings", real_namespace)["metadata"]["resourceVersion"]
    assert real_kube.apply(configmap(real_namespace)).action == "unchanged"
    assert real_kube.get("ConfigMap", "settings", real_namespace)["metadata"]["resourceVersion"] == version
    assert real_kube.apply(configmap(real_namespace, LOG_LEVEL="debug")).action == "configured"
    stored = real_kube.get("ConfigMap", "settings", real_namespace)
    assert stored["data"] == {"LOG_LEVEL": "debug"}
    assert [m["manager"] for m in stored["metadata"]["managedFields"]] == [FIELD_MANAGER]


def test_get_list_delete(real_kube, real_namespace):
    assert real_kube.get("ConfigMap", "absent", real_namespace) is None
    real_kube.apply({**configmap(real_namespace, "a"), "metadata": {"name": "a", "namespace": real_namespace,
                                                                     "labels": {"tier": "x"}}})
    real_kube.apply(configmap(real_namespace, "b"))
    assert [o["metadata"]["name"] for o in real_kube.list("ConfigMap", real_namespace, selector="tier=x")] == ["a"]
    assert real_kube.delete("ConfigMap", "a", real_namespace) is True
    assert real_kube.delete("ConfigMap", "a", real_namespace) is False
    assert real_kube.get("ConfigMap", "a", real_namespace) is None


def test_server_errors_carry_status_and_message(real_kube, real_namespace):
    real_kube.create(configmap(real_namespace, "dup"))
    with pytest.raises(KubeError) as conflict:
        real_kube.create(configmap(real_namespace, "dup"))
    assert conflict.value.status == 409 and 'configmaps "dup" already exists' in str(conflict.value)
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "no-selector", "namespace": real_namespace},
           "spec": {"template": {"metadata": {"labels": {"app": "x"}},
                                 "spec": {"containers": [{"name": "c", "image": "redis:7"}]}}}}
    with pytest.raises(KubeError) as invalid:
        real_kube.apply(bad)
    assert invalid.value.status == 422 and "spec.selector: Required value" in str(invalid.value)


def test_deleting_a_deployment_collects_its_pods(real_kube, real_namespace):
    # Garbage collection is asynchronous on a real server (the stand-in deletes synchronously).
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "gc", "namespace": real_namespace},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "gc"}},
                    "template": {"metadata": {"labels": {"app": "gc"}},
                                 "spec": {"containers": [{"name": "c", "image": "redis:7"}]}}}}
    real_kube.apply(dep)
    _until(lambda: real_kube.list("Pod", real_namespace, selector="app=gc"), "the Deployment's pod")
    assert real_kube.delete("Deployment", "gc", real_namespace)
    _until(lambda: not real_kube.list("Pod", real_namespace, selector="app=gc"), "the pod to be collected")


def test_crd_becomes_established_and_reapplies_unchanged(real_kube):
    import yaml

    crd = yaml.safe_load(CRD)
    assert real_kube.apply(crd).action in ("created", "unchanged")  # session-wide: another test may have made it
    name = crd["metadata"]["name"]

    def established() -> bool:
        conditions = ((real_kube.get("CustomResourceDefinition", name) or {}).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    _until(established, f"CRD {name} to be Established")
    assert real_kube.apply(crd).action == "unchanged"
    served = real_kube.request("GET", "/apis/kubernaut.ai/v1alpha1")
    assert {"remediationrequests", "remediationrequests/status"} <= {r["name"] for r in served["resources"]}


def test_rendered_stack_passes_real_validation_and_reapplies_unchanged(real_kube, real_namespace, tmp_path):
    """Every object the product renders is accepted by the real server (strict field validation, a dry
    run first so nothing half-applies), then applied for real; a second apply changes nothing."""
    objects = _rendered_stack(real_namespace, tmp_path)
    assert objects, "the stack rendered no objects"
    for obj in objects:
        _dry_run_strict(real_kube, obj)
    first = [real_kube.apply(obj) for obj in objects]
    assert {a.action for a in first} <= {"created", "configured", "unchanged"}
    with _writes(real_kube) as writes:
        again = [real_kube.apply(obj) for obj in objects]
    assert [a.description for a in again if a.action != "unchanged"] == []
    assert writes == [], "a warm re-apply of the stack should only read"


def test_an_object_edited_on_the_server_or_changed_in_the_manifest_is_applied_again(real_kube, real_namespace):
    real_kube.apply(configmap(real_namespace, LOG_LEVEL="info", EXTRA="1"))
    other = {"fieldManager": "kubectl-edit"}
    real_kube.request("PATCH", f"/api/v1/namespaces/{real_namespace}/configmaps/settings", query=other,
                      body={"data": {"LOG_LEVEL": "trace"}}, content_type="application/merge-patch+json")
    with _writes(real_kube) as writes:
        assert real_kube.apply(configmap(real_namespace, LOG_LEVEL="info", EXTRA="1")).action == "configured"
    assert writes == ["PATCH"]
    assert real_kube.get("ConfigMap", "settings", real_namespace)["data"] == {"LOG_LEVEL": "info", "EXTRA": "1"}
    # A key dropped from the manifest: only the hash tells, and server-side apply removes it.
    assert real_kube.apply(configmap(real_namespace, LOG_LEVEL="info")).action == "configured"
    assert real_kube.get("ConfigMap", "settings", real_namespace)["data"] == {"LOG_LEVEL": "info"}


def test_apply_of_a_misspelt_field_is_refused_with_http_500(real_kube, real_namespace):
    # A typo in a manifest: server-side apply cannot build its typed patch and answers 500 (not 422),
    # naming the field. A permanent error despite the 5xx: retrying it cannot help.
    obj = configmap(real_namespace)
    obj["metadata"]["lables"] = {"app": "x"}
    for apply in (real_kube.apply, lambda o: _dry_run_strict(real_kube, o)):
        with pytest.raises(KubeError) as info:
            apply(obj)
        assert info.value.status == 500
        assert ".metadata.lables: field not declared in schema" in str(info.value)
    assert real_kube.get("ConfigMap", "settings", real_namespace) is None


# --- helpers ------------------------------------------------------------------------------------------

def _rendered_stack(namespace: str, tmp_path: Any) -> list[dict[str, Any]]:
    """What the Kubernetes steps of the default stack apply (generated values as `render` shows
    them), in a namespace of the test's own. NodePorts are cluster-wide on a real server, so each
    Service gets ports of its own here."""
    stack = tmp_path / "stack.yaml"
    stack.write_text(f"extends: default\nnamespace: {namespace}\n")
    cfg = load_config({"stack": str(stack), "source_dir": str(KUBERNAUT_FIXTURE)})
    objects = [obj for comp in cfg.stack.components if comp.type != "crds"
               for obj in component_objects(cfg, comp)
               if obj["kind"] != "Namespace" and obj["apiVersion"].split("/")[0] != "kubernaut.ai"]
    ports = iter(random.sample(range(30000, 32768), 64))
    for obj in objects:
        for port in (obj.get("spec") or {}).get("ports") or []:
            if "nodePort" in port:
                port["nodePort"] = next(ports)
    return objects


def _dry_run_strict(kube: Any, obj: dict[str, Any]) -> None:
    kube.request("PATCH", kube.path_of(obj), body=obj,
                 query={"fieldManager": FIELD_MANAGER, "force": "true", "dryRun": "All", "fieldValidation": "Strict"},
                 content_type="application/apply-patch+yaml")


@contextmanager
def _writes(kube: Any) -> Iterator[list[str]]:
    """The methods of the requests other than GET that `kube` sends meanwhile."""
    sent: list[str] = []
    send = kube._send

    def spy(method: str, *args: Any, **kwargs: Any) -> Any:
        if method != "GET":
            sent.append(method)
        return send(method, *args, **kwargs)

    kube._send = spy
    try:
        yield sent
    finally:
        del kube._send


def _until(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g}s for {what}")
        time.sleep(0.1)
