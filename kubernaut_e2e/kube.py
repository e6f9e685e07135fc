"""The Kubernetes API, for what the steps need: get/list/apply/create/delete, logs, a pod watch.

The `kubernetes` client reads the kubeconfig (TLS client certificates, tokens, exec plugins,
proxies) and owns the connection pool; requests are sent on that pool here, with urllib3
calls that exist in every supported client (kubernetes>=30: its generated `param_serialize`
arrived only later), so that this module, not the generated code, decides:

- timeouts: 5 s to connect, `request_timeout` (10 s) to answer, per attempt; a `deadline()`
  (a readiness wait's own timeout) caps every call made under it;
- retries: connection refused or reset, timeouts of reads, HTTP 500/502/503/504 and 429 (after
  its Retry-After) are retried with exponential backoff, a few times within a bounded budget;
  a POST only where the server surely did nothing (refused, 429, 503);
- interruption: with a Cancellation, every call (and every backoff) returns within a moment of
  a cancel or Ctrl-C, whatever the server does;
- errors: one line, `Kubernetes API: GET /path: HTTP 500 InternalError: message`, never a
  multi-line ApiException with HTTP headers.

Objects are plain dicts (the API's own JSON). Apply is server-side apply with a field manager,
so re-applying an unchanged object is a no-op on the server (same resourceVersion); an object
that is already what we last applied is not even sent (a warm run only reads). Imported
only by the Kubernetes steps: `invoke --list` never loads the client.
"""
from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import urllib3

from kubernaut_e2e.runner import Cancellation

