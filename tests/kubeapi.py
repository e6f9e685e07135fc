"""A small threaded Kubernetes API server stand-in for tests.

Why this exists: no real API server can run on the test machines (see /work/shared/notes/machine.md), yet
the product must be exercised through the real ``kubernetes`` Python client over real HTTP. This module
serves the subset of the API the product uses, simulates just enough of the controllers and the kubelet
for the product's wait loops (Deployment -> ReplicaSet -> Pods, Job -> Pods, CRD establishment, Service
IPs, Events), and lets a test script how each workload's pods behave (ready, crash-looping, image
problems, ...).

Layout, top to bottom:
  scripts        Ready, CrashLoop, ...: pure functions "elapsed time -> container status, logs, events"
  selectors      label and field selectors
  ResourceType / Catalog   which URLs exist (built-ins + established CRDs) and the discovery documents
  Store          objects, the global resourceVersion and the watch history, behind one lock
  Watcher / WatchHub       per-watcher queues fed by the Store
  ObjectService  API semantics: create/replace/patch/apply/delete, defaults, validation, garbage collection
  Controllers    the ticker thread standing in for kube-controller-manager, the scheduler and the kubelet
  _Handler       HTTP routing (stdlib http.server, HTTP/1.1, chunked watch streams)
  KubeAPI        the facade tests use

Convention that keeps the threading simple: an object stored in the Store is never mutated in place.
Writers deep-copy, change the copy and save it, so watch events and HTTP responses can serialise stored
objects outside the lock.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import ipaddress
import json
import os
import platform
import random
import re
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, ClassVar
from urllib.parse import parse_qs, urlsplit

import yaml

Obj = dict[str, Any]
RtKey = tuple[str, str]  # (group, plural): where objects of one resource live in the Store

K8S_VERSION = "v1.33.1"
TICK_SECONDS = 0.1
# Characters Kubernetes uses for generated name suffixes (no vowels, no confusable digits).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _now() -> float:
    return time.time()


def rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _suffix(n: int = 5) -> str:
    return "".join(random.choice(_SUFFIX_ALPHABET) for _ in range(n))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


# =====================================================================================================
# Scripts: how the containers of a workload behave. A script is a pure function of the time elapsed
# since the pod appeared (or since the script was set, whichever is later), so the ticker can recompute
# the status at every tick and only write when something changed.
# =====================================================================================================


@dataclass(frozen=True)
class ContainerCtx:
    """What a script needs to know about the container it renders."""

    pod: str
    namespace: str
    pod_uid: str
    container: str
    image: str
    origin: float  # wall-clock time the script's clock started

    @property
    def pod_ref(self) -> str:
        return f"{self.pod}_{self.namespace}({self.pod_uid})"

    def at(self, offset: float) -> str:
        return rfc3339(self.origin + offset)

    def container_id(self, run: int) -> str:
        return "containerd://" + _sha(f"{self.pod_uid}/{self.container}/{run}")


@dataclass
class EventSpec:
    """An Event that should exist (with this count) for the container at the current time."""

    type: str
    reason: str
    message: str
    count: int = 1
    component: str = "kubelet"


@dataclass
class ContainerView:
    """The rendered state of one container: status fields, logs, events."""

    phase: str  # the pod phase this container implies: Pending | Running | Succeeded | Failed
    state: Obj
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    restart_count: int = 0
    log: str | None = None  # current container's log; None: no container has run yet
    previous_log: str | None = None  # previous (terminated) container's log
    events: list[EventSpec] = field(default_factory=list)
    waiting_detail: str = "ContainerCreating"  # why logs are unavailable while log is None
    started_at: float | None = None  # offset (s) from origin the current log starts at (timestamps=true)

    @property
    def has_run(self) -> bool:
        return "running" in self.state or "terminated" in self.state or self.restart_count > 0


def _waiting(reason: str, message: str | None = None) -> Obj:
    waiting: Obj = {"reason": reason}
    if message:
        waiting["message"] = message
    return {"waiting": waiting}


def _start_events(ctx: ContainerCtx, count: int = 1) -> list[EventSpec]:
    return [
        EventSpec("Normal", "Pulled", f'Container image "{ctx.image}" already present on machine', count),
        EventSpec("Normal", "Created", f"Created container: {ctx.container}", count),
        EventSpec("Normal", "Started", f"Started container {ctx.container}", count),
    ]


def _every_second(t: float) -> int:
    """How many times a kubelet loop (~1 s here, faster than real) has fired after t seconds."""
    return 1 + int(t // 1.0)


class Script:
    """Base class: `after` seconds of ContainerCreating, then whatever `_view` renders."""

    after: float = 0.2

    def view(self, ctx: ContainerCtx, elapsed: float) -> ContainerView:
        if elapsed < self.after:
            return ContainerView("Pending", _waiting("ContainerCreating"))
        return self._view(ctx, elapsed - self.after)

    def _view(self, ctx: ContainerCtx, t: float) -> ContainerView:  # t: seconds since `after`
        raise NotImplementedError


@dataclass
class Ready(Script):
    """The container starts after `after` seconds and is ready (readiness probe passes)."""

    after: float = 0.2
    log: str = ""

    def _view(self, ctx: ContainerCtx, t: float) -> ContainerView:
        return ContainerView(
            "Running", {"running": {"startedAt": ctx.at(self.after)}}, ready=True, started=True,
            log=self.log, events=_start_events(ctx), started_at=self.after,
        )


@dataclass
class NeverReady(Script):
    """Running but never ready: the readiness probe keeps failing (Warning Unhealthy events)."""

    after: float = 0.2
    log: str = ""
    message: str = "Readiness probe failed: HTTP probe failed with statuscode: 503"

    def _view(self, ctx: ContainerCtx, t: float) -> ContainerView:
        events = _start_events(ctx) + [EventSpec("Warning", "Unhealthy", self.message, _every_second(t))]
        return ContainerView(
            "Running", {"running": {"startedAt": ctx.at(self.after)}}, ready=False, started=True,
            log=self.log, events=events, started_at=self.after,
        )


@dataclass
class CrashLoop(Script):
    """The container runs for a moment, exits with `exit_code`, and is restarted about once a second.

    Status: state.waiting.reason=CrashLoopBackOff, lastState.terminated{exitCode, reason, message (last
    line of the log), startedAt, finishedAt}, restartCount growing. Logs: the scripted log, both current
    and previous=true (once a container has terminated).
    """

    after: float = 0.5
    exit_code: int = 1
    log: str = ""
    reason: str = "Error"
    run_for: ClassVar[float] = 0.2  # how long each container instance lives
    period: ClassVar[float] = 1.0  # restart cadence (real kubelet: 10 s doubling, capped at 5 min)

    def _view(self, ctx: ContainerCtx, t: float) -> ContainerView:
        if t < self.run_for:
            return ContainerView(
                "Running", {"running": {"startedAt": ctx.at(self.after)}}, started=True,
                log=self.log, events=_start_events(ctx), started_at=self.after,
            )
        run = int((t - self.run_for) // self.period)  # index of the most recent terminated container
        restarts = run + 1
        started = self.after + run * self.period
        terminated: Obj = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": ctx.at(started),
            "finishedAt": ctx.at(started + self.run_for),
            "containerID": ctx.container_id(run),
        }
        if message := _last_line(self.log):
            terminated["message"] = message
        backoff = min(10 * 2**run, 300)
        events = _start_events(ctx, restarts) + [
            EventSpec("Warning", "BackOff",
                      f"Back-off restarting failed container {ctx.container} in pod {ctx.pod_ref}", restarts),
        ] + self._extra_events(ctx, restarts)
        return ContainerView(
            "Running",
            _waiting("CrashLoopBackOff",
                     f"back-off {backoff}s restarting failed container={ctx.container} pod={ctx.pod_ref}"),
            last_state={"terminated": terminated}, restart_count=restarts,
            log=self.log, previous_log=self.log, events=events, started_at=started,
        )

    def _extra_events(self, ctx: ContainerCtx, restarts: int) -> list[EventSpec]:
        return []


@dataclass
class OOMKilled(CrashLoop):
    """Like CrashLoop, but each container is OOM-killed: lastState.terminated reason OOMKilled, exit 137."""

    after: float = 0.5
    exit_code: int = 137
    log: str = ""
    reason: str = "OOMKilled"

    def _extra_events(self, ctx: ContainerCtx, restarts: int) -> list[EventSpec]:
        return [EventSpec("Warning", "OOMKilling",
                          f"Memory cgroup out of memory: Killed process 4242 ({ctx.container})", restarts)]


@dataclass
class ImageNeverPull(Script):
    """imagePullPolicy Never and the image is not on the node: waiting ErrImageNeverPull."""

    after: float = 0.3

    def _view(self, ctx: ContainerCtx, t: float) -> ContainerView:
        message = f'Container image "{ctx.image}" is not present with pull policy of Never'
        n = _every_second(t)
        return ContainerView(
            "Pending", _waiting("ErrImageNeverPull", message),
            events=[EventSpec("Warning", "ErrImageNeverPull", message, n),
                    EventSpec("Warning", "Failed", "Error: ErrImageNeverPull", n)],
            waiting_detail="image can't be pulled",
        )


@dataclass
class ImagePullBackOff(Script):
    """The image cannot be pulled: ErrImagePull for half a second, then ImagePullBackOff."""

    after: float = 0.3

    def _view(self, ctx: ContainerCtx, t: float) -> ContainerView:
        image = ctx.image
        cause = (f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
                 f'failed to resolve reference "{image}": not found')
        n = _every_second(t)
        events = [
            EventSpec("Normal", "Pulling", f'Pulling image "{image}"', n),
            EventSpec("Warning", "Failed", f'Failed to pull image "{image}": {cause}', n),
            EventSpec("Warning", "Failed", "Error: ErrImagePull", n),
        ]
        if t < 0.5:
            state = _waiting("ErrImagePull", cause)
        else:
            state = _waiting("ImagePullBackOff", f'Back-off pulling image "{image}": ErrImagePull: {cause}')
            events += [EventSpec("Normal", "BackOff", f'Back-off pulling image "{image}"', n),
                       EventSpec("Warning", "Failed", "Error: ImagePullBackOff", n)]
        return ContainerView("Pending", state, events=events, waiting_detail="trying and failing to pull image")


@dataclass
class ConfigError(Script):
    """The container cannot be configured (missing Secret/ConfigMap key): CreateContainerConfigError."""

    after: float = 0.3
    message: str = 'secret "x" not found'

    def _view(self, ctx: ContainerCtx, t: float) -> ContainerView:
        return ContainerView(
            "Pending", _waiting("CreateContainerConfigError", self.message),
            events=[EventSpec("Warning", "Failed", f"Error: {self.message}", _every_second(t))],
            waiting_detail="CreateContainerConfigError",
        )


@dataclass
class JobSucceeds(Script):
    """A Job's container runs to completion with exit code 0 after `after` seconds."""

    after: float = 0.2
    log: str = ""

    def _view(self, ctx: ContainerCtx, t: float) -> ContainerView:
        terminated = {"exitCode": 0, "reason": "Completed", "startedAt": ctx.at(self.after),
                      "finishedAt": ctx.at(self.after), "containerID": ctx.container_id(0)}
        return ContainerView("Succeeded", {"terminated": terminated}, log=self.log,
                             events=_start_events(ctx), started_at=self.after)


