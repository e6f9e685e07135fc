"""kubernaut_e2e.readiness against a real control plane: Deployments rolled out by the real
controller-manager, pods scheduled by the real scheduler onto kwok nodes, pod lifecycles played by the
Stages in tests/realcluster/stages.yaml, logs served through the real API server.

The waits must return only when `kubectl rollout status` would, fail at once (long before their timeout)
on a pod that will never be ready -- naming the reason, restarts, exit code and the previous container's
log -- and keep waiting through what the cluster fixes by itself: a registry hiccup on a public image and
an old pod terminating during a rolling update.
"""
from __future__ import annotations

import time
from typing import Any

import pytest

from kubernaut_e2e.readiness import NotReady, wait_deployment
from kubernaut_e2e.runner import Cancellation
from tests.realcluster import (CRASHER, DELAY_ANNOTATION, EXIT_CODE_ANNOTATION, START_LABEL, STOP_LABEL)

PUBLIC_IMAGE = "docker.io/library/redis:7-alpine"
OUR_IMAGE = "localhost/kubernaut-datastorage:e2e-test"
#: Long enough that reaching it means the wait did not fail fast; short enough to keep the tier quick.
TIMEOUT = 45.0


def deployment(namespace: str, name: str, *, start: str | None = None, stop: str | None = None,
               image: str = PUBLIC_IMAGE, container: str = "app", pull_policy: str = "IfNotPresent",
               annotations: dict[str, str] | None = None, version: str = "1", replicas: int = 1,
               max_surge: int = 1, max_unavailable: int = 0) -> dict[str, Any]:
    labels = {"app": name}
    pod_labels = {**labels, "version": version,
                  **({START_LABEL: start} if start else {}), **({STOP_LABEL: stop} if stop else {})}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": annotations or {}},
                "spec": {"containers": [{"name": container, "image": image, "imagePullPolicy": pull_policy}]},
            },
        },
    }


def wait(kube: Any, namespace: str, name: str, timeout: float = TIMEOUT) -> float:
    return wait_deployment(kube, namespace, name, f"app={name}", timeout, Cancellation())


def failed_wait(kube: Any, namespace: str, name: str) -> tuple[NotReady, float]:
    started = time.monotonic()
    with pytest.raises(NotReady) as info:
        wait(kube, namespace, name)
    return info.value, time.monotonic() - started