FIELD_MANAGER = "kubernaut-e2e"
T = TypeVar("T")

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
    """An API call failed; `status` is the HTTP status (0: no answer), `reason` the API's."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        self.status = status
        self.reason = reason
        head = f"HTTP {status}{' ' + reason if reason else ''}: " if status else ""
        super().__init__(" ".join(f"Kubernetes API: {head}{message}".split())[:400])


@dataclass(frozen=True)
class Applied:
    description: str  # Kind/ns/name
    action: str  # created | configured | unchanged


@dataclass(frozen=True)
class RetryPolicy:
    """How often, how long: attempts in all, the first backoff (doubled each time), caps."""

    attempts: int = 5
    backoff: float = 0.2
    max_backoff: float = 2.0
    max_retry_after: float = 5.0
    budget: float = 30.0  # seconds one call may take, retries included

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based). Pure."""
        if retry_after:
            try:
                return min(self.max_retry_after, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: fall back to the backoff
        return min(self.max_backoff, self.backoff * (2 ** attempt))


#: Statuses worth retrying: the server (or a proxy) is briefly unable to answer.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: For a POST only these: the request surely did nothing (a 500 may have created the object).
RETRY_STATUSES_UNSAFE = frozenset({429, 503})


def retryable(method: str, status: int, error: BaseException | None = None) -> bool:
    """Whether a failed attempt may be repeated. Pure."""
    if error is not None:
        if isinstance(error, urllib3.exceptions.NewConnectionError):  # refused: nothing was sent
            return True
        if isinstance(error, (urllib3.exceptions.ProtocolError, urllib3.exceptions.TimeoutError)):
            return method != "POST"  # reset or no answer: a POST may have been applied
        return False
    return status in (RETRY_STATUSES_UNSAFE if method == "POST" else RETRY_STATUSES)


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


def _describe_error(exc: BaseException) -> str:
    """"connection refused", "read timed out": the cause, not urllib3's nested repr."""
    while getattr(exc, "reason", None) is not None and isinstance(exc.reason, BaseException):  # type: ignore[attr-defined]
        exc = exc.reason  # type: ignore[attr-defined]
    text = str(exc)
    for known in ("Connection refused", "Connection reset by peer", "Read timed out", "timed out",
                  "Name or service not known", "certificate verify failed", "Remote end closed connection"):
        if known.lower() in text.lower():
            return known.lower()
    return " ".join(text.split())[:160] or type(exc).__name__


def _api_error(method: str, path: str, status: int, payload: bytes, attempts: int) -> KubeError:
    text = payload.decode("utf-8", "replace") if payload else ""
    reason, message = "", text
    try:
        doc = json.loads(text)
        if isinstance(doc, dict):
            reason, message = str(doc.get("reason") or ""), str(doc.get("message") or text)
    except ValueError:
        pass
    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
    return KubeError(status, f"{method} {path}: {message.strip() or 'no message'}{tries}", reason)


class Kube:
    """A connection to one cluster, from a dedicated kubeconfig file."""

    def __init__(self, kubeconfig: Path, request_timeout: float = 10.0, *,
                 cancellation: Cancellation | None = None, connect_timeout: float = 5.0,
                 retry: RetryPolicy = RetryPolicy()) -> None:
        from kubernetes import config as k8s_config

        try:
            self.api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
        except Exception as exc:  # ConfigException, YAML errors, a missing file
            raise KubeError(0, f"kubeconfig {kubeconfig}: {' '.join(str(exc).split())[:200]}") from None
        self.timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.cancellation = cancellation
        self.retry = retry
        self._host = self.api.configuration.host.rstrip("/")
        self._pool = self.api.rest_client.pool_manager
        self._local = threading.local()
        self._discovered: dict[tuple[str, str], tuple[str, str, bool]] = {}

    def close(self) -> None:
        self._pool.clear()
        self.api.close()

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Calls in this block (this thread) end by `seconds` from now, retries included.

        At least one short attempt is still made after the deadline, so that a wait that ran
        out of time can still fetch what it reports.
        """
        previous = getattr(self._local, "deadline", None)
        self._local.deadline = time.monotonic() + seconds
        try:
            yield
        finally:
            self._local.deadline = previous

    # --- raw requests --------------------------------------------------------------------

    def _headers(self, accept: str, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": "kubernaut-e2e"}
        if content_type:
            headers["Content-Type"] = content_type
        for auth in self.api.configuration.auth_settings().values():  # refreshes exec/oidc tokens
            if auth.get("in") == "header" and auth.get("value"):
                headers[auth["key"]] = auth["value"]
        return headers

    def _interruptibly(self, call: Callable[[], T]) -> T:
        """Run `call`, returning (Cancelled) as soon as the run is cancelled, whatever it waits on.

        A blocked socket cannot be interrupted from another thread, so the call runs in a
        daemon thread that is left behind on a cancel; its own timeouts end it soon after.
        """
        if self.cancellation is None:
            return call()
        self.cancellation.check()
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["value"] = call()
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=run, name="kube-call", daemon=True).start()
        while not done.wait(0.05):
            self.cancellation.check()
        if "error" in box:
            raise box["error"]
        return box["value"]  # type: ignore[no-any-return]

    def _send(self, method: str, path: str, query: Mapping[str, str] | None, body: Any,
              content_type: str | None, accept: str, read_timeout: float | None = None,
              stream: bool = False) -> urllib3.BaseHTTPResponse:
        """One call with the retry policy; returns a 2xx response (streaming when `stream`)."""
        url = self._host + path + (f"?{urlencode(dict(query))}" if query else "")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            content_type = content_type or "application/json"
        started = time.monotonic()
        limit = getattr(self._local, "deadline", None)
        ends = started + self.retry.budget
        if limit is not None:
            ends = min(ends, max(limit, started + 2.0))
        attempt = 0
        while True:
            remaining = max(0.5, ends - time.monotonic())
            timeout = urllib3.Timeout(connect=min(self.connect_timeout, remaining),
                                      read=min(read_timeout or self.timeout, remaining))
            headers = self._headers(accept, content_type)
            error: BaseException | None = None
            try:
                resp = self._interruptibly(lambda: self._pool.request(
                    method, url, body=data, headers=headers, timeout=timeout, retries=False,
                    redirect=False, preload_content=not stream))
            except urllib3.exceptions.HTTPError as exc:
                error, status, retry_after = exc, 0, None
            else:
                status = resp.status
                if 200 <= status < 300:
                    return resp
                retry_after = resp.headers.get("Retry-After")
                payload = resp.data if not stream else resp.read(65536)
                resp.release_conn()
            attempts = attempt + 1
            delay = self.retry.delay(attempt, retry_after)
            if (not retryable(method, status, error) or attempts >= self.retry.attempts
                    or time.monotonic() + delay >= ends):
                if error is not None:
                    late = " (the call's time ran out)" if time.monotonic() >= ends else ""
                    tries = f" after {attempts} attempts" if attempts > 1 else ""
                    raise KubeError(0, f"{method} {path}: no answer from {self._host}: "
                                       f"{_describe_error(error)}{tries}{late}") from None
                raise _api_error(method, path, status, payload, attempts)
            if self.cancellation is not None:
                if self.cancellation.wait(delay):
                    self.cancellation.check()
            else:
                time.sleep(delay)
            attempt += 1

    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                body: Any = None, content_type: str | None = None, raw: bool = False) -> Any:
        resp = self._send(method, path, query, body, content_type, "*/*" if raw else "application/json")
        text = resp.data.decode("utf-8", "replace") if resp.data else ""
        if raw:
            return text
        try:
            return json.loads(text) if text else {}
        except ValueError:
            raise KubeError(resp.status, f"{method} {path}: the answer is not JSON: {text[:120]!r}") from None

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
        """Server-side apply; report whether the server changed anything. An object that is
        already what we last applied is not sent again (kubernaut_e2e.lastapplied)."""
        from kubernaut_e2e import lastapplied

        meta = obj["metadata"]
        kind, name, ns = obj["kind"], meta["name"], meta.get("namespace")
        desc = f"{kind}/{ns + '/' if ns else ''}{name}"
        before = self.get_object(obj)
        if lastapplied.is_current(before, obj):
            return Applied(desc, "unchanged")
        after = self.request(
            "PATCH", self.path_of(obj), body=lastapplied.with_hash(obj),
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type="application/apply-patch+yaml")
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

    def watch_pods(self, namespace: str, selector: str, timeout: float) -> Iterator[dict[str, Any]]:
        """Pod objects as they change (and as they are at the start), for up to `timeout` s."""
        seconds = max(1, int(timeout))
        resp = self._send("GET", object_path("Pod", None, namespace),
                          {"labelSelector": selector, "watch": "true", "timeoutSeconds": str(seconds)},
                          None, None, "application/json", read_timeout=seconds + 5, stream=True)
        events: queue.Queue[tuple[str, Any]] = queue.Queue()

        def read() -> None:
            buffered = b""
            try:
                for chunk in resp.stream(4096, decode_content=True):
                    buffered += chunk
                    while b"\n" in buffered:
                        line, buffered = buffered.split(b"\n", 1)
                        if line.strip():
                            events.put(("event", line))
                if buffered.strip():
                    events.put(("event", buffered))
                events.put(("end", None))
            except Exception as exc:  # urllib3 read errors: the caller decides
                events.put(("error", exc))
            finally:
                resp.release_conn()

        threading.Thread(target=read, name="kube-watch", daemon=True).start()
        ends = time.monotonic() + seconds + 5
        while True:
            if self.cancellation is not None:
                self.cancellation.check()
            try:
                what, value = events.get(timeout=0.1)
            except queue.Empty:
                if time.monotonic() > ends:
                    return
                continue
            if what == "end":
                return
            if what == "error":
                if isinstance(value, urllib3.exceptions.ReadTimeoutError):
                    return  # the watch's time is up: the caller looks again
                raise KubeError(0, f"watch of pods in {namespace}: {_describe_error(value)}") from None
            try:
                event = json.loads(value)
            except ValueError:
                continue
            obj = event.get("object")
            if event.get("type") == "ERROR":
                return  # e.g. 410 Gone: a new watch starts from the current state
            if isinstance(obj, dict) and event.get("type") in ("ADDED", "MODIFIED"):
                yield obj

    def events_for(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return self.list("Event", namespace, field_selector=f"involvedObject.name={name}")
