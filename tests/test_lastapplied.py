"""kubernaut_e2e.lastapplied: when an apply can be skipped (pure; the real server in test_real_kube)."""
from __future__ import annotations

import base64
import copy
from typing import Any

from kubernaut_e2e.lastapplied import ANNOTATION, is_current, manifest_hash, with_hash


def deployment(image: str = "gateway:e1", env: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "gw", "namespace": "ns"},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "gw", "image": image, "env": env if env is not None else [{"name": "A", "value": "1"}]}]}}}}


def stored(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a server keeps after our apply: ours plus its defaults and bookkeeping."""
    live = with_hash(manifest)
    live["metadata"].update(resourceVersion="7", uid="u", managedFields=[{"manager": "kubernaut-e2e"}])
    container = live["spec"]["template"]["spec"]["containers"][0]
    container.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
    live["spec"]["strategy"] = {"type": "RollingUpdate"}
    live["status"] = {"readyReplicas": 1}
    return live


def test_an_object_with_our_hash_and_fields_plus_server_defaults_is_current():
    assert is_current(stored(deployment()), deployment())


def test_absent_unmarked_or_changed_manifests_are_not_current():
    assert not is_current(None, deployment())
    unmarked = stored(deployment())
    del unmarked["metadata"]["annotations"][ANNOTATION]  # applied by a tool without the hash
    assert not is_current(unmarked, deployment())
    assert not is_current(stored(deployment()), deployment(image="gateway:e2"))
    # A dropped field: the live object still has it, so only the hash tells (apply then removes it).
    assert not is_current(stored(deployment()), deployment(env=[]))


def test_an_edited_field_of_ours_is_not_current():
    live = stored(deployment())
    live["spec"]["replicas"] = 0  # kubectl scale
    assert not is_current(live, deployment())
    live = stored(deployment())
    live["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "B", "value": "2"})
    assert not is_current(live, deployment())


def test_the_hash_ignores_its_own_annotation_and_the_manifest_is_not_changed():
    manifest = deployment()
    before = copy.deepcopy(manifest)
    marked = with_hash(manifest)
    assert manifest == before
    assert marked["metadata"]["annotations"][ANNOTATION] == manifest_hash(manifest) == manifest_hash(marked)
    assert manifest_hash(deployment(image="other")) != manifest_hash(manifest)


def test_a_secrets_string_data_is_compared_as_the_server_stores_it():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "ns"},
              "stringData": {"password": "s3cret"}}
    live = with_hash(secret)
    del live["stringData"]
    live["data"] = {"password": base64.b64encode(b"s3cret").decode()}
    assert is_current(live, secret)
    live["data"]["password"] = base64.b64encode(b"other").decode()
    assert not is_current(live, secret)


def test_booleans_are_not_numbers():
    obj = {"kind": "ConfigMap", "metadata": {"name": "x"}, "spec": {"flag": True}}
    live = with_hash(obj)
    live["spec"]["flag"] = 1
    assert not is_current(live, obj)
