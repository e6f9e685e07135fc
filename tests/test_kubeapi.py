"""Tests of the Kubernetes API stand-in (tests/kubeapi.py), driven through the real `kubernetes` client
over real HTTP. Timing-sensitive checks wait for states (api.wait_for) instead of sleeping fixed times."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from tests.kubeapi import (
    ConfigError,
    CrashLoop,
    ImageNeverPull,
    ImagePullBackOff,
    JobFails,
    JobSucceeds,
    KubeAPI,
    NeverReady,
    OOMKilled,
    Ready,
    host_arch,
)

NS = "kubernaut-system"


@pytest.fixture
def api() -> Iterator[KubeAPI]:
    server = KubeAPI().start()
    yield server
    server.stop()
    assert server.errors == [], "\n".join(server.errors)


@pytest.fixture
def api_client(api: KubeAPI, tmp_path: Path) -> Iterator[client.ApiClient]:
    path = api.kubeconfig(tmp_path / ".kube" / "config")
    with config.new_client_from_config(config_file=path) as api_client:
        yield api_client


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture
def batch(api_client: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api_client)


@pytest.fixture
def ns(core: client.CoreV1Api) -> str:
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    return NS


def deployment(name: str = "gateway", image: str = "localhost/kubernaut-gateway:e2e", replicas: int = 1,
               pull_policy: str = "Never") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": name, "image": image, "imagePullPolicy": pull_policy,
                                                  "ports": [{"containerPort": 8080}]}]}},
        },
    }


def job(name: str = "migrations", backoff_limit: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS},
        "spec": {"backoffLimit": backoff_limit,
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "migrate", "image": "localhost/migrate:e2e"}]}}},
    }


def server_side_apply(api_client: client.ApiClient, path: str, body: dict[str, Any],
                      manager: str | None = "gateway-e2e", force: bool = True) -> dict[str, Any]:
    """PATCH with application/apply-patch+yaml through the generic ApiClient.call_api."""
    query: list[tuple[str, Any]] = [("force", force)]
    if manager:
        query.append(("fieldManager", manager))
    method, url, headers, payload, post = api_client.param_serialize(
        "PATCH", path, query_params=query,
        header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        body=body, auth_settings=["BearerToken"])
    response = api_client.call_api(method, url, header_params=headers, body=payload, post_params=post)
    response.read()
    return api_client.response_deserialize(response, {"200": "object", "201": "object"}).data


def pods_of(core: client.CoreV1Api, app: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(NS, label_selector=f"app={app}").items


def container_status(core: client.CoreV1Api, app: str) -> client.V1ContainerStatus | None:
    pods = pods_of(core, app)
    statuses = pods[0].status.container_statuses if pods else None
    return statuses[0] if statuses else None


def waiting_reason(core: client.CoreV1Api, app: str) -> str | None:
    status = container_status(core, app)
    return status.state.waiting.reason if status and status.state.waiting else None


# ---------------------------------------------------------------------------------------------- basics


def test_kubeconfig_version_discovery_and_nodes(api: KubeAPI, api_client: client.ApiClient,
                                                core: client.CoreV1Api, tmp_path: Path) -> None:
    kubeconfig = tmp_path / ".kube" / "config"
    assert stat.S_IMODE(os.stat(kubeconfig).st_mode) == 0o600
    assert client.VersionApi(api_client).get_code().git_version == "v1.33.1"

    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert set(nodes) == {"gateway-e2e-control-plane", "gateway-e2e-worker"}
    assert {n.status.node_info.architecture for n in nodes.values()} == {host_arch()}
    assert all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions) for n in nodes.values())
    api.add_node("gateway-e2e-worker2", arch="arm64")
    assert core.read_node("gateway-e2e-worker2").status.node_info.architecture == "arm64"

    # The dynamic client discovers resources through /api, /apis and the group-version documents.
    dyn = DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deployments.namespaced and deployments.name == "deployments"
    assert dyn.resources.get(api_version="v1", kind="Namespace").get(name="default").status.phase == "Active"

    assert ("GET", "/version", {}) in api.requests


def test_create_typed_and_server_side_apply_twice_is_a_noop(api: KubeAPI, api_client: client.ApiClient,
                                                            core: client.CoreV1Api, apps: client.AppsV1Api,
                                                            ns: str) -> None:
    assert core.read_namespace(ns).status.phase == "Active"
    assert core.read_namespaced_service_account("default", ns).metadata.name == "default"
    cm = core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="gateway-config"), data={"config.yaml": "port: 8080"}))
    assert cm.metadata.uid and cm.metadata.resource_version and cm.metadata.creation_timestamp

    cm_body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied", "namespace": ns},
               "data": {"a": "1", "b": "2"}}
    cm_path = f"/api/v1/namespaces/{ns}/configmaps/applied"
    first = server_side_apply(api_client, cm_path, cm_body)  # creates
    second = server_side_apply(api_client, cm_path, cm_body)
    assert first["metadata"]["resourceVersion"] == second["metadata"]["resourceVersion"]

    # A Deployment's status moves while its pods start, so compare once it has settled.
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/gateway"
    server_side_apply(api_client, path, deployment())
    api.wait_for(lambda: apps.read_namespaced_deployment("gateway", ns).status.available_replicas == 1)
    settled = apps.read_namespaced_deployment("gateway", ns).metadata.resource_version
    second = server_side_apply(api_client, path, deployment())
    assert second["metadata"]["resourceVersion"] == settled
    assert second["metadata"]["generation"] == 1
    assert api.get("deployments", "gateway", ns)["metadata"]["managedFields"][0]["manager"] == "gateway-e2e"

    # The typed client's apply path (patch with _content_type) goes through the same code.
    changed = deployment(image="localhost/kubernaut-gateway:v2")
    third = apps.patch_namespaced_deployment("gateway", ns, changed, field_manager="gateway-e2e", force=True,
                                             _content_type="application/apply-patch+yaml")
    assert third.metadata.generation == 2
    assert third.spec.template.spec.containers[0].image == "localhost/kubernaut-gateway:v2"
    assert int(third.metadata.resource_version) > int(second["metadata"]["resourceVersion"])

    # Applying a YAML body also works, and fieldManager is required.
    with pytest.raises(ApiException) as err:
        server_side_apply(api_client, path, deployment(), manager=None)
    assert err.value.status == 400

    # Apply removes the fields its manager stopped applying.
    cm_body["data"] = {"a": "1"}
    assert server_side_apply(api_client, cm_path, cm_body)["data"] == {"a": "1"}


def test_deployment_becomes_available_and_watch_sees_pod_become_ready(api: KubeAPI, core: client.CoreV1Api,
                                                                      apps: client.AppsV1Api, ns: str) -> None:
    api.script("gateway", Ready(after=0.5, log="listening on :8080"))
    apps.create_namespaced_deployment(ns, deployment())

    seen: list[tuple[str, bool]] = []
    stream = watch.Watch()
    for event in stream.stream(core.list_namespaced_pod, ns, label_selector="app=gateway", timeout_seconds=5):
        statuses = event["object"].status.container_statuses or []
        ready = bool(statuses) and statuses[0].ready
        seen.append((event["type"], ready))
        if ready:
            stream.stop()
    assert seen[0][0] == "ADDED"
    assert seen[-1] == ("MODIFIED", True)

    pod = pods_of(core, "gateway")[0]
    assert pod.metadata.name.startswith("gateway-") and len(pod.metadata.name.split("-")[1]) == 10
    assert pod.metadata.labels["app"] == "gateway"
    assert pod.metadata.owner_references[0].kind == "ReplicaSet"
    assert pod.spec.node_name == "gateway-e2e-worker"
    assert pod.spec.containers[0].image_pull_policy == "Never"
    assert pod.status.phase == "Running"
    assert core.read_namespaced_pod_log(pod.metadata.name, ns) == "listening on :8080\n"

    status = api.wait_for(lambda: apps.read_namespaced_deployment_status("gateway", ns).status)
    api.wait_for(lambda: apps.read_namespaced_deployment("gateway", ns).status.available_replicas == 1)
    status = apps.read_namespaced_deployment("gateway", ns).status
    assert status.ready_replicas == status.updated_replicas == status.replicas == 1
    assert status.observed_generation == 1
    assert {c.type: c.status for c in status.conditions} == {"Available": "True", "Progressing": "True"}

    # A watch that only times out ends cleanly; one from a resourceVersion sees only later changes.
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    assert list(watch.Watch().stream(core.list_namespaced_config_map, ns, timeout_seconds=1)) == []
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="later")))
    events = list(watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=rv,
                                       timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "later")]


def test_replicas_and_deleting_a_deployment_deletes_its_pods(api: KubeAPI, core: client.CoreV1Api,
                                                            apps: client.AppsV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment("redis", image="redis:7", replicas=2))
    api.wait_for(lambda: apps.read_namespaced_deployment("redis", ns).status.ready_replicas == 2)
    assert len(pods_of(core, "redis")) == 2
    result = apps.delete_namespaced_deployment("redis", ns)
    assert result["status"] == "Success"
    api.wait_for(lambda: pods_of(core, "redis") == [])
    assert api.objects("replicasets", ns) == []


# ---------------------------------------------------------------------------------------------- scripts


def test_crash_loop_restarts_and_keeps_previous_log(api: KubeAPI, core: client.CoreV1Api,
                                                    apps: client.AppsV1Api, ns: str) -> None:
    log = "starting gateway\nconnecting to datastorage\nfatal: config invalid"
    api.script("gateway", CrashLoop(after=0.2, exit_code=2, log=log, reason="Error"))
    apps.create_namespaced_deployment(ns, deployment())

    api.wait_for(lambda: (s := container_status(core, "gateway")) and s.restart_count >= 2, timeout=6)
    status = container_status(core, "gateway")
    assert status.state.waiting.reason == "CrashLoopBackOff"
    terminated = status.last_state.terminated
    assert (terminated.exit_code, terminated.reason, terminated.message) == (2, "Error", "fatal: config invalid")
    assert terminated.started_at <= terminated.finished_at
    assert not status.ready

    pod = pods_of(core, "gateway")[0].metadata.name
    assert core.read_namespaced_pod_log(pod, ns, previous=True) == log + "\n"
    assert core.read_namespaced_pod_log(pod, ns, previous=True, tail_lines=1) == "fatal: config invalid\n"
    assert core.read_namespaced_pod_log(pod, ns, container="gateway") == log + "\n"
    reasons = {e.reason for e in core.list_namespaced_event(ns, field_selector=f"involvedObject.name={pod}").items}
    assert {"Scheduled", "Started", "BackOff"} <= reasons
    backoff = api.events(ns, pod)
    assert any(e["reason"] == "BackOff" and e["type"] == "Warning" for e in backoff)

    deployment_status = apps.read_namespaced_deployment("gateway", ns).status
    assert deployment_status.ready_replicas is None
    assert {c.type: c.status for c in deployment_status.conditions}["Available"] == "False"


def test_previous_log_missing_and_waiting_container_log(api: KubeAPI, core: client.CoreV1Api,
                                                        apps: client.AppsV1Api, ns: str) -> None:
    api.script("gateway", Ready(after=0.1))
    api.script("slow", Ready(after=30))
    apps.create_namespaced_deployment(ns, deployment())
    apps.create_namespaced_deployment(ns, deployment("slow"))
    api.wait_for(lambda: (s := container_status(core, "gateway")) and s.ready)
    pod = pods_of(core, "gateway")[0].metadata.name
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod_log(pod, ns, previous=True)
    assert err.value.status == 400
    assert f'previous terminated container "gateway" in pod "{pod}" not found' in json.loads(err.value.body)["message"]

    slow = api.wait_for(lambda: pods_of(core, "slow"))[0].metadata.name
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod_log(slow, ns)
    assert "is waiting to start: ContainerCreating" in json.loads(err.value.body)["message"]


@pytest.mark.parametrize("script, reason, message_part", [
    (ImageNeverPull(after=0.1), "ErrImageNeverPull",
     'Container image "localhost/kubernaut-gateway:e2e" is not present with pull policy of Never'),
    (ImagePullBackOff(after=0.1), "ImagePullBackOff", "Back-off pulling image"),
    (ConfigError(after=0.1, message='secret "datastorage-db" not found'), "CreateContainerConfigError",
     'secret "datastorage-db" not found'),
])
def test_waiting_reasons(api: KubeAPI, core: client.CoreV1Api, apps: client.AppsV1Api, ns: str,
                         script: Any, reason: str, message_part: str) -> None:
    api.script("gateway", script)
    apps.create_namespaced_deployment(ns, deployment())
    api.wait_for(lambda: waiting_reason(core, "gateway") == reason, timeout=5)
    pod = pods_of(core, "gateway")[0]
    assert message_part in pod.status.container_statuses[0].state.waiting.message
    assert pod.status.phase == "Pending"
    warnings = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={pod.metadata.name},type=Warning")
    assert warnings.items and all(e.involved_object.kind == "Pod" for e in warnings.items)


def test_oom_killed_and_never_ready(api: KubeAPI, core: client.CoreV1Api, apps: client.AppsV1Api, ns: str) -> None:
    api.script("redis", OOMKilled(after=0.1, log="loading dataset\n"))
    api.script("gateway", NeverReady(after=0.1))
    apps.create_namespaced_deployment(ns, deployment("redis", image="redis:7"))
    apps.create_namespaced_deployment(ns, deployment())

    api.wait_for(lambda: waiting_reason(core, "redis") == "CrashLoopBackOff")
    terminated = container_status(core, "redis").last_state.terminated
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137)

    api.wait_for(lambda: (s := container_status(core, "gateway")) and s.state.running is not None)
    pod = pods_of(core, "gateway")[0]
    assert pod.status.phase == "Running" and not pod.status.container_statuses[0].ready
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "False"
    unhealthy = api.wait_for(lambda: [e for e in api.events(ns, pod.metadata.name) if e["reason"] == "Unhealthy"])
    assert unhealthy[0]["message"] == "Readiness probe failed: HTTP probe failed with statuscode: 503"
    assert unhealthy[0]["type"] == "Warning"


def test_script_set_after_the_deployment_exists(api: KubeAPI, core: client.CoreV1Api,
                                               apps: client.AppsV1Api, ns: str) -> None:
    api.script("gateway", Ready(after=30))
    apps.create_namespaced_deployment(ns, deployment())
    api.wait_for(lambda: pods_of(core, "gateway"))
    api.script("gateway", ImageNeverPull(after=0.1))
    api.wait_for(lambda: waiting_reason(core, "gateway") == "ErrImageNeverPull")


# ---------------------------------------------------------------------------------------------- jobs, CRDs


def test_job_succeeds_and_fails_with_logs(api: KubeAPI, core: client.CoreV1Api, batch: client.BatchV1Api,
                                          ns: str) -> None:
    api.script_job("migrations", JobSucceeds(after=0.1, log="applied 12 migrations"))
    api.script_job("broken", JobFails(after=0.1, log="ERROR: relation \"audit\" does not exist"))
    batch.create_namespaced_job(ns, job("migrations"))
    batch.create_namespaced_job(ns, job("broken"))

    done = api.wait_for(lambda: (j := batch.read_namespaced_job("migrations", ns)).status.succeeded and j)
    assert "Complete" in {c.type for c in done.status.conditions if c.status == "True"}
    assert done.status.completion_time is not None
    pod = core.list_namespaced_pod(ns, label_selector="job-name=migrations").items[0]
    assert pod.status.phase == "Succeeded"
    assert core.read_namespaced_pod_log(pod.metadata.name, ns) == "applied 12 migrations\n"

    failed = api.wait_for(lambda: (j := batch.read_namespaced_job("broken", ns)).status.failed and j)
    assert failed.status.failed == 1 and not failed.status.succeeded
    assert "Failed" in {c.type for c in failed.status.conditions if c.status == "True"}
    pod = core.list_namespaced_pod(ns, label_selector="job-name=broken").items[0]
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 1
    assert "relation" in core.read_namespaced_pod_log(pod.metadata.name, ns)

    # Deleting a Job through the API orphans its pods unless propagationPolicy says otherwise.
    batch.delete_namespaced_job("broken", ns)
    orphan = core.list_namespaced_pod(ns, label_selector="job-name=broken").items[0]
    assert not orphan.metadata.owner_references

    with pytest.raises(ApiException) as err:  # a Job's pod template is immutable
        changed = job("migrations")
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = "localhost/migrate:v2"
        batch.patch_namespaced_job("migrations", ns, changed, field_manager="e2e",
                                   _content_type="application/apply-patch+yaml")
    assert err.value.status == 422

    batch.delete_namespaced_job("migrations", ns, propagation_policy="Background")
    assert core.list_namespaced_pod(ns, label_selector="job-name=migrations").items == []


def test_crd_established_and_custom_resources(api: KubeAPI, api_client: client.ApiClient, ns: str) -> None:
    api.set_crd_established_after(0.3)
    ext = client.ApiextensionsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "remediationrequests.kubernaut.ai"},
        "spec": {"group": "kubernaut.ai", "scope": "Namespaced",
                 "names": {"plural": "remediationrequests", "singular": "remediationrequest",
                           "kind": "RemediationRequest", "shortNames": ["rr"]},
                 "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}},
                               "subresources": {"status": {}}}]},
    }
    created = ext.create_custom_resource_definition(crd)
    assert not (created.status and created.status.conditions)
    with pytest.raises(ApiException) as err:  # not served until Established
        custom.list_namespaced_custom_object("kubernaut.ai", "v1alpha1", ns, "remediationrequests")
    assert err.value.status == 404

    def established() -> bool:
        status = ext.read_custom_resource_definition("remediationrequests.kubernaut.ai").status
        return bool(status and any(c.type == "Established" and c.status == "True" for c in status.conditions or []))
    api.wait_for(established)

    rr = {"apiVersion": "kubernaut.ai/v1alpha1", "kind": "RemediationRequest",
          "metadata": {"name": "rr-1", "labels": {"signal": "high-cpu"}}, "spec": {"signalName": "HighCPU"}}
    custom.create_namespaced_custom_object("kubernaut.ai", "v1alpha1", ns, "remediationrequests", rr)
    listed = custom.list_namespaced_custom_object("kubernaut.ai", "v1alpha1", ns, "remediationrequests",
                                                  label_selector="signal=high-cpu")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["rr-1"]
    assert listed["kind"] == "RemediationRequestList"
    got = custom.get_namespaced_custom_object("kubernaut.ai", "v1alpha1", ns, "remediationrequests", "rr-1")
    assert got["spec"] == {"signalName": "HighCPU"}
    patched = custom.patch_namespaced_custom_object_status(
        "kubernaut.ai", "v1alpha1", ns, "remediationrequests", "rr-1", {"status": {"phase": "Processing"}})
    assert patched["status"] == {"phase": "Processing"} and patched["metadata"]["generation"] == 1
    assert api.objects("remediationrequests", ns)[0]["status"]["phase"] == "Processing"


# ---------------------------------------------------------------------------------------------- API semantics


def test_label_and_field_selectors(core: client.CoreV1Api, ns: str) -> None:
    for name, labels in (("a", {"app": "gateway", "tier": "api"}), ("b", {"app": "redis"}), ("c", {"app": "pg"})):
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name,
                                                                                              labels=labels)))

    def names(**kwargs: str) -> list[str]:
        return [i.metadata.name for i in core.list_namespaced_config_map(ns, **kwargs).items]

    assert names(label_selector="app=gateway,tier=api") == ["a"]
    assert names(label_selector="app in (redis, pg)") == ["b", "c"]
    assert names(label_selector="app notin (redis),!tier") == ["c"]
    assert names(label_selector="app!=gateway") == ["b", "c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b") == ["a", "c"]
    assert [i.metadata.name for i in core.list_config_map_for_all_namespaces(label_selector="app=pg").items] == ["c"]
    page = core.list_namespaced_config_map(ns, limit=2)
    assert len(page.items) == 2 and page.metadata._continue
    assert len(core.list_namespaced_config_map(ns, limit=2, _continue=page.metadata._continue).items) == 1


def test_error_status_codes(api: KubeAPI, core: client.CoreV1Api, apps: client.AppsV1Api, ns: str) -> None:
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("missing", ns)
    assert err.value.status == 404
    body = json.loads(err.value.body)
    assert (body["kind"], body["reason"], body["message"]) == ("Status", "NotFound", 'configmaps "missing" not found')

    with pytest.raises(ApiException) as err:
        apps.read_namespaced_deployment("missing", ns)
    assert json.loads(err.value.body)["message"] == 'deployments.apps "missing" not found'

    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dup")))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dup")))
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "AlreadyExists"

    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta()))
    assert err.value.status == 422 and json.loads(err.value.body)["reason"] == "Invalid"

    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("nowhere", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x")))
    assert err.value.status == 404

    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("missing", ns, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="missing")))
    assert err.value.status == 404

    stale = core.read_namespaced_config_map("dup", ns)
    core.patch_namespaced_config_map("dup", ns, {"data": {"k": "v"}})
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("dup", ns, stale)
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "Conflict"

    with pytest.raises(ApiException) as err:
        core.delete_namespaced_config_map("missing", ns)
    assert err.value.status == 404

    with pytest.raises(ApiException) as err:
        bad = deployment()
        bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
        apps.create_namespaced_deployment(ns, bad)
    assert err.value.status == 422


def test_patch_flavours_put_and_generation(api: KubeAPI, core: client.CoreV1Api, apps: client.AppsV1Api,
                                           ns: str) -> None:
    created = apps.create_namespaced_deployment(ns, deployment())
    assert created.metadata.generation == 1

    labelled = apps.patch_namespaced_deployment("gateway", ns, {"metadata": {"labels": {"team": "e2e"}}},
                                                _content_type="application/merge-patch+json")
    assert labelled.metadata.labels == {"app": "gateway", "team": "e2e"}
    assert labelled.metadata.generation == 1  # metadata-only change

    # Strategic merge patches merge containers by name: the port survives an image change.
    image = {"spec": {"template": {"spec": {"containers": [{"name": "gateway", "image": "gw:v2"}]}}}}
    patched = apps.patch_namespaced_deployment("gateway", ns, image)
    container = patched.spec.template.spec.containers[0]
    assert (container.image, container.ports[0].container_port) == ("gw:v2", 8080)
    assert patched.metadata.generation == 2

    ops = [{"op": "replace", "path": "/spec/replicas", "value": 2},
           {"op": "add", "path": "/metadata/annotations", "value": {"note": "json-patch"}},
           {"op": "remove", "path": "/metadata/labels/team"}]
    patched = apps.patch_namespaced_deployment("gateway", ns, ops, _content_type="application/json-patch+json")
    assert patched.spec.replicas == 2 and patched.metadata.annotations == {"note": "json-patch"}
    assert "team" not in patched.metadata.labels and patched.metadata.generation == 3

    # The template changed: the pods are replaced by two from the new ReplicaSet.
    api.wait_for(lambda: [p.spec.containers[0].image for p in pods_of(core, "gateway")] == ["gw:v2", "gw:v2"])
    api.wait_for(lambda: apps.read_namespaced_deployment("gateway", ns).status.updated_replicas == 2)

    cm = core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"),
                                                                  data={"a": "1"}))
    cm.data = {"a": "2"}
    replaced = core.replace_namespaced_config_map("cfg", ns, cm)
    assert replaced.data == {"a": "2"}
    assert int(replaced.metadata.resource_version) > int(cm.metadata.resource_version)

    secret = core.create_namespaced_secret(ns, client.V1Secret(metadata=client.V1ObjectMeta(name="db"),
                                                               string_data={"password": "s3cret"}))
    assert secret.data == {"password": "czNjcmV0"} and secret.type == "Opaque"

    svc = core.create_namespaced_service(ns, client.V1Service(
        metadata=client.V1ObjectMeta(name="gateway"),
        spec=client.V1ServiceSpec(type="NodePort", selector={"app": "gateway"},
                                  ports=[client.V1ServicePort(port=8080, node_port=30080)])))
    assert svc.spec.cluster_ip.startswith("10.96.") and svc.spec.ports[0].node_port == 30080


def test_namespace_delete_cascades(api: KubeAPI, core: client.CoreV1Api, apps: client.AppsV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg")))
    apps.create_namespaced_deployment(ns, deployment())
    api.wait_for(lambda: pods_of(core, "gateway"))

    core.delete_namespace(ns)
    with pytest.raises(ApiException) as err:
        core.read_namespace(ns)
    assert err.value.status == 404
    for plural in ("configmaps", "deployments", "replicasets", "pods", "events", "serviceaccounts"):
        assert api.objects(plural, ns) == [], plural
    time.sleep(0.3)  # the controllers must not resurrect anything
    assert api.objects("pods", ns) == []

    with pytest.raises(ApiException) as err:
        core.delete_namespace("default")
    assert err.value.status == 403


def test_namespace_termination_delay(api: KubeAPI, core: client.CoreV1Api, ns: str) -> None:
    api.set_namespace_termination(0.3)
    core.delete_namespace(ns)
    assert core.read_namespace(ns).status.phase == "Terminating"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="late")))
    assert err.value.status == 403

    def gone() -> bool:
        try:
            core.read_namespace(ns)
        except ApiException as exc:
            return exc.status == 404
        return False
    api.wait_for(gone)


def test_rbac_and_cluster_scoped_resources(api_client: client.ApiClient, ns: str) -> None:
    rbac = client.RbacAuthorizationV1Api(api_client)
    rbac.create_cluster_role({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                              "metadata": {"name": "gateway"},
                              "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
    rbac.create_cluster_role_binding({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                                      "metadata": {"name": "gateway"},
                                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                  "name": "gateway"},
                                      "subjects": [{"kind": "ServiceAccount", "name": "gateway", "namespace": ns}]})
    rbac.create_namespaced_role(ns, {"metadata": {"name": "r"}, "rules": []})
    rbac.create_namespaced_role_binding(ns, {"metadata": {"name": "rb"},
                                             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                         "name": "r"}})
    assert rbac.read_cluster_role("gateway").rules[0].resources == ["pods"]
    assert [r.metadata.name for r in rbac.list_namespaced_role_binding(ns).items] == ["rb"]
    rbac.delete_cluster_role_binding("gateway")
    assert rbac.list_cluster_role_binding().items == []


def test_stop_ends_open_watches(tmp_path: Path) -> None:
    server = KubeAPI().start()
    path = server.kubeconfig(tmp_path / "kubeconfig")
    outcome: dict[str, Any] = {}

    def consume() -> None:
        with config.new_client_from_config(config_file=path) as api_client:
            try:
                stream = watch.Watch().stream(client.CoreV1Api(api_client).list_namespace, timeout_seconds=60)
                outcome["names"] = [e["object"].metadata.name for e in stream]
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

    thread = threading.Thread(target=consume)
    thread.start()
    server.wait_for(lambda: any(q.get("watch") == "true" for _, _, q in server.requests))
    server.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert "error" not in outcome and "default" in outcome["names"]
