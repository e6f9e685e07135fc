"""The Kubernetes API, through the real `kubernetes` client, for what the steps need.

Objects are plain dicts (the API's own JSON). Apply is server-side apply with a field manager,
so re-applying an unchanged object is a no-op on the server (same resourceVersion). Imported
only by the Kubernetes steps: `invoke --list` never loads the client.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch

FIELD_MANAGER = "kubernaut-e2e"

#: kind -> (API prefix, plural, namespaced). A static table for the built-in kinds saves a round
#: trip per kind; other kinds (a stack's custom resources) are looked up by discovery, once.
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("/api/v1", "namespaces", False),
    "Node": ("/api/v1", "nodes", False),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Secret": ("/api/v1", "secrets", True),
    "Service": ("/api/v1", "services", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Pod": ("/api/v1", "pods", True),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims", True),
    "Event": ("/api/v1", "events", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "ReplicaSet": ("/apis/apps/v1", "replicasets", True),
    "Job": ("/apis/batch/v1", "jobs", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "CustomResourceDefinition": ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
}


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"Kubernetes API: HTTP {status}: {message}")


@dataclass(frozen=True)
class Applied:
    description: str  # Kind/ns/name
    action: str  # created | configured | unchanged


def object_path(kind: str, name: str | None = None, namespace: str | None = None,
                resource: tuple[str, str, bool] | None = None) -> str:
    if resource is None and kind not in RESOURCES:
        raise KubeError(400, f"kind {kind} is not one this project manages")
    prefix, plural, namespaced = resource or RESOURCES[kind]
    path = prefix
    if namespaced:
        if not namespace:
            raise KubeError(400, f"{kind} {name} needs a namespace")
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    return f"{path}/{name}" if name else path


class Kube:
    """A connection to one cluster, from a dedicated kubeconfig file."""

    def __init__(self, kubeconfig: Path, request_timeout: float = 30.0) -> None:
        self.api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
        self.timeout = request_timeout
        self._discovered: dict[tuple[str, str], tuple[str, str, bool]] = {}

    def close(self) -> None:
        self.api.close()

    # --- raw requests --------------------------------------------------------------------

    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                body: Any = None, content_type: str | None = None, raw: bool = False) -> Any:
        headers = {"Accept": "*/*" if raw else "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        m, url, hdrs, body_out, _ = self.api.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()),
            header_params=headers, body=body, auth_settings=["BearerToken"])
        resp = self.api.call_api(m, url, header_params=hdrs, body=body_out,
                                 _request_timeout=self.timeout)
        data = resp.read()
        text = data.decode("utf-8", "replace") if data else ""
        if not 200 <= resp.status < 300:
            try:
                message = json.loads(text).get("message", text)
            except (ValueError, AttributeError):
                message = text
            raise KubeError(resp.status, message.strip()[:500])
        if raw:
            return text
        return json.loads(text) if text else {}

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self.request("GET", object_path(kind, name, namespace))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None = None, *, selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        query = {k: v for k, v in (("labelSelector", selector), ("fieldSelector", field_selector)) if v}
        return self.request("GET", object_path(kind, None, namespace), query=query).get("items", [])

    def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        try:
            self.request("DELETE", object_path(kind, name, namespace),
                         query={"propagationPolicy": "Background"})
            return True
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return self.request("POST", object_path(obj["kind"], None, meta.get("namespace")), body=dict(obj))

    # --- any kind, by its apiVersion ----------------------------------------------------------

    def resource(self, kind: str, api_version: str) -> tuple[str, str, bool]:
        """(API prefix, plural, namespaced) of a kind: the static table, else discovery."""
        if kind in RESOURCES and RESOURCES[kind][0].endswith("/" + api_version):
            return RESOURCES[kind]
        key = (api_version, kind)
        if key not in self._discovered:
            prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            listing = self.request("GET", prefix).get("resources") or []
            found = next((r for r in listing if r.get("kind") == kind and "/" not in r.get("name", "")), None)
            if found is None:
                raise KubeError(404, f"the server does not serve {kind} in {api_version} (is its CRD installed?)")
            self._discovered[key] = (prefix, found["name"], bool(found.get("namespaced")))
        return self._discovered[key]

    def path_of(self, obj: Mapping[str, Any]) -> str:
        meta = obj["metadata"]
        return object_path(obj["kind"], meta["name"], meta.get("namespace"),
                           self.resource(obj["kind"], obj.get("apiVersion", "v1")))

    def get_object(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        """The server's copy of `obj` (any kind), or None."""
        try:
            return self.request("GET", self.path_of(obj))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def patch_status(self, obj: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge `status` into the object's status subresource."""
        return self.request("PATCH", self.path_of(obj) + "/status", body={"status": dict(status)},
                            content_type="application/merge-patch+json")

    # --- apply ---------------------------------------------------------------------------

    def apply(self, obj: Mapping[str, Any]) -> Applied:
        """Server-side apply; report whether the server changed anything."""
        meta = obj["metadata"]
        kind, name, ns = obj["kind"], meta["name"], meta.get("namespace")
        before = self.get_object(obj)
        after = self.request(
            "PATCH", self.path_of(obj), body=dict(obj),
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type="application/apply-patch+yaml")
        desc = f"{kind}/{ns + '/' if ns else ''}{name}"
        if before is None:
            return Applied(desc, "created")
        same = before["metadata"].get("resourceVersion") == after["metadata"].get("resourceVersion")
        return Applied(desc, "unchanged" if same else "configured")

    # --- pods, logs, watch ---------------------------------------------------------------

    def pod_log(self, namespace: str, pod: str, container: str, *, previous: bool = False,
                tail: int = 40) -> str:
        query = {"container": container, "tailLines": str(tail)}
        if previous:
            query["previous"] = "true"
        try:
            return self.request("GET", object_path("Pod", pod, namespace) + "/log", query=query, raw=True)
        except KubeError:
            return ""  # no previous container yet, or the container never started

    def watch_pods(self, namespace: str, selector: str, timeout: int) -> Iterator[dict[str, Any]]:
        """Pod objects as they change (and as they are at the start), for up to `timeout` s."""
        core = k8s.CoreV1Api(self.api)
        w = k8s_watch.Watch()
        try:
            for event in w.stream(core.list_namespaced_pod, namespace, label_selector=selector,
                                  timeout_seconds=max(1, int(timeout)),
                                  _request_timeout=max(1, int(timeout)) + 5):
                obj = event.get("raw_object")
                if isinstance(obj, dict) and event.get("type") != "DELETED":
                    yield obj
        finally:
            w.stop()

    def events_for(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return self.list("Event", namespace, field_selector=f"involvedObject.name={name}")