@dataclass
class JobFails(Script):
    """A Job's container exits with `exit_code` after `after` seconds (every retry fails the same way)."""

    after: float = 0.2
    log: str = ""
    exit_code: int = 1

    def _view(self, ctx: ContainerCtx, t: float) -> ContainerView:
        terminated: Obj = {"exitCode": self.exit_code, "reason": "Error", "startedAt": ctx.at(self.after),
                           "finishedAt": ctx.at(self.after), "containerID": ctx.container_id(0)}
        if message := _last_line(self.log):
            terminated["message"] = message
        return ContainerView("Failed", {"terminated": terminated}, log=self.log,
                             events=_start_events(ctx), started_at=self.after)


# =====================================================================================================
# Errors and selectors
# =====================================================================================================


class ApiError(Exception):
    """Rendered as a metav1.Status with the given HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


class LabelSelector:
    """Equality (`a=b`, `a==b`, `a!=b`), set (`a in (x,y)`, `a notin (x)`) and existence (`a`, `!a`)."""

    _KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
    _SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
    _EQ = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)\s*$")
    _EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")

    def __init__(self, text: str | None):
        self.text = text or ""
        self.requirements: list[tuple[str, str, set[str]]] = []
        for part in self._split(self.text):
            if not part.strip():
                continue
            if m := self._SET.match(part):
                values = {v.strip() for v in m.group(3).split(",") if v.strip()}
                self.requirements.append((m.group(1), m.group(2), values))
            elif m := self._EQ.match(part):
                self.requirements.append((m.group(1), "!=" if m.group(2) == "!=" else "=", {m.group(3)}))
            elif m := self._EXISTS.match(part):
                self.requirements.append((m.group(2), "!" if m.group(1) else "exists", set()))
            else:
                raise bad_request(f"unable to parse requirement: {part!r}")

    @staticmethod
    def _split(text: str) -> list[str]:
        parts, depth, current = [], 0, ""
        for ch in text:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(current)
                current = ""
            else:
                current += ch
        parts.append(current)
        return parts

    def matches(self, labels: Obj | None) -> bool:
        labels = labels or {}
        for key, op, values in self.requirements:
            present, value = key in labels, labels.get(key)
            ok = {
                "=": present and value in values,
                "in": present and value in values,
                "!=": not present or value not in values,
                "notin": not present or value not in values,
                "exists": present,
                "!": not present,
            }[op]
            if not ok:
                return False
        return True


class FieldSelector:
    """`path=value`, `path==value`, `path!=value` on any dotted field path (metadata.name,
    involvedObject.name, status.phase, spec.nodeName, type, reason, ...)."""

    def __init__(self, text: str | None):
        self.text = text or ""
        self.requirements: list[tuple[list[str], bool, str]] = []
        for part in self.text.split(","):
            if not part.strip():
                continue
            m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
            if not m:
                raise bad_request(f"invalid selector: '{self.text}'; can't understand '{part}'")
            self.requirements.append((m.group(1).split("."), m.group(2) != "!=", m.group(3)))

    @staticmethod
    def _value(obj: Obj, path: list[str]) -> str:
        current: Any = obj
        for key in path:
            current = current.get(key) if isinstance(current, dict) else None
        if isinstance(current, bool):
            return "true" if current else "false"
        return "" if current is None else str(current)

    def matches(self, obj: Obj) -> bool:
        return all((self._value(obj, path) == value) == equal for path, equal, value in self.requirements)


# =====================================================================================================
# Resource catalog and discovery
# =====================================================================================================

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    has_status: bool = True  # has a status subresource: main-resource writes keep the stored status
    list_kind: str = ""

    @property
    def key(self) -> RtKey:
        return (self.group, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """How error messages name the resource: `pods`, `deployments.apps`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """How validation messages name the kind: `Pod`, `Deployment.apps`."""
        return f"{self.kind}.{self.group}" if self.group else self.kind


def _rt(gv: str, plural: str, kind: str, namespaced: bool = True, short: tuple[str, ...] = (),
        status: bool = True) -> ResourceType:
    group, _, version = gv.rpartition("/")
    return ResourceType(group, version, plural, kind, namespaced, kind.lower(), short, status, kind + "List")


BUILTINS: list[ResourceType] = [
    _rt("v1", "namespaces", "Namespace", False, ("ns",)),
    _rt("v1", "pods", "Pod", True, ("po",)),
    _rt("v1", "services", "Service", True, ("svc",)),
    _rt("v1", "configmaps", "ConfigMap", True, ("cm",), status=False),
    _rt("v1", "secrets", "Secret", True, status=False),
    _rt("v1", "serviceaccounts", "ServiceAccount", True, ("sa",), status=False),
    _rt("v1", "events", "Event", True, ("ev",), status=False),
    _rt("v1", "nodes", "Node", False, ("no",)),
    _rt("v1", "endpoints", "Endpoints", True, ("ep",), status=False),
    _rt("v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",)),
    _rt("v1", "persistentvolumes", "PersistentVolume", False, ("pv",)),
    _rt("apps/v1", "deployments", "Deployment", True, ("deploy",)),
    _rt("apps/v1", "replicasets", "ReplicaSet", True, ("rs",)),
    _rt("apps/v1", "statefulsets", "StatefulSet", True, ("sts",)),
    _rt("apps/v1", "daemonsets", "DaemonSet", True, ("ds",)),
    _rt("batch/v1", "jobs", "Job", True),
    _rt("batch/v1", "cronjobs", "CronJob", True, ("cj",)),
    _rt("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", False, status=False),
    _rt("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", False, status=False),
    _rt("rbac.authorization.k8s.io/v1", "roles", "Role", True, status=False),
    _rt("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding", True, status=False),
    _rt("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition", False,
        ("crd", "crds")),
    _rt("networking.k8s.io/v1", "ingresses", "Ingress", True, ("ing",)),
    _rt("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", True, ("netpol",), status=False),
    _rt("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",)),
    _rt("storage.k8s.io/v1", "storageclasses", "StorageClass", False, ("sc",), status=False),
]
RT: dict[str, ResourceType] = {rt.plural: rt for rt in BUILTINS}  # built-in plurals are unique
RT_CRD = RT["customresourcedefinitions"]
_BUILTIN_KEYS = {rt.key for rt in BUILTINS}


def _condition_true(obj: Obj, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


class Catalog:
    """Answers "which resource does this URL name?" for built-ins and for established CRDs."""

    def __init__(self, store: "Store"):
        self.store = store
        self._builtin = {(rt.group, rt.version, rt.plural): rt for rt in BUILTINS}

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        if rt := self._builtin.get((group, version, plural)):
            return rt
        for rt in self.crd_types():
            if (rt.group, rt.version, rt.plural) == (group, version, plural):
                return rt
        return None

    def crd_types(self) -> list[ResourceType]:
        """One ResourceType per served version of every *established* CRD (the API server only serves
        a custom resource once its CRD is Established, which is why installers wait for it)."""
        types = []
        for crd in self.store.list(RT_CRD.key):
            if not _condition_true(crd, "Established"):
                continue
            spec = crd.get("spec") or {}
            names = spec.get("names") or {}
            for version in spec.get("versions") or []:
                if not version.get("served", True):
                    continue
                kind = names.get("kind", "")
                types.append(ResourceType(
                    spec.get("group", ""), version.get("name", ""), names.get("plural", ""), kind,
                    spec.get("scope", "Namespaced") == "Namespaced", names.get("singular") or kind.lower(),
                    tuple(names.get("shortNames") or ()), "status" in (version.get("subresources") or {}),
                    names.get("listKind") or kind + "List",
                ))
        return types

    def all_types(self) -> list[ResourceType]:
        return BUILTINS + self.crd_types()

    def by_name(self, name: str) -> list[RtKey]:
        """Store keys for `deployments`, `deployments.apps` or a CR plural (for KubeAPI.objects)."""
        plural, _, group = name.partition(".")
        keys = {rt.key for rt in self.all_types() if rt.plural == plural and (not group or rt.group == group)}
        keys |= {k for k in self.store.keys() if k[1] == plural and (not group or k[0] == group)}
        return sorted(keys)

    # ---- discovery documents ----
    def group_versions(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for rt in self.all_types():
            versions = groups.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        return groups

    def api_group(self, group: str) -> Obj | None:
        versions = self.group_versions().get(group)
        if not versions or not group:
            return None
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs,
                "preferredVersion": gvs[0]}

    def api_group_list(self) -> Obj:
        groups = [self.api_group(g) for g in self.group_versions() if g]
        for g in groups:
            g.pop("kind")
            g.pop("apiVersion")
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def resource_list(self, group: str, version: str) -> Obj | None:
        types = [rt for rt in self.all_types() if (rt.group, rt.version) == (group, version)]
        if not types:
            return None
        resources: list[Obj] = []
        for rt in types:
            resources.append({"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                              "kind": rt.kind, "verbs": VERBS, "shortNames": list(rt.short_names)})
            if rt.has_status:
                resources.append({"name": f"{rt.plural}/status", "singularName": "", "namespaced": rt.namespaced,
                                  "kind": rt.kind, "verbs": ["get", "patch", "update"]})
            if rt.key == ("", "pods"):
                resources.append({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod",
                                  "verbs": ["get"]})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}


# =====================================================================================================
# Store and watches
# =====================================================================================================


@dataclass
class WatchEvent:
    rv: int
    key: RtKey
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj
    old: Obj | None


class Watcher:
    """One watch stream: filters Store events and queues them for the HTTP thread serving the stream."""

    def __init__(self, key: RtKey, namespace: str | None, labels: LabelSelector, fields: FieldSelector):
        self.key, self.namespace, self.labels, self.fields = key, namespace, labels, fields
        self._cond = threading.Condition()
        self._queue: deque[tuple[str, Obj]] = deque()
        self.closed = False

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    def offer(self, event: WatchEvent) -> None:
        """Queue the event as this watcher sees it: an object that starts (stops) matching the selectors
        is ADDED (DELETED) for this watcher, as the real API server does."""
        if event.key != self.key:
            return
        now, before = self.matches(event.obj), self.matches(event.old)
        if event.type == "MODIFIED":
            kind = "MODIFIED" if now and before else "ADDED" if now else "DELETED" if before else None
        else:
            kind = event.type if now else None
        if kind:
            self.push(kind, event.obj)

    def push(self, kind: str, obj: Obj) -> None:
        with self._cond:
            self._queue.append((kind, obj))
            self._cond.notify_all()

    def next(self, timeout: float) -> tuple[str, Obj] | None:
        with self._cond:
            if not self._queue and not self.closed:
                self._cond.wait(timeout)
            return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class WatchHub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: set[Watcher] = set()

    def add(self, watcher: Watcher) -> None:
        with self._lock:
            self._watchers.add(watcher)

    def remove(self, watcher: Watcher) -> None:
        with self._lock:
            self._watchers.discard(watcher)

    def publish(self, event: WatchEvent) -> None:
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.offer(event)

    def close_all(self) -> None:
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.close()


class Store:
    """Objects by resource and (namespace, name), the global resourceVersion counter and a bounded event
    history (so a watch can resume from a resourceVersion). Callers hold `lock` for any compound step."""

    HISTORY = 20000

    def __init__(self, hub: WatchHub):
        self.lock = threading.RLock()
        self.hub = hub
        self._objects: dict[RtKey, dict[tuple[str, str], Obj]] = {}
        self._rv = 1
        self.history: deque[WatchEvent] = deque(maxlen=self.HISTORY)

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def keys(self) -> list[RtKey]:
        return [k for k, objs in self._objects.items() if objs]

    def get(self, key: RtKey, namespace: str | None, name: str) -> Obj | None:
        return self._objects.get(key, {}).get((namespace or "", name))

    def list(self, key: RtKey, namespace: str | None = None) -> list[Obj]:
        objs = self._objects.get(key, {})
        return [objs[k] for k in sorted(objs) if namespace is None or k[0] == namespace]

    def save(self, key: RtKey, obj: Obj, old: Obj | None) -> Obj:
        """Store a new version (obj must be a fresh copy) and publish ADDED/MODIFIED."""
        self._rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._rv)
        self._objects.setdefault(key, {})[(meta.get("namespace") or "", meta["name"])] = obj
        self._emit(WatchEvent(self._rv, key, "MODIFIED" if old is not None else "ADDED", obj, old))
        return obj

    def remove(self, key: RtKey, namespace: str | None, name: str) -> Obj | None:
        obj = self._objects.get(key, {}).pop((namespace or "", name), None)
        if obj is not None:
            self._rv += 1
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = str(self._rv)
            self._emit(WatchEvent(self._rv, key, "DELETED", gone, obj))
        return obj

    def _emit(self, event: WatchEvent) -> None:
        self.history.append(event)
        self.hub.publish(event)


# =====================================================================================================
# Patch helpers
# =====================================================================================================


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# Merge keys of the list fields a strategic merge patch merges item by item (others are replaced).
_MERGE_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
               "volumes": "name", "imagePullSecrets": "name", "volumeMounts": "mountPath",
               "volumeDevices": "devicePath", "conditions": "type", "hostAliases": "ip"}