def live_pods(kube: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    return [p for p in kube.list("Pod", namespace, selector=f"app={name}")
            if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


# --- ready --------------------------------------------------------------------------------------

def test_ready_deployment(real_kube, real_namespace):
    real_kube.apply(deployment(real_namespace, "redis"))
    wait(real_kube, real_namespace, "redis")
    [pod] = live_pods(real_kube, real_namespace, "redis")
    assert is_ready(pod)


def test_slow_start_is_waited_for(real_kube, real_namespace):
    real_kube.apply(deployment(real_namespace, "postgresql", start="slow", annotations={DELAY_ANNOTATION: "3000"}))
    wait(real_kube, real_namespace, "postgresql")
    [pod] = live_pods(real_kube, real_namespace, "postgresql")
    assert is_ready(pod)  # returned when the pod became ready, not before


# --- fails fast -------------------------------------------------------------------------------------

def test_crash_loop_fails_fast_with_reason_restarts_exit_code_and_previous_log(real_kube, real_namespace):
    real_kube.apply(deployment(real_namespace, "datastorage", start="crash-loop", container=CRASHER,
                               annotations={EXIT_CODE_ANNOTATION: "2"}))
    error, took = failed_wait(real_kube, real_namespace, "datastorage")
    assert took < TIMEOUT / 2
    assert error.problem is not None and error.problem.container == CRASHER
    text = str(error)
    assert "CrashLoopBackOff, last terminated: Error (restarts 3, exit code 2)" in text
    # The previous container's log, through the real API server's pod log endpoint (kwok serves it).
    assert "last lines of the previous container's log" in text
    assert 'password authentication failed for user \\"slm_user\\"' in text


@pytest.mark.parametrize("start, image, policy, reason", [
    ("never-pull", OUR_IMAGE, "Never", "ErrImageNeverPull"),
    ("pull-backoff", OUR_IMAGE, "IfNotPresent", "ImagePull"),  # ErrImagePull or ImagePullBackOff: ours, never pullable
    ("config-error", PUBLIC_IMAGE, "IfNotPresent", "CreateContainerConfigError"),
])
def test_waiting_states_that_never_resolve_fail_fast(real_kube, real_namespace, start, image, policy, reason):
    real_kube.apply(deployment(real_namespace, "gateway", start=start, image=image, pull_policy=policy))
    error, took = failed_wait(real_kube, real_namespace, "gateway")
    assert took < TIMEOUT / 2
    assert error.problem is not None and reason in error.problem.reason
    assert f"pod {real_namespace}/gateway-" in str(error)


def test_oom_killed_fails_fast_with_exit_code_137(real_kube, real_namespace):
    real_kube.apply(deployment(real_namespace, "gateway", start="oom-killed"))
    error, took = failed_wait(real_kube, real_namespace, "gateway")
    assert took < TIMEOUT / 2
    assert error.problem is not None
    assert (error.problem.reason, error.problem.exit_code, error.problem.restarts) == ("OOMKilled", 137, 1)


def test_timeout_names_the_waiting_reason(real_kube, real_namespace):
    # A public image whose registry keeps failing: not fatal (the kubelet retries), so the wait runs
    # to its timeout -- and then says why the pod never became ready.
    real_kube.apply(deployment(real_namespace, "redis", start="pull-backoff"))
    started = time.monotonic()
    with pytest.raises(NotReady) as info:
        wait(real_kube, real_namespace, "redis", timeout=5)
    assert time.monotonic() - started >= 5
    text = str(info.value)
    assert info.value.problem is None
    assert "not ready after 5s: 0/1 available" in text
    assert f'waiting: app: ImagePullBackOff (Back-off pulling image "{PUBLIC_IMAGE}")' in text


def test_progress_deadline_exceeded_ends_the_wait_before_its_timeout(real_kube, real_namespace):
    # The Deployment controller gives up after progressDeadlineSeconds; so does the wait, with its words.
    dep = deployment(real_namespace, "redis", start="pull-backoff")
    dep["spec"]["progressDeadlineSeconds"] = 2
    real_kube.apply(dep)
    error, took = failed_wait(real_kube, real_namespace, "redis")
    assert took < TIMEOUT / 2
    assert error.problem is None
    assert str(error).startswith(f"deployment {real_namespace}/redis exceeded its progress deadline: "
                                 'ReplicaSet "redis-')
    assert "waiting: app: ImagePullBackOff" in str(error)


# --- what the cluster fixes by itself (issue 9: items 1 and 6) ----------------------------------------

def test_transient_pull_error_of_a_public_image_is_waited_out(real_kube, real_namespace):
    # ErrImagePull, ImagePullBackOff, then the pull succeeds: the old code failed at the first event.
    real_kube.apply(deployment(real_namespace, "redis", start="pull-retry"))
    wait(real_kube, real_namespace, "redis")
    [pod] = live_pods(real_kube, real_namespace, "redis")
    assert is_ready(pod)


def test_rollout_is_not_ready_while_only_the_old_pod_serves(real_kube, real_namespace):
    # Surge rollout: the new pod starts slowly while the old one keeps serving. `kubectl rollout status`
    # waits for the new pod; the old readiness returned at once (available 1 >= 1, updated 1 >= 1).
    real_kube.apply(deployment(real_namespace, "gateway", stop="sigterm"))
    wait(real_kube, real_namespace, "gateway")
    real_kube.apply(deployment(real_namespace, "gateway", start="slow", stop="sigterm", version="2",
                               annotations={DELAY_ANNOTATION: "4000"}))
    wait(real_kube, real_namespace, "gateway")
    dep = real_kube.get("Deployment", "gateway", real_namespace)
    status = dep["status"]
    assert status["observedGeneration"] == dep["metadata"]["generation"] == 2
    assert status["updatedReplicas"] == status["replicas"] == status["availableReplicas"] == 1
    pods = live_pods(real_kube, real_namespace, "gateway")
    assert [p["metadata"]["labels"]["version"] for p in pods] == ["2"]
    assert is_ready(pods[0])


def test_old_pod_terminating_with_exit_143_is_not_a_failure(real_kube, real_namespace):
    # maxUnavailable 1, no surge: the old pod is deleted first, its container exits 143 on SIGTERM and the
    # pod lingers while the new one starts slowly. The wait sees the terminating pod; it must not fail on it.
    real_kube.apply(deployment(real_namespace, "gateway", stop="sigterm", max_surge=0, max_unavailable=1))
    wait(real_kube, real_namespace, "gateway")
    real_kube.apply(deployment(real_namespace, "gateway", start="slow", stop="sigterm", version="2",
                               max_surge=0, max_unavailable=1, annotations={DELAY_ANNOTATION: "4000"}))
    # The old pod's SIGTERM exit, as the wait will see it (the kwok stage; kubelet does the same).
    deadline = time.monotonic() + 20
    while not any(_exited_143(p) for p in real_kube.list("Pod", real_namespace, selector="app=gateway")):
        assert time.monotonic() < deadline, "the old pod never showed its SIGTERM exit"
        time.sleep(0.1)
    wait(real_kube, real_namespace, "gateway")
    pods = live_pods(real_kube, real_namespace, "gateway")
    assert [p["metadata"]["labels"]["version"] for p in pods] == ["2"] and is_ready(pods[0])


def _exited_143(pod: dict[str, Any]) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return bool(pod["metadata"].get("deletionTimestamp")) and any(
        (s.get("state", {}).get("terminated") or {}).get("exitCode") == 143 for s in statuses)