def _merge_key(field_name: str | None, items: list[Any]) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    if field_name == "ports":
        return "containerPort" if any("containerPort" in i for i in items) else "port"
    return _MERGE_KEYS.get(field_name or "")


def strategic_merge_patch(target: Any, patch: Any, field_name: str | None = None) -> Any:
    """Merge patch plus the strategic bits installers rely on: lists of containers/env/ports/volumes are
    merged by their merge key, `$patch: delete|replace` directives, `$setElementOrder` ignored."""
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        result = dict(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if key.startswith("$"):
                continue
            if value is None:
                result.pop(key, None)
            else:
                result[key] = strategic_merge_patch(result.get(key), value, key)
        return result
    if isinstance(patch, list) and isinstance(target, list):
        key = _merge_key(field_name, patch + target)
        if key and all(key in item for item in patch):
            result = [copy.deepcopy(item) for item in target]
            for item in patch:
                index = next((i for i, cur in enumerate(result) if cur.get(key) == item[key]), None)
                if item.get("$patch") == "delete":
                    if index is not None:
                        result.pop(index)
                elif index is None:
                    result.append({k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"})
                else:
                    result[index] = strategic_merge_patch(result[index], item)
            return result
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container_at(doc: Any, tokens: list[str], path: str) -> Any:
    current = doc
    for token in tokens:
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            raise ApiError(422, "Invalid", f"doc is missing path: {path!r}")
    return current


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, test, move, copy."""
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(doc)

    def get(path: str) -> Any:
        return _container_at(doc, _pointer(path), path)

    def remove(path: str) -> Any:
        tokens = _pointer(path)
        parent = _container_at(doc, tokens[:-1], path)
        last = tokens[-1]
        if isinstance(parent, dict) and last in parent:
            return parent.pop(last)
        if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
            return parent.pop(int(last))
        raise ApiError(422, "Invalid", f"remove operation does not apply: doc is missing path: {path!r}")

    def add(path: str, value: Any, replace: bool = False) -> None:
        nonlocal doc
        tokens = _pointer(path)
        if not tokens:
            doc = value
            return
        parent = _container_at(doc, tokens[:-1], path)
        last = tokens[-1]
        if isinstance(parent, dict):
            if replace and last not in parent:
                raise ApiError(422, "Invalid", f"replace operation does not apply: doc is missing key: {path}")
            parent[last] = value
        elif isinstance(parent, list):
            if last == "-" and not replace:
                parent.append(value)
            elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
                if replace:
                    parent[int(last)] = value
                else:
                    parent.insert(int(last), value)
            else:
                raise ApiError(422, "Invalid", f"index out of range in path {path!r}")
        else:
            raise ApiError(422, "Invalid", f"doc is missing path: {path!r}")

    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "add":
            add(path, copy.deepcopy(op.get("value")))
        elif kind == "replace":
            add(path, copy.deepcopy(op.get("value")), replace=True)
        elif kind == "remove":
            remove(path)
        elif kind == "test":
            if get(path) != op.get("value"):
                raise ApiError(422, "Invalid", f"testing value {path} failed")
        elif kind == "move":
            add(path, remove(op.get("from", "")))
        elif kind == "copy":
            add(path, copy.deepcopy(get(op.get("from", ""))))
        else:
            raise bad_request(f"unexpected json patch operation {kind!r}")
    return doc


def _deep_merge(target: Obj, applied: Obj) -> None:
    """Server-side apply, simplified: maps merge recursively, lists and scalars are replaced, null
    removes."""
    for key, value in applied.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _remove_unapplied(target: Obj, previous: Obj, applied: Obj) -> None:
    """Drop fields this field manager applied last time but no longer applies (SSA ownership, without
    tracking other managers)."""
    for key, value in previous.items():
        if key not in applied:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(applied.get(key), dict) and isinstance(target.get(key), dict):
            _remove_unapplied(target[key], value, applied[key])


def _fields_v1(obj: Any) -> Obj:
    if not isinstance(obj, dict):
        return {}
    return {f"f:{k}": _fields_v1(v) for k, v in obj.items()}


# Metadata the server owns: stripped from client bodies, carried over from the stored object on update.
_SYSTEM_META = ("uid", "creationTimestamp", "resourceVersion", "generation", "managedFields",
                "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink")

_NAME_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Resources whose names must be DNS-1123 labels (no dots, <= 63 chars).
_LABEL_NAMED = {"namespaces", "services"}
_IMMORTAL_NAMESPACES = {"default", "kube-system", "kube-public"}


def _omit_zero(values: Obj) -> Obj:
    """Kubernetes status counters are `omitempty`: zero counts are absent, not 0."""
    return {k: v for k, v in values.items()
            if v is not None and not (isinstance(v, int) and not isinstance(v, bool) and v == 0)}


def _default_pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _default_pod_spec(spec: Obj, restart_policy: str | None = "Always") -> None:
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if isinstance(c, dict) and c.get("image"):
            c.setdefault("imagePullPolicy", _default_pull_policy(c["image"]))
    if restart_policy:
        spec.setdefault("restartPolicy", restart_policy)


def _owner_ref(obj: Obj) -> Obj:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _owned_by(obj: Obj, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


# =====================================================================================================
# API semantics
# =====================================================================================================


class ObjectService:
    """Create/read/update/patch/apply/delete with Kubernetes semantics. Every method expects the caller
    to hold `store.lock` (the HTTP handler and the ticker both do)."""

    def __init__(self, store: Store, catalog: Catalog, on_change: Callable[[], None]):
        self.store, self.catalog, self._on_change = store, catalog, on_change
        # Last configuration each field manager applied, keyed by (resource, namespace, name, manager):
        # lets a later apply remove the fields that manager dropped from its configuration.
        self._applied: dict[tuple[RtKey, str, str, str], Obj] = {}
        self._cluster_ips = ipaddress.ip_network("10.96.0.0/16").hosts()
        next(self._cluster_ips)  # 10.96.0.1 is the `kubernetes` Service
        self.namespace_termination = 0.0  # seconds a deleted namespace stays Terminating

    # ---------------------------------------------------------------- reads
    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self.store.get(rt.key, namespace, name)
        if obj is None:
            raise self.not_found(rt, name)
        return obj

    def list(self, rt: ResourceType, namespace: str | None, labels: LabelSelector,
             fields: FieldSelector) -> list[Obj]:
        return [o for o in self.store.list(rt.key, namespace)
                if labels.matches(o["metadata"].get("labels")) and fields.matches(o)]

    # ---------------------------------------------------------------- errors
    @staticmethod
    def not_found(rt: ResourceType, name: str) -> ApiError:
        return ApiError(404, "NotFound", f'{rt.resource} "{name}" not found',
                        {"name": name, "group": rt.group, "kind": rt.plural})

    @staticmethod
    def invalid(rt: ResourceType, name: str, field_path: str, message: str) -> ApiError:
        return ApiError(422, "Invalid", f'{rt.qualified_kind} "{name}" is invalid: {field_path}: {message}',
                        {"name": name, "group": rt.group, "kind": rt.kind,
                         "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field_path}]})

    # ---------------------------------------------------------------- writes
    def create(self, rt: ResourceType, namespace: str | None, body: Any, manager: str | None,
               internal: bool = False, operation: str = "Update") -> Obj:
        obj = self._checked_body(rt, namespace, body)
        meta = obj["metadata"]
        for key in _SYSTEM_META:
            meta.pop(key, None)
        if rt.namespaced and not internal:
            ns = self.store.get(RT["namespaces"].key, None, meta["namespace"])
            if ns is None:
                raise ApiError(404, "NotFound", f'namespaces "{meta["namespace"]}" not found',
                               {"name": meta["namespace"], "kind": "namespaces"})
            if ns["metadata"].get("deletionTimestamp"):
                raise ApiError(403, "Forbidden",
                               f'{rt.resource} "{meta.get("name", "")}" is forbidden: unable to create new content '
                               f'in namespace {meta["namespace"]} because it is being terminated')
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise self.invalid(rt, "", "metadata.name", "Required value: name or generateName is required")
            for _ in range(20):
                meta["name"] = meta["generateName"] + _suffix()
                if self.store.get(rt.key, meta.get("namespace"), meta["name"]) is None:
                    break
        self._validate_name(rt, meta["name"])
        if self.store.get(rt.key, meta.get("namespace"), meta["name"]) is not None:
            raise ApiError(409, "AlreadyExists", f'{rt.resource} "{meta["name"]}" already exists',
                           {"name": meta["name"], "group": rt.group, "kind": rt.plural})
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339(_now())
        meta["generation"] = 1
        if rt.has_status and not internal:
            obj.pop("status", None)  # clients cannot set status on create
            if rt.key in _BUILTIN_KEYS:
                obj["status"] = {}  # built-in types serialise an empty status until a controller fills it
        self._prepare(rt, obj, None)
        if manager:
            meta["managedFields"] = [self._managed_entry(rt, manager, operation, body)]
        saved = self.store.save(rt.key, obj, None)
        self._on_change()
        return saved

    def replace(self, rt: ResourceType, namespace: str | None, name: str, body: Any, manager: str | None,
                subresource: str | None = None) -> Obj:
        old = self.get(rt, namespace, name)
        obj = self._checked_body(rt, namespace, body, name)
        wanted_rv = obj["metadata"].get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict",
                           f'Operation cannot be fulfilled on {rt.resource} "{name}": the object has been '
                           "modified; please apply your changes to the latest version and try again",
                           {"name": name, "group": rt.group, "kind": rt.plural})
        return self._update(rt, old, obj, manager, "Update", subresource, body)[0]

    def patch(self, rt: ResourceType, namespace: str | None, name: str, raw: bytes, content_type: str,
              manager: str | None, force: bool, subresource: str | None = None) -> tuple[Obj, bool]:
        """Returns (object, created)."""
        ctype = content_type.split(";")[0].strip().lower()
        if ctype == "application/apply-patch+yaml":
            return self.apply(rt, namespace, name, _parse_body(raw, yaml_ok=True), manager, force, subresource)
        patch = _parse_body(raw)
        old = self.get(rt, namespace, name)
        if ctype == "application/json-patch+json":
            result = json_patch(old, patch)
        elif ctype == "application/merge-patch+json":
            result = merge_patch(old, patch)
        elif ctype == "application/strategic-merge-patch+json":
            result = strategic_merge_patch(old, patch)
        else:
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                           "accepted media types include: application/json-patch+json, "
                           "application/merge-patch+json, application/apply-patch+yaml")
        if not isinstance(result, dict):
            raise bad_request("the patch did not produce an object")
        result = self._checked_body(rt, namespace, result, name)
        return self._update(rt, old, result, manager, "Update", subresource, patch)[0], False

    def apply(self, rt: ResourceType, namespace: str | None, name: str, body: Any, manager: str | None,
              force: bool, subresource: str | None = None) -> tuple[Obj, bool]:
        """Server-side apply (simplified: no conflict detection between managers, `force` accepted).
        A second identical apply changes nothing, not even the resourceVersion."""
        if not manager:
            raise bad_request("PATCH request with apply patch type requires fieldManager to be set")
        if not isinstance(body, dict):
            raise bad_request("apply patch must be an object")
        if not body.get("apiVersion") or not body.get("kind"):
            raise bad_request("Object 'Kind' or 'apiVersion' is missing in apply patch")
        applied = copy.deepcopy(body)
        meta = applied.setdefault("metadata", {})
        meta.setdefault("name", name)
        for key in _SYSTEM_META:
            meta.pop(key, None)
        if rt.has_status and subresource is None:
            applied.pop("status", None)
        applied = self._checked_body(rt, namespace, applied, name)
        key = (rt.key, namespace or "", name, manager)
        old = self.store.get(rt.key, namespace, name)
        if old is None:
            if subresource:
                raise self.not_found(rt, name)
            created = self.create(rt, namespace, applied, manager, operation="Apply")
            self._applied[key] = applied
            return created, True
        merged = copy.deepcopy(old)
        if subresource == "status":
            status = merged.setdefault("status", {})
            _deep_merge(status, applied.get("status") or {})
        else:
            if previous := self._applied.get(key):
                _remove_unapplied(merged, previous, applied)
            _deep_merge(merged, applied)
        self._applied[key] = applied
        return self._update(rt, old, merged, manager, "Apply", subresource, body)[0], False

    def delete(self, rt: ResourceType, namespace: str | None, name: str,
               propagation: str | None = None) -> Obj:
        obj = self.get(rt, namespace, name)
        if rt.key == RT["namespaces"].key:
            return self._delete_namespace(obj)
        self._remove(rt.key, obj, propagation)
        return obj

    def write_status(self, rt: ResourceType, obj: Obj, status: Obj) -> Obj:
        """Controllers' status writes: skipped entirely when nothing changed (no resourceVersion churn)."""
        if obj.get("status") == status:
            return obj
        new = copy.deepcopy(obj)
        new["status"] = copy.deepcopy(status)
        return self.store.save(rt.key, new, obj)

    def update_internal(self, rt: ResourceType, old: Obj, new: Obj) -> Obj:
        """Controllers' spec/metadata writes (no validation, no managedFields)."""
        return self._update(rt, old, new, None, "Update", None, None, internal=True)[0]

    # ---------------------------------------------------------------- internals
    def _checked_body(self, rt: ResourceType, namespace: str | None, body: Any, name: str | None = None) -> Obj:
        """Deep copy of a client body with apiVersion/kind/metadata checked against the URL."""
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON or YAML object")
        obj = copy.deepcopy(body)
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if api_version and api_version.rpartition("/")[0] != rt.group:
            raise bad_request(f"the API version in the data ({api_version}) does not match the expected API "
                              f"version ({rt.api_version})")
        if kind and kind != rt.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        obj["apiVersion"] = api_version or rt.api_version
        obj["kind"] = rt.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on "
                                  "the request")
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        if name is not None:
            if meta.get("name") and meta["name"] != name:
                raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL "
                                  f"({name})")
            meta["name"] = name
        return obj

    def _validate_name(self, rt: ResourceType, name: str) -> None:
        label = rt.group == "" and rt.plural in _LABEL_NAMED
        pattern, limit = (_NAME_LABEL, 63) if label else (_NAME_SUBDOMAIN, 253)
        if len(name) > limit or not pattern.match(name):
            kind = "RFC 1123 label" if label else "RFC 1123 subdomain"
            raise self.invalid(rt, name, "metadata.name", f'Invalid value: "{name}": a lowercase {kind} must '
                               "consist of lower case alphanumeric characters, '-' or '.', and must start and end "
                               "with an alphanumeric character")

    def _update(self, rt: ResourceType, old: Obj, new: Obj, manager: str | None, operation: str,
                subresource: str | None, sent: Any, internal: bool = False) -> tuple[Obj, bool]:
        """Shared tail of PUT/PATCH/apply: keep server-owned fields, default, and store only if something
        changed. Returns (object, changed)."""
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif subresource:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        elif rt.has_status and not internal:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        meta, old_meta = new["metadata"], old["metadata"]
        for key in _SYSTEM_META + ("name", "namespace"):
            if key in old_meta:
                meta[key] = copy.deepcopy(old_meta[key])
            else:
                meta.pop(key, None)
        self._prepare(rt, new, old)
        if new == old:
            return old, False
        if _spec_part(new) != _spec_part(old):
            meta["generation"] = old_meta.get("generation", 1) + 1
        if manager:
            entries = [e for e in meta.get("managedFields") or []
                       if not (e.get("manager") == manager and e.get("operation") == operation
                               and e.get("subresource") == subresource)]
            entries.append(self._managed_entry(rt, manager, operation, sent, subresource))
            meta["managedFields"] = entries
        saved = self.store.save(rt.key, new, old)
        self._on_change()
        return saved, True

    @staticmethod
    def _managed_entry(rt: ResourceType, manager: str, operation: str, sent: Any,
                       subresource: str | None = None) -> Obj:
        fields = copy.deepcopy(sent) if isinstance(sent, dict) else {}
        meta = fields.get("metadata") if isinstance(fields.get("metadata"), dict) else {}
        fields["metadata"] = {k: v for k, v in meta.items() if k in ("labels", "annotations")}
        for key in ("apiVersion", "kind"):
            fields.pop(key, None)
        entry = {"manager": manager, "operation": operation, "apiVersion": rt.api_version,
                 "time": rfc3339(_now()), "fieldsType": "FieldsV1", "fieldsV1": _fields_v1(fields)}
        if subresource:
            entry["subresource"] = subresource
        return entry

    # ---- defaulting and validation per resource (idempotent: runs on every write)
    def _prepare(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        if rt.group == "" or rt.group in ("apps", "batch", "apiextensions.k8s.io"):
            handler = getattr(self, f"_prepare_{rt.plural}", None)
            if handler:
                handler(rt, obj, old)

    def _prepare_namespaces(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        meta = obj["metadata"]
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Terminating" if meta.get("deletionTimestamp") else "Active"}

    def _prepare_pods(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        spec = obj.setdefault("spec", {})
        _default_pod_spec(spec)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        if old is None and "status" not in obj:
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}

    def _prepare_secrets(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None) or {}
        if string_data:
            data = obj.setdefault("data", {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()

    def _prepare_services(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        spec = obj.setdefault("spec", {})
        old_spec = (old or {}).get("spec") or {}
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            # clusterIP is immutable: an update without it keeps the allocated one.
            if not spec.get("clusterIP"):
                spec["clusterIP"] = old_spec.get("clusterIP") or str(next(self._cluster_ips))
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        wants_node_port = spec["type"] in ("NodePort", "LoadBalancer")
        if wants_node_port:
            spec.setdefault("externalTrafficPolicy", "Cluster")
        taken = {p.get("nodePort") for s in self.store.list(rt.key) if s["metadata"]["uid"] !=
                 obj["metadata"].get("uid") for p in (s.get("spec") or {}).get("ports") or []}
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p for p in old_spec.get("ports") or []}
        for index, port in enumerate(spec.get("ports") or []):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
            if wants_node_port:
                if not port.get("nodePort"):
                    previous = old_ports.get((port.get("port"), port["protocol"])) or {}
                    port["nodePort"] = previous.get("nodePort") or next(
                        p for p in range(30000, 32768) if p not in taken)
                elif port["nodePort"] in taken:
                    raise self.invalid(rt, obj["metadata"]["name"], f"spec.ports[{index}].nodePort",
                                       f"Invalid value: {port['nodePort']}: provided port is already allocated")
                taken.add(port["nodePort"])
        obj["status"] = obj.get("status") or {"loadBalancer": {}}

    def _prepare_deployments(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        name, spec = obj["metadata"]["name"], obj.setdefault("spec", {})
        selector = spec.get("selector")
        if not selector:
            raise self.invalid(rt, name, "spec.selector", "Required value")
        template = spec.setdefault("template", {})
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not LabelSelector(",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())
                             ).matches(labels):
            raise self.invalid(rt, name, "spec.template.metadata.labels",
                               f"Invalid value: {labels}: `selector` does not match template `labels`")
        if old is not None and (old.get("spec") or {}).get("selector") != selector:
            raise self.invalid(rt, name, "spec.selector", f"Invalid value: {selector}: field is immutable")
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("strategy", {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        _default_pod_spec(template.setdefault("spec", {}))

    _prepare_replicasets = _prepare_deployments

    def _prepare_jobs(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        meta, spec = obj["metadata"], obj.setdefault("spec", {})
        template = spec.setdefault("template", {})
        pod_spec = template.setdefault("spec", {})
        if pod_spec.get("restartPolicy") not in ("Never", "OnFailure"):
            raise self.invalid(rt, meta["name"], "spec.template.spec.restartPolicy",
                               'Required value: valid values: "OnFailure", "Never"')
        _default_pod_spec(pod_spec, restart_policy=None)
        uid = meta["uid"]
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels.update({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": meta["name"],
                       "controller-uid": uid, "job-name": meta["name"]})
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
        for key, value in (("backoffLimit", 6), ("completions", 1), ("parallelism", 1),
                           ("completionMode", "NonIndexed"), ("suspend", False),
                           ("podReplacementPolicy", "TerminatingOrFailed")):
            spec.setdefault(key, value)
        if old is not None and (old.get("spec") or {}).get("template") != template:
            raise self.invalid(rt, meta["name"], "spec.template", "Invalid value: field is immutable")

    def _prepare_customresourcedefinitions(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        meta, spec = obj["metadata"], obj.setdefault("spec", {})
        names = spec.setdefault("names", {})
        if meta["name"] != f"{names.get('plural')}.{spec.get('group')}":
            raise self.invalid(rt, meta["name"], "metadata.name",
                               f'Invalid value: "{meta["name"]}": must be spec.names.plural+"."+spec.group')
        if not spec.get("versions"):
            raise self.invalid(rt, meta["name"], "spec.versions", "Invalid value: must have exactly one version "
                               "marked as storage version")
        if names.get("kind"):
            names.setdefault("singular", names["kind"].lower())
            names.setdefault("listKind", names["kind"] + "List")
        spec.setdefault("scope", "Namespaced")

    # ---- deletion
    def _remove(self, key: RtKey, obj: Obj, propagation: str | None) -> None:
        meta = obj["metadata"]
        if self.store.remove(key, meta.get("namespace"), meta["name"]) is None:
            return
        self._applied = {k: v for k, v in self._applied.items()
                         if k[:3] != (key, meta.get("namespace") or "", meta["name"])}
        # batch/v1 Jobs orphan their pods by default when deleted through the API (kubectl and most
        # clients pass propagationPolicy=Background); everything else cascades.
        if propagation is None and key == RT["jobs"].key:
            propagation = "Orphan"
        for dep_key in self.store.keys():
            for dependent in self.store.list(dep_key, meta.get("namespace")):
                if not _owned_by(dependent, meta["uid"]):
                    continue
                if propagation == "Orphan":
                    orphan = copy.deepcopy(dependent)
                    orphan["metadata"]["ownerReferences"] = [
                        r for r in dependent["metadata"]["ownerReferences"] if r.get("uid") != meta["uid"]]
                    self.store.save(dep_key, orphan, dependent)
                else:
                    self._remove(dep_key, dependent, propagation)
        if key == RT_CRD.key:  # deleting a CRD deletes its custom resources
            group, plural = (obj.get("spec") or {}).get("group", ""), (obj["spec"].get("names") or {}).get("plural")
            for cr in self.store.list((group, plural)):
                self._remove((group, plural), cr, "Background")
        self._on_change()

    def _delete_namespace(self, ns: Obj) -> Obj:
        name = ns["metadata"]["name"]
        if name in _IMMORTAL_NAMESPACES:
            raise ApiError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        if self.namespace_termination > 0:
            if not ns["metadata"].get("deletionTimestamp"):
                terminating = copy.deepcopy(ns)
                terminating["metadata"]["deletionTimestamp"] = rfc3339(_now())
                terminating["status"] = {"phase": "Terminating"}
                return self.store.save(RT["namespaces"].key, terminating, ns)
            return ns
        self.purge_namespace(ns)
        return ns

    def purge_namespace(self, ns: Obj) -> None:
        """Delete everything in the namespace, then the namespace itself."""
        name = ns["metadata"]["name"]
        for key in self.store.keys():
            if key == RT["namespaces"].key:
                continue
            for obj in self.store.list(key, name):
                self._remove(key, obj, "Background")
        self._remove(RT["namespaces"].key, ns, "Background")


def _spec_part(obj: Obj) -> Obj:
    """What `metadata.generation` tracks: everything except metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _parse_body(raw: bytes, yaml_ok: bool = False) -> Any:
    if not raw.strip():
        raise bad_request("the request body is empty")
    try:
        return json.loads(raw)
    except ValueError:
        if not yaml_ok:
            raise bad_request("the request body is not valid JSON") from None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise bad_request(f"the request body is neither JSON nor YAML: {err}") from None


# =====================================================================================================
# Controllers: the ticker standing in for kube-controller-manager, the scheduler and the kubelet
# =====================================================================================================


@dataclass
class PodSim:
    """Kubelet-side memory about one pod."""

    created: float
    ip: str
    views: dict[str, ContainerView] = field(default_factory=dict)
    origin: float = 0.0


class Controllers:
    DEFAULT_SCRIPT: ClassVar[Script] = Ready(after=0.2)
    DEFAULT_JOB_SCRIPT: ClassVar[Script] = JobSucceeds(after=0.2, log="")

    def __init__(self, store: Store, service: ObjectService):
        self.store, self.service = store, service
        self.scripts: dict[str, tuple[Script, float]] = {}  # by Deployment (or bare Pod) name
        self.job_scripts: dict[str, tuple[Script, float]] = {}  # by Job name
        self.crd_established_after = 0.1
        self.errors: list[str] = []  # tracebacks from the ticker, for debugging tests
        self._sims: dict[str, PodSim] = {}
        self._first_seen: dict[str, float] = {}  # uid -> time (CRDs, Jobs, terminating namespaces)
        self._progress: dict[str, tuple[Any, float]] = {}  # deployment uid -> (progress signature, since)
        self._pod_ips = ipaddress.ip_network("10.244.1.0/24").hosts()
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubeapi-ticker", daemon=True)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        self._thread.join(timeout=5)

    def kick(self) -> None:
        """Run a reconcile soon (after a write) instead of waiting for the next tick."""
        self._kick.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(TICK_SECONDS)
            self._kick.clear()
            if self._stop.is_set():
                return
            try:
                with self.store.lock:
                    self.reconcile()
            except Exception:  # keep ticking; the test sees the traceback in KubeAPI.errors
                self.errors.append(traceback.format_exc())
                print(self.errors[-1], file=sys.stderr)

    def reconcile(self) -> None:
        now = _now()
        self._reconcile_crds(now)
        self._reconcile_namespaces(now)
        for deployment in self.store.list(RT["deployments"].key):
            self._reconcile_deployment(deployment)
        for rs in self.store.list(RT["replicasets"].key):
            self._reconcile_replicaset(rs)
        for job in self.store.list(RT["jobs"].key):
            self._reconcile_job(job, now)
        live = set()
        for pod in self.store.list(RT["pods"].key):
            live.add(pod["metadata"]["uid"])
            self._sync_pod(pod, now)
        self._sims = {uid: sim for uid, sim in self._sims.items() if uid in live}
        for rs in self.store.list(RT["replicasets"].key):
            self._replicaset_status(rs)
        for deployment in self.store.list(RT["deployments"].key):
            self._deployment_status(deployment, now)
        for job in self.store.list(RT["jobs"].key):
            self._reconcile_job(job, now)  # again, so job status follows pods within one tick
        for pvc in self.store.list(RT["persistentvolumeclaims"].key):
            self._bind_pvc(pvc)

    # ---------------------------------------------------------------- scripts
    def set_script(self, name: str, script: Script, job: bool = False) -> None:
        (self.job_scripts if job else self.scripts)[name] = (script, _now())
        self.kick()

    def _script_for(self, pod: Obj) -> tuple[Script, float]:
        """Scripts are looked up by the owning Deployment (via its ReplicaSet), the Job, or the pod name."""
        meta = pod["metadata"]
        job = (meta.get("labels") or {}).get("job-name")
        if job:
            return self.job_scripts.get(job, (self.DEFAULT_JOB_SCRIPT, 0.0))
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == "ReplicaSet":
                rs = self.store.get(RT["replicasets"].key, meta["namespace"], ref["name"])
                for rs_ref in (rs or {}).get("metadata", {}).get("ownerReferences") or []:
                    if rs_ref.get("kind") == "Deployment" and rs_ref["name"] in self.scripts:
                        return self.scripts[rs_ref["name"]]
                if ref["name"] in self.scripts:
                    return self.scripts[ref["name"]]
        return self.scripts.get(meta["name"], (self.DEFAULT_SCRIPT, 0.0))

    # ---------------------------------------------------------------- events
    def record_event(self, involved: Obj, type_: str, reason: str, message: str, component: str,
                     count: int | None = None, field_path: str | None = None) -> None:
        """Create or update a core/v1 Event. With count=None the count goes up by one (a repeat); with a
        count, the event is written only when the count grows (pod events are recomputed every tick)."""
        meta = involved["metadata"]
        namespace = meta.get("namespace") or "default"
        digest = _sha("|".join([meta["uid"], reason, message, field_path or ""]))[:16]
        name = f"{meta['name']}.{digest}"
        existing = self.store.get(RT["events"].key, namespace, name)
        if existing is not None and count is not None and existing.get("count", 1) >= count:
            return
        now = rfc3339(_now())
        node = ((involved.get("spec") or {}).get("nodeName")) if involved.get("kind") == "Pod" else None
        source: Obj = {"component": component}
        if node and component == "kubelet":
            source["host"] = node
        ref: Obj = {"apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": meta["name"],
                    "uid": meta["uid"], "resourceVersion": meta.get("resourceVersion")}
        if meta.get("namespace"):
            ref["namespace"] = meta["namespace"]
        if field_path:
            ref["fieldPath"] = field_path
        if existing is None:
            event = {"apiVersion": "v1", "kind": "Event",
                     "metadata": {"name": name, "namespace": namespace},
                     "involvedObject": ref, "reason": reason, "message": message, "type": type_,
                     "count": count or 1, "firstTimestamp": now, "lastTimestamp": now, "source": source,
                     "reportingComponent": component, "reportingInstance": node or ""}
            self.service.create(RT["events"], namespace, event, None, internal=True)
        else:
            updated = copy.deepcopy(existing)
            updated["count"] = count if count is not None else existing.get("count", 1) + 1
            updated["lastTimestamp"] = now
            self.store.save(RT["events"].key, updated, existing)

    # ---------------------------------------------------------------- CRDs and namespaces
    def _reconcile_crds(self, now: float) -> None:
        for crd in self.store.list(RT_CRD.key):
            uid = crd["metadata"]["uid"]
            first = self._first_seen.setdefault(uid, now)
            if _condition_true(crd, "Established") or now - first < self.crd_established_after:
                continue
            spec = crd.get("spec") or {}
            stamp = rfc3339(now)
            storage = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
            self.service.write_status(RT_CRD, crd, {
                "acceptedNames": copy.deepcopy(spec.get("names") or {}),
                "storedVersions": storage or [v["name"] for v in spec.get("versions") or []][:1],
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "lastTransitionTime": stamp,
                     "reason": "NoConflicts", "message": "no conflicts found"},
                    {"type": "Established", "status": "True", "lastTransitionTime": stamp,
                     "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
                ],
            })

    def _reconcile_namespaces(self, now: float) -> None:
        for ns in self.store.list(RT["namespaces"].key):
            if ns["metadata"].get("deletionTimestamp"):
                first = self._first_seen.setdefault(ns["metadata"]["uid"], now)
                if now - first >= self.service.namespace_termination:
                    self.service.purge_namespace(ns)

    def _bind_pvc(self, pvc: Obj) -> None:
        if (pvc.get("status") or {}).get("phase") == "Bound":
            return
        spec = pvc.get("spec") or {}
        self.service.write_status(RT["persistentvolumeclaims"], pvc, {
            "phase": "Bound", "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")},
        })

    # ---------------------------------------------------------------- Deployments and ReplicaSets
    def _owned(self, key: RtKey, owner: Obj) -> list[Obj]:
        return [o for o in self.store.list(key, owner["metadata"]["namespace"])
                if _owned_by(o, owner["metadata"]["uid"]) and not o["metadata"].get("deletionTimestamp")]

    def _reconcile_deployment(self, deployment: Obj) -> None:
        meta, spec = deployment["metadata"], deployment["spec"]
        template = copy.deepcopy(spec.get("template") or {})
        pod_hash = _sha(json.dumps(template, sort_keys=True))[:10]
        rs_name = f"{meta['name']}-{pod_hash}"
        replicas = spec.get("replicas", 1)
        owned = self._owned(RT["replicasets"].key, deployment)
        current = next((rs for rs in owned if rs["metadata"]["name"] == rs_name), None)
        if current is None:
            template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
            selector = copy.deepcopy(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
            rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                  "metadata": {"name": rs_name, "namespace": meta["namespace"],
                               "labels": copy.deepcopy(template["metadata"]["labels"]),
                               "annotations": {"deployment.kubernetes.io/revision": str(len(owned) + 1),
                                               "deployment.kubernetes.io/desired-replicas": str(replicas)},
                               "ownerReferences": [_owner_ref(deployment)]},
                  "spec": {"replicas": replicas, "selector": selector, "template": template}}
            self.service.create(RT["replicasets"], meta["namespace"], rs, None, internal=True)
            self.record_event(deployment, "Normal", "ScalingReplicaSet",
                              f"Scaled up replica set {rs_name} from 0 to {replicas}", "deployment-controller")
        elif current["spec"].get("replicas") != replicas:
            scaled = copy.deepcopy(current)
            scaled["spec"]["replicas"] = replicas
            self.service.update_internal(RT["replicasets"], current, scaled)
        # Old ReplicaSets are scaled to zero at once (a Recreate-like rollout keeps the stand-in simple).
        for rs in owned:
            if rs["metadata"]["name"] != rs_name and rs["spec"].get("replicas"):
                scaled = copy.deepcopy(rs)
                scaled["spec"]["replicas"] = 0
                self.service.update_internal(RT["replicasets"], rs, scaled)
                self.record_event(deployment, "Normal", "ScalingReplicaSet",
                                  f"Scaled down replica set {rs['metadata']['name']} from "
                                  f"{rs['spec']['replicas']} to 0", "deployment-controller")

    def _reconcile_replicaset(self, rs: Obj) -> None:
        pods = self._owned(RT["pods"].key, rs)
        wanted = rs["spec"].get("replicas", 1)
        for _ in range(wanted - len(pods)):
            pod = self._create_pod(rs, f"{rs['metadata']['name']}-")
            self.record_event(rs, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                              "replicaset-controller")
        for pod in sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"], reverse=True)[:max(0, len(pods) - wanted)]:
            self.service.delete(RT["pods"], pod["metadata"]["namespace"], pod["metadata"]["name"])
            self.record_event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}",
                              "replicaset-controller")

    def _create_pod(self, owner: Obj, prefix: str) -> Obj:
        template = copy.deepcopy(owner["spec"].get("template") or {})
        tmeta = template.get("metadata") or {}
        meta: Obj = {"generateName": prefix, "namespace": owner["metadata"]["namespace"],
                     "labels": tmeta.get("labels") or {}, "ownerReferences": [_owner_ref(owner)]}
        if tmeta.get("annotations"):
            meta["annotations"] = tmeta["annotations"]
        spec = template.get("spec") or {}
        spec["nodeName"] = self._pick_node()
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
        return self.service.create(RT["pods"], meta["namespace"], pod, None, internal=True)

    def _pick_node(self) -> str:
        nodes = self.store.list(RT["nodes"].key)
        for node in nodes:
            taints = (node.get("spec") or {}).get("taints") or []
            if not any(t.get("effect") == "NoSchedule" for t in taints):
                return node["metadata"]["name"]
        return nodes[0]["metadata"]["name"] if nodes else "gateway-e2e-worker"

    def _replicaset_status(self, rs: Obj) -> None:
        pods = self._owned(RT["pods"].key, rs)
        ready = sum(1 for p in pods if _pod_ready(p))
        status = _omit_zero({"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                             "availableReplicas": ready,
                             "observedGeneration": rs["metadata"].get("generation", 1)})
        status.setdefault("replicas", 0)
        self.service.write_status(RT["replicasets"], rs, status)

    def _deployment_status(self, deployment: Obj, now: float) -> None:
        meta, spec = deployment["metadata"], deployment["spec"]
        desired = spec.get("replicas", 1)
        pod_hash = _sha(json.dumps(spec.get("template") or {}, sort_keys=True))[:10]
        rs_name = f"{meta['name']}-{pod_hash}"
        pods, updated = [], 0
        for rs in self._owned(RT["replicasets"].key, deployment):
            owned = self._owned(RT["pods"].key, rs)
            pods += owned
            if rs["metadata"]["name"] == rs_name:
                updated = len(owned)
        ready = sum(1 for p in pods if _pod_ready(p))
        strategy = spec.get("strategy") or {}
        max_unavailable = 0
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            max_unavailable = _scaled_value((strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%"),
                                            desired)
        complete = updated == desired and len(pods) == desired and ready == desired
        signature = (rs_name, updated, ready, len(pods))
        previous = self._progress.get(meta["uid"])
        since = previous[1] if previous and previous[0] == signature else now
        self._progress[meta["uid"]] = (signature, since)
        old_conditions = {c["type"]: c for c in (deployment.get("status") or {}).get("conditions") or []}
        if ready >= desired - max_unavailable:
            available = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            available = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        if complete:
            progressing = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.')
        elif now - since > spec.get("progressDeadlineSeconds", 600):
            progressing = ("False", "ProgressDeadlineExceeded", f'ReplicaSet "{rs_name}" has timed out progressing.')
        else:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
        conditions = [_deployment_condition(old_conditions.get(t), t, *c, now)
                      for t, c in (("Available", available), ("Progressing", progressing))]
        status = _omit_zero({"observedGeneration": meta.get("generation", 1), "replicas": len(pods),
                             "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": ready,
                             "unavailableReplicas": max(desired - ready, 0)})
        status["conditions"] = conditions
        self.service.write_status(RT["deployments"], deployment, status)

    # ---------------------------------------------------------------- Jobs
    def _reconcile_job(self, job: Obj, now: float) -> None:
        meta, spec = job["metadata"], job["spec"]
        status = copy.deepcopy(job.get("status") or {})
        pods = self._owned(RT["pods"].key, job)
        phases = [(p.get("status") or {}).get("phase") for p in pods]
        succeeded, failed = phases.count("Succeeded"), phases.count("Failed")
        finished = any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                       for c in status.get("conditions") or [])
        stamp = rfc3339(now)
        conditions = status.get("conditions") or []
        if not finished:
            status.setdefault("startTime", stamp)
            if succeeded >= spec.get("completions", 1):
                for ctype in ("SuccessCriteriaMet", "Complete"):
                    conditions.append({"type": ctype, "status": "True", "lastProbeTime": stamp,
                                       "lastTransitionTime": stamp, "reason": "CompletionsReached",
                                       "message": "Reached expected number of succeeded pods"})
                status["completionTime"] = stamp
                self.record_event(job, "Normal", "Completed", "Job completed", "job-controller")
            elif failed > spec.get("backoffLimit", 6):
                for ctype in ("FailureTarget", "Failed"):
                    conditions.append({"type": ctype, "status": "True", "lastProbeTime": stamp,
                                       "lastTransitionTime": stamp, "reason": "BackoffLimitExceeded",
                                       "message": "Job has reached the specified backoff limit"})
                self.record_event(job, "Warning", "BackoffLimitExceeded",
                                  "Job has reached the specified backoff limit", "job-controller")
            elif not spec.get("suspend") and len(pods) == succeeded + failed:
                pod = self._create_pod(job, f"{meta['name']}-")
                pods.append(pod)
                self.record_event(job, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                                  "job-controller")
        active = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        status.update({"active": len(active), "succeeded": succeeded, "failed": failed})
        status = _omit_zero(status)
        status["ready"] = sum(1 for p in active if _pod_ready(p))
        status["terminating"] = 0
        status["uncountedTerminatedPods"] = {}
        if conditions:
            status["conditions"] = conditions
        self.service.write_status(RT["jobs"], job, status)

    # ---------------------------------------------------------------- Pods (scheduler + kubelet)
    def _sync_pod(self, pod: Obj, now: float) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        if not spec.get("nodeName"):  # the scheduler's part
            bound = copy.deepcopy(pod)
            bound["spec"]["nodeName"] = self._pick_node()
            pod = self.service.update_internal(RT["pods"], pod, bound)
            spec = pod["spec"]
        sim = self._sims.get(meta["uid"])
        if sim is None:
            sim = self._sims[meta["uid"]] = PodSim(created=now, ip=str(next(self._pod_ips)))
            self.record_event(pod, "Normal", "Scheduled",
                              f"Successfully assigned {meta['namespace']}/{meta['name']} to {spec['nodeName']}",
                              "default-scheduler", count=1)
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and sim.views:
            return  # terminal pods never change again
        script, set_at = self._script_for(pod)
        sim.origin = max(sim.created, set_at)
        views = {}
        for container in spec.get("containers") or []:
            ctx = ContainerCtx(meta["name"], meta["namespace"], meta["uid"], container.get("name", ""),
                               container.get("image", ""), sim.origin)
            views[ctx.container] = script.view(ctx, now - sim.origin)
        sim.views = views
        status = self._pod_status(pod, views, sim, now)
        pod = self.service.write_status(RT["pods"], pod, status)
        for name, view in views.items():
            for event in view.events:
                self.record_event(pod, event.type, event.reason, event.message, event.component,
                                  count=event.count, field_path=f"spec.containers{{{name}}}")

    def _pod_status(self, pod: Obj, views: dict[str, ContainerView], sim: PodSim, now: float) -> Obj:
        spec, old = pod["spec"], pod.get("status") or {}
        phases = [v.phase for v in views.values()]
        if not phases or "Pending" in phases:
            phase = "Pending"
        elif all(p == "Succeeded" for p in phases):
            phase = "Succeeded"
        elif all(p in ("Succeeded", "Failed") for p in phases):
            phase = "Failed"
        else:
            phase = "Running"
        statuses = []
        for container in spec.get("containers") or []:
            view = views[container.get("name", "")]
            image = container.get("image", "")
            status: Obj = {"name": container.get("name", ""), "image": image,
                           "imageID": f"sha256:{_sha(image)}" if view.has_run else "",
                           "ready": view.ready, "restartCount": view.restart_count, "started": view.started,
                           "state": view.state, "lastState": view.last_state}
            if view.has_run:
                status["containerID"] = _container_id_of(view) or f"containerd://{_sha(pod['metadata']['uid'] + image)}"
            statuses.append(status)
        unready = [s["name"] for s in statuses if not s["ready"]]
        started = any(v.has_run for v in views.values())
        terminal = phase in ("Succeeded", "Failed")
        if terminal:
            ready_cond = ("False", "PodCompleted", "")
        elif unready:
            ready_cond = ("False", "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]")
        else:
            ready_cond = ("True", "", "")
        old_conditions = {c["type"]: c for c in old.get("conditions") or []}
        conditions = [
            _pod_condition(old_conditions, "PodReadyToStartContainers", ("True" if started else "False", "", ""), now),
            _pod_condition(old_conditions, "Initialized", ("True", "PodCompleted" if terminal else "", ""), now),
            _pod_condition(old_conditions, "Ready", ready_cond, now),
            _pod_condition(old_conditions, "ContainersReady", ready_cond, now),
            _pod_condition(old_conditions, "PodScheduled", ("True", "", ""), now),
        ]
        node = self.store.get(RT["nodes"].key, None, spec.get("nodeName", ""))
        host_ip = next((a["address"] for a in ((node or {}).get("status") or {}).get("addresses") or []
                        if a.get("type") == "InternalIP"), "172.18.0.3")
        resources = any(c.get("resources") for c in spec.get("containers") or [])
        status = {"phase": phase, "conditions": conditions, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                  "startTime": rfc3339(sim.created), "containerStatuses": statuses,
                  "qosClass": "Burstable" if resources else "BestEffort"}
        if started:
            status.update({"podIP": sim.ip, "podIPs": [{"ip": sim.ip}]})
        if spec.get("initContainers"):
            status["initContainerStatuses"] = [
                {"name": c.get("name", ""), "image": c.get("image", ""), "imageID": f"sha256:{_sha(c.get('image', ''))}",
                 "ready": True, "restartCount": 0, "started": False,
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": rfc3339(sim.created),
                                          "finishedAt": rfc3339(sim.created)}}, "lastState": {}}
                for c in spec["initContainers"]]
        return status

    # ---------------------------------------------------------------- logs
    def pod_log(self, namespace: str, name: str, container: str | None, previous: bool) -> tuple[str, float]:
        """(log text, wall time the container started) for GET .../pods/NAME/log."""
        pod = self.service.get(RT["pods"], namespace, name)
        spec = pod.get("spec") or {}
        names = [c.get("name") for c in spec.get("containers") or []]
        init_names = [c.get("name") for c in spec.get("initContainers") or []]
        if container is None:
            if len(names) != 1:
                raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                  f"[{' '.join(names)}]" + (f" or one of the init containers: [{' '.join(init_names)}]"
                                                            if init_names else ""))
            container = names[0]
        if container in init_names:
            return "", _now()
        if container not in names:
            raise bad_request(f"container {container} is not valid for pod {name}")
        sim = self._sims.get(pod["metadata"]["uid"])
        view = sim.views.get(container) if sim else None
        if view is None:
            view = ContainerView("Pending", _waiting("ContainerCreating"))
        origin = sim.origin if sim else _now()
        if previous:
            if view.previous_log is None:
                raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            return view.previous_log, origin + (view.started_at or 0.0)
        if view.log is None:
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {view.waiting_detail}')
        return view.log, origin + (view.started_at or 0.0)


def _container_id_of(view: ContainerView) -> str | None:
    for state in (view.state, view.last_state):
        for detail in state.values():
            if isinstance(detail, dict) and detail.get("containerID"):
                return detail["containerID"]
    return None


def _pod_ready(pod: Obj) -> bool:
    return _condition_true(pod, "Ready")


def _pod_condition(old: dict[str, Obj], ctype: str, value: tuple[str, str, str], now: float) -> Obj:
    status, reason, message = value
    previous = old.get(ctype)
    since = previous["lastTransitionTime"] if previous and previous.get("status") == status else rfc3339(now)
    condition: Obj = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _deployment_condition(previous: Obj | None, ctype: str, status: str, reason: str, message: str,
                          now: float) -> Obj:
    stamp = rfc3339(now)
    same_status = previous is not None and previous.get("status") == status
    unchanged = same_status and previous.get("reason") == reason and previous.get("message") == message
    return {"type": ctype, "status": status,
            "lastUpdateTime": previous["lastUpdateTime"] if unchanged else stamp,
            "lastTransitionTime": previous["lastTransitionTime"] if same_status else stamp,
            "reason": reason, "message": message}


def _scaled_value(value: Any, total: int) -> int:
    """maxUnavailable: an int or a percentage of replicas, rounded down."""
    if isinstance(value, str) and value.endswith("%"):
        return int(total * int(value[:-1]) / 100)
    return int(value or 0)


# =====================================================================================================
# HTTP
# =====================================================================================================


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: "KubeAPI"):
        self.api = api
        self.connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Keep-alive connections would otherwise outlive stop() and keep answering."""
        with self._conn_lock:
            connections = list(self.connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for the client's pool, chunked encoding for watches
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm plus the
        # client's delayed ACK add ~40 ms to every request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---------------------------------------------------------------- plumbing
    @property
    def api(self) -> "KubeAPI":
        return self.server.api

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.api._record_request(method, path, query)
        try:
            self._route(method, path, query, body)
        except ApiError as err:
            self._send_json(err.code, err.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as err:  # a bug in the stand-in: make it visible as a 500 with the traceback
            text = traceback.format_exc()
            self.api.controllers.errors.append(text)
            print(text, file=sys.stderr)
            self._send_json(500, ApiError(500, "InternalError", f"stand-in error: {err!r}").status())

    def _send(self, code: int, payload: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(payload)

    def _send_json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj, separators=(",", ":")).encode(), "application/json")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    # ---------------------------------------------------------------- routing
    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        api = self.api
        if path == "/version":
            self._send_json(200, {"major": "1", "minor": K8S_VERSION.split(".")[1], "gitVersion": K8S_VERSION,
                                  "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828", "gitTreeState": "clean",
                                  "buildDate": "2025-05-21T00:00:00Z", "goVersion": "go1.24.2",
                                  "compiler": "gc", "platform": f"linux/{host_arch()}"})
            return
        if path in ("/healthz", "/livez", "/readyz"):
            self._send(200, b"ok", "text/plain; charset=utf-8")
            return
        segments = [s for s in path.split("/") if s] or [""]
        with api.store.lock:
            if path == "/api":
                host = f"{api.host}:{api.port}"
                self._send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})
                return
            if path == "/apis":
                self._send_json(200, api.catalog.api_group_list())
                return
            if segments[0] == "api" and len(segments) >= 2:
                group, version, rest = "", segments[1], segments[2:]
            elif segments[0] == "apis" and len(segments) >= 3:
                group, version, rest = segments[1], segments[2], segments[3:]
            elif segments[0] == "apis" and len(segments) == 2 and (doc := api.catalog.api_group(segments[1])):
                self._send_json(200, doc)
                return
            else:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if not rest:
                doc = api.catalog.resource_list(group, version)
                if doc is None:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                self._send_json(200, doc)
                return
            if rest[0] == "watch":  # legacy /api/v1/watch/... paths
                rest = rest[1:]
                query["watch"] = "true"
            namespace = None
            if len(rest) >= 3 and rest[0] == "namespaces":
                candidate = api.catalog.lookup(group, version, rest[2])
                if candidate is not None and candidate.namespaced:
                    namespace, rest = rest[1], rest[2:]
            rt = api.catalog.lookup(group, version, rest[0]) if rest else None
            # A namespaced object needs its namespace in the URL (listing across namespaces is fine).
            misplaced = rt is not None and len(rest) > 1 and (namespace is not None) != rt.namespaced
            if rt is None or len(rest) > 3 or misplaced:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            name = rest[1] if len(rest) > 1 else None
            sub = rest[2] if len(rest) > 2 else None
            if name is not None and query.get("watch") in ("true", "1"):
                query["fieldSelector"] = ",".join(filter(None, [query.get("fieldSelector"), f"metadata.name={name}"]))
                name = None
        if name is None and method == "GET" and query.get("watch") in ("true", "1"):
            self._watch(rt, namespace, query)
            return
        with api.store.lock:
            response = self._handle(method, rt, namespace, name, sub, query, body)
        if response is not None:
            self._send_json(*response)

    def _handle(self, method: str, rt: ResourceType, namespace: str | None, name: str | None, sub: str | None,
                query: dict[str, str], body: bytes) -> tuple[int, Any] | None:
        service = self.api.service
        manager = query.get("fieldManager") or self.headers.get("User-Agent", "unknown").split("/")[0]
        if name is None:
            if method == "GET":
                return 200, self._list(rt, namespace, query)
            if method == "POST":
                return 201, service.create(rt, namespace, _parse_body(body, yaml_ok=True), manager)
            if method == "DELETE":
                items = service.list(rt, namespace, LabelSelector(query.get("labelSelector")),
                                     FieldSelector(query.get("fieldSelector")))
                for item in items:
                    service.delete(rt, item["metadata"].get("namespace"), item["metadata"]["name"],
                                   self._propagation(query, body))
                return 200, {"kind": rt.list_kind, "apiVersion": rt.api_version,
                             "metadata": {"resourceVersion": self.api.store.resource_version}, "items": items}
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if sub == "log" and rt.key == RT["pods"].key and method == "GET":
            self._log(namespace or "", name, query)
            return None
        if sub not in (None, "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET":
            return 200, service.get(rt, namespace, name)
        if method == "PUT":
            return 200, service.replace(rt, namespace, name, _parse_body(body, yaml_ok=True), manager, sub)
        if method == "PATCH":
            content_type = self.headers.get("Content-Type", "application/merge-patch+json")
            if content_type.startswith("application/apply-patch"):
                manager = query.get("fieldManager")  # required for apply: no User-Agent fallback
            obj, created = service.patch(rt, namespace, name, body, content_type, manager,
                                         query.get("force") in ("true", "1"), sub)
            return (201 if created else 200), obj
        if method == "DELETE" and sub is None:
            obj = service.delete(rt, namespace, name, self._propagation(query, body))
            if rt.key == RT["pods"].key:
                return 200, obj
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": {"name": name, "group": rt.group, "kind": rt.plural,
                                     "uid": obj["metadata"]["uid"]}}
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    @staticmethod
    def _propagation(query: dict[str, str], body: bytes) -> str | None:
        if query.get("propagationPolicy"):
            return query["propagationPolicy"]
        try:
            options = json.loads(body) if body.strip() else {}
        except ValueError:
            options = {}
        if isinstance(options, dict):
            if options.get("propagationPolicy"):
                return options["propagationPolicy"]
            if options.get("orphanDependents") is True:
                return "Orphan"
        return None

    def _list(self, rt: ResourceType, namespace: str | None, query: dict[str, str]) -> Obj:
        items = self.api.service.list(rt, namespace, LabelSelector(query.get("labelSelector")),
                                      FieldSelector(query.get("fieldSelector")))
        metadata: Obj = {"resourceVersion": self.api.store.resource_version}
        start = 0
        if query.get("continue"):
            try:
                start = int(base64.urlsafe_b64decode(query["continue"]).decode())
            except ValueError:
                raise bad_request("invalid continue token") from None
        limit = int(query.get("limit") or 0)
        if limit and start + limit < len(items):
            metadata["continue"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
            metadata["remainingItemCount"] = len(items) - start - limit
            items = items[start:start + limit]
        else:
            items = items[start:]
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": metadata, "items": items}

    def _log(self, namespace: str, name: str, query: dict[str, str]) -> None:
        text, started = self.api.controllers.pod_log(namespace, name, query.get("container"),
                                                     query.get("previous") in ("true", "1"))
        lines = text.splitlines()
        if query.get("tailLines"):
            tail = int(query["tailLines"])
            lines = lines[-tail:] if tail > 0 else []
        if query.get("timestamps") in ("true", "1"):
            lines = [f"{rfc3339_nano(started + i * 0.001)} {line}" for i, line in enumerate(lines)]
        payload = "".join(line + "\n" for line in lines).encode()
        if query.get("limitBytes"):
            payload = payload[: int(query["limitBytes"])]
        self._send(200, payload, "text/plain")

    def _watch(self, rt: ResourceType, namespace: str | None, query: dict[str, str]) -> None:
        """Stream watch events as chunked newline-delimited JSON until timeoutSeconds or stop()."""
        api = self.api
        watcher = Watcher(rt.key, namespace, LabelSelector(query.get("labelSelector")),
                          FieldSelector(query.get("fieldSelector")))
        since = query.get("resourceVersion", "")
        initial: list[tuple[str, Obj]] = []
        with api.store.lock:
            if since in ("", "0"):
                initial = [("ADDED", o) for o in api.store.list(rt.key, namespace) if watcher.matches(o)]
            else:
                try:
                    since_rv = int(since)
                except ValueError:
                    raise bad_request(f"invalid resource version {since!r}") from None
                history = api.store.history
                if history and len(history) == history.maxlen and history[0].rv > since_rv + 1:
                    gone = ApiError(410, "Expired", f"too old resource version: {since_rv} ({history[0].rv})")
                    initial = [("ERROR", gone.status())]
                else:
                    for event in history:
                        if event.rv > since_rv:
                            watcher.offer(event)
            api.hub.add(watcher)
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        deadline = time.monotonic() + timeout if timeout is not None else None
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        try:
            for kind, obj in initial:
                self._chunk(json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n")
            while not initial or initial[0][0] != "ERROR":
                remaining = deadline - time.monotonic() if deadline is not None else 0.25
                if remaining <= 0 or watcher.closed or api.stopping:
                    break
                event = watcher.next(min(remaining, 0.25))
                if event is not None:
                    line = json.dumps({"type": event[0], "object": event[1]}, separators=(",", ":"))
                    self._chunk(line.encode() + b"\n")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            api.hub.remove(watcher)


# =====================================================================================================
# Facade
# =====================================================================================================


class KubeAPI:
    """A Kubernetes API stand-in on a real HTTP port. See the module docstring for what it simulates.

    Typical use::

        api = KubeAPI(); api.start()
        api.kubeconfig(tmp_path / "kubeconfig")
        api.script("gateway", CrashLoop(after=0.5, exit_code=2, log="boom"))
        ... run the product against it ...
        api.stop()
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host, self.port = host, port
        self.hub = WatchHub()
        self.store = Store(self.hub)
        self.catalog = Catalog(self.store)
        self.service = ObjectService(self.store, self.catalog, self._kick)
        self.controllers = Controllers(self.store, self.service)
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.stopping = False
        self._requests_lock = threading.Lock()
        self._server: _Server | None = None
        self._server_thread: threading.Thread | None = None
        self._seed()

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "KubeAPI":
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._server_thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                               name="kubeapi-http", daemon=True)
        self._server_thread.start()
        self.controllers.start()
        return self

    def stop(self) -> None:
        self.stopping = True
        self.hub.close_all()
        self.controllers.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "KubeAPI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def errors(self) -> list[str]:
        """Tracebacks of stand-in bugs (ticker exceptions, HTTP 500s); a test can assert it is empty."""
        return self.controllers.errors

    def kubeconfig(self, path: str | os.PathLike[str], context: str = "kind-gateway-e2e",
                   namespace: str | None = None, token: str = "kubeapi-stand-in-token") -> str:
        """Write (or merge into an existing) kubeconfig whose `context` points at this server with token
        auth, make it the current context, mode 0600. Returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        config: Obj = {}
        if target.exists():
            try:
                loaded = yaml.safe_load(target.read_text())
                config = loaded if isinstance(loaded, dict) and loaded.get("kind") == "Config" else {}
            except yaml.YAMLError:
                config = {}
        config.setdefault("apiVersion", "v1")
        config.setdefault("kind", "Config")
        config.setdefault("preferences", {})
        ctx: Obj = {"cluster": context, "user": context}
        if namespace:
            ctx["namespace"] = namespace
        for section, entry in (("clusters", {"name": context, "cluster": {"server": self.url}}),
                               ("users", {"name": context, "user": {"token": token}}),
                               ("contexts", {"name": context, "context": ctx})):
            config[section] = [e for e in config.get(section) or [] if e.get("name") != context] + [entry]
        config["current-context"] = context
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(config, handle, sort_keys=False)
        os.chmod(target, 0o600)
        return str(target)

    # ---------------------------------------------------------------- scripting
    def script(self, name: str, script: Script) -> None:
        """Script the pods of Deployment `name` (or of a bare Pod named `name`). Pods that already exist
        restart the script's clock now; the default is Ready(after=0.2)."""
        with self.store.lock:
            self.controllers.set_script(name, script)

    def script_job(self, name: str, script: Script) -> None:
        """Script the pods of Job `name`; the default is JobSucceeds(after=0.2, log="")."""
        with self.store.lock:
            self.controllers.set_script(name, script, job=True)

    def set_crd_established_after(self, seconds: float) -> None:
        with self.store.lock:
            self.controllers.crd_established_after = seconds

    def set_namespace_termination(self, seconds: float) -> None:
        """Deleted namespaces stay Terminating this long before their contents vanish (default 0: at once)."""
        with self.store.lock:
            self.service.namespace_termination = seconds

    # ---------------------------------------------------------------- inspection
    def objects(self, kind_plural: str, namespace: str | None = None) -> list[Obj]:
        """Deep copies of the stored objects, e.g. objects("deployments", "kubernaut-system");
        `kind_plural` may be qualified ("deployments.apps") and may name a custom resource."""
        with self.store.lock:
            return [copy.deepcopy(o) for key in self.catalog.by_name(kind_plural)
                    for o in self.store.list(key, namespace)]

    def get(self, kind_plural: str, name: str, namespace: str | None = None) -> Obj | None:
        with self.store.lock:
            for key in self.catalog.by_name(kind_plural):
                if (obj := self.store.get(key, namespace, name)) is not None:
                    return copy.deepcopy(obj)
        return None

    def events(self, namespace: str | None = None, involved_name: str | None = None) -> list[Obj]:
        return [e for e in self.objects("events", namespace)
                if involved_name is None or e["involvedObject"]["name"] == involved_name]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05) -> Any:
        """Poll predicate until it returns something truthy (returned) or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)

    # ---------------------------------------------------------------- direct manipulation
    def create(self, obj: Obj) -> Obj:
        """Create an object directly (test fixtures), resolved by apiVersion/kind; namespace defaults to
        "default" for namespaced kinds."""
        with self.store.lock:
            rt = self._type_of(obj)
            namespace = (obj.get("metadata") or {}).get("namespace") or ("default" if rt.namespaced else None)
            return copy.deepcopy(self.service.create(rt, namespace, obj, "kubeapi-test"))

    def delete(self, kind_plural: str, name: str, namespace: str | None = None) -> None:
        with self.store.lock:
            for key in self.catalog.by_name(kind_plural):
                rt = next((t for t in self.catalog.all_types() if t.key == key), None)
                if rt and self.store.get(key, namespace, name) is not None:
                    self.service.delete(rt, namespace, name, "Background")
                    return
        raise KeyError(f"{kind_plural} {namespace}/{name} not found")

    def add_node(self, name: str, arch: str = "arm64", labels: dict[str, str] | None = None) -> Obj:
        """Add a Ready node reporting `arch` in status.nodeInfo.architecture and kubernetes.io/arch."""
        with self.store.lock:
            index = len(self.store.list(RT["nodes"].key)) + 2
            control_plane = "control-plane" in name
            node_labels = {"beta.kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux",
                           "kubernetes.io/arch": arch, "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
            if control_plane:
                node_labels["node-role.kubernetes.io/control-plane"] = ""
            node_labels.update(labels or {})
            stamp = rfc3339(_now())
            conditions = [{"type": t, "status": "False", "reason": r, "message": m, "lastHeartbeatTime": stamp,
                           "lastTransitionTime": stamp}
                          for t, r, m in (("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                                          ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                                          ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"))]
            conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                               "message": "kubelet is posting ready status", "lastHeartbeatTime": stamp,
                               "lastTransitionTime": stamp})
            capacity = {"cpu": "2", "ephemeral-storage": "100Gi", "memory": "8Gi", "pods": "110"}
            spec: Obj = {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"],
                         "providerID": f"kind://docker/gateway-e2e/{name}"}
            if control_plane:
                spec["taints"] = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
            node = {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": node_labels},
                "spec": spec,
                "status": {
                    "conditions": conditions,
                    "addresses": [{"type": "InternalIP", "address": f"172.18.0.{index}"},
                                  {"type": "Hostname", "address": name}],
                    "capacity": capacity, "allocatable": dict(capacity),
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                    "nodeInfo": {"architecture": arch, "bootID": str(uuid.uuid4()),
                                 "containerRuntimeVersion": "containerd://2.1.1",
                                 "kernelVersion": platform.release(), "kubeProxyVersion": "",
                                 "kubeletVersion": K8S_VERSION, "machineID": _sha(name)[:32],
                                 "operatingSystem": "linux", "osImage": "Debian GNU/Linux 12 (bookworm)",
                                 "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, name))},
                },
            }
            return copy.deepcopy(self.service.create(RT["nodes"], None, node, None, internal=True))

    # ---------------------------------------------------------------- internals
    def _type_of(self, obj: Obj) -> ResourceType:
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        for rt in self.catalog.all_types():
            if rt.group == group and rt.kind == obj.get("kind"):
                return rt
        raise KeyError(f"no resource for {obj.get('apiVersion')}/{obj.get('kind')}")

    def _kick(self) -> None:
        self.controllers.kick()

    def _record_request(self, method: str, path: str, query: dict[str, str]) -> None:
        with self._requests_lock:
            self.requests.append((method, path, query))

    def _seed(self) -> None:
        """What a fresh Kind cluster has that the product may look at."""
        with self.store.lock:
            for ns in ("default", "kube-system", "kube-public", "kube-node-lease", "local-path-storage"):
                self.service.create(RT["namespaces"], None, {"metadata": {"name": ns}}, None, internal=True)
                self._default_service_account(ns)
            arch = host_arch()
            self.add_node("gateway-e2e-control-plane", arch=arch)
            self.add_node("gateway-e2e-worker", arch=arch)
            self.service.create(RT["storageclasses"], None, {
                "metadata": {"name": "standard",
                             "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer"}, None, internal=True)
            self.service.create(RT["services"], "default", {
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
            }, None, internal=True)
        # Every new namespace gets its `default` ServiceAccount, like the real service-account controller.
        self.store.hub.add(_NamespaceHook(self))

    def _default_service_account(self, namespace: str) -> None:
        if self.store.get(RT["serviceaccounts"].key, namespace, "default") is None:
            self.service.create(RT["serviceaccounts"], namespace,
                                {"metadata": {"name": "default", "namespace": namespace}}, None, internal=True)


class _NamespaceHook(Watcher):
    """An in-process watcher: creates the `default` ServiceAccount when a namespace is added. It runs
    synchronously inside Store.save (the store lock is already held)."""

    def __init__(self, api: KubeAPI):
        super().__init__(RT["namespaces"].key, None, LabelSelector(""), FieldSelector(""))
        self._api = api

    def offer(self, event: WatchEvent) -> None:
        if event.key == self.key and event.type == "ADDED":
            self._api._default_service_account(event.obj["metadata"]["name"])

    def close(self) -> None:  # never ends with the HTTP watches
        pass
