"""Waiting for Deployments and Jobs, failing fast when a pod shows it will never be ready.

The old harness waited 300 s on a pod that had been crash-looping since second 10. Here every
pod change is inspected as it happens: a crash loop, an image that was not loaded, a config error
or an error/OOM termination fails the step at once, naming the pod, container, reason, restarts,
exit code, termination message and the previous container's log.

What is *not* a failure, because the cluster fixes it by itself: a pull error of an image a
registry serves (the kubelet retries it with a back-off; the wait's timeout bounds it), and an
old pod that is terminating during a rolling update (it exits 143 on SIGTERM). "Ready" is
`kubectl rollout status`'s verdict: the new ReplicaSet is fully updated and available and no old
replica is left, so a wait during a rollout does not return while only the old pod serves.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ContextManager

from kubernaut_e2e.dockerfile import registry_of
from kubernaut_e2e.errors import StepFailed
from kubernaut_e2e.runner import Cancellation

#: Waiting reasons that will not resolve by waiting longer.
FATAL_WAITING = frozenset({
    "CrashLoopBackOff", "ErrImageNeverPull", "CreateContainerConfigError", "CreateContainerError",
    "InvalidImageName", "RunContainerError",
})

#: Pull failures. The kubelet retries them, so they are fatal only for an image no registry can
#: serve: one this project built and loaded (pull policy Never, or the `localhost` registry).
PULL_WAITING = frozenset({"ErrImagePull", "ImagePullBackOff"})


@dataclass(frozen=True)
class PodProblem:
    namespace: str
    pod: str
    container: str
    reason: str
    restarts: int
    exit_code: int | None
    message: str  # the waiting message or the last termination message

    def headline(self) -> str:
        code = f", exit code {self.exit_code}" if self.exit_code is not None else ""
        return (f"pod {self.namespace}/{self.pod} container {self.container}: {self.reason} "
                f"(restarts {self.restarts}{code})")


@dataclass(frozen=True)
class Rollout:
    """Where a Deployment's rollout stands, in `kubectl rollout status`'s terms."""

    done: bool
    message: str
    failed: bool = False  # the Deployment reported ProgressDeadlineExceeded: waiting will not help


class NotReady(StepFailed):
    """A wait failed; `problem` is set when a pod showed why."""

    def __init__(self, message: str, problem: PodProblem | None = None) -> None:
        self.problem = problem
        super().__init__(message)


def _statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _container_specs(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = pod.get("spec") or {}
    return {c.get("name", ""): c for c in [*(spec.get("initContainers") or []),
                                           *(spec.get("containers") or [])]}


def registry_can_serve(container: dict[str, Any]) -> bool:
    """Whether the kubelet's pull retries can succeed: the image may be pulled and lives in a
    registry (an image built here and loaded into the nodes is in none). Pure."""
    image = str(container.get("image") or "")
    return (bool(image) and container.get("imagePullPolicy") != "Never"
            and registry_of(image) != "localhost")


def pod_problems(pod: dict[str, Any]) -> list[PodProblem]:
    """What, in this pod's status, means waiting longer will not help. Pure.

    A pod that is being deleted has no problems: it is an old replica on its way out (exit 143
    on SIGTERM is how it ends), not the pod the wait is about.
    """
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return []
    specs = _container_specs(pod)
    problems = []
    for cs in _statuses(pod):
        state, last = cs.get("state") or {}, cs.get("lastState") or {}
        waiting, term = state.get("waiting") or {}, state.get("terminated") or {}
        last_term = last.get("terminated") or {}
        restarts = int(cs.get("restartCount") or 0)
        waiting_reason = waiting.get("reason")
        pull_is_final = waiting_reason in PULL_WAITING and not registry_can_serve(
            specs.get(cs.get("name", ""), {"image": cs.get("image")}))
        if waiting_reason in FATAL_WAITING or pull_is_final:
            reason, code, message = waiting_reason, last_term.get("exitCode"), (
                last_term.get("message") or waiting.get("message") or "")
            if last_term.get("reason"):
                reason = f"{reason}, last terminated: {last_term['reason']}"
        elif term and (term.get("reason") == "OOMKilled" or (term.get("exitCode") or 0) != 0):
            reason, code, message = f"terminated: {term.get('reason') or 'Error'}", term.get("exitCode"), term.get("message") or ""
        elif last_term.get("reason") == "OOMKilled":
            reason, code, message = "OOMKilled", last_term.get("exitCode"), last_term.get("message") or ""
        else:
            continue
        problems.append(PodProblem(meta.get("namespace", ""), meta.get("name", ""), cs.get("name", ""),
                                   reason, restarts, code, message.strip()))
    return problems


def waiting_reasons(pod: dict[str, Any]) -> list[str]:
    """`container: Reason (message)` for each waiting container, for timeout messages. Pure."""
    found = []
    for cs in _statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            message = f" ({waiting['message']})" if waiting.get("message") else ""
            found.append(f"{cs.get('name', '')}: {waiting['reason']}{message}")
    return found


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def deployment_rollout(dep: dict[str, Any]) -> Rollout:
    """`kubectl rollout status` for one Deployment object. Pure.

    Done only when the controller has seen the current generation, every desired replica runs
    the new template, no old replica is left, and every updated replica is available.
    """
    meta, spec, status = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return Rollout(False, "waiting for the deployment spec update to be observed")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            detail = f": {condition['message']}" if condition.get("message") else ""
            return Rollout(False, f"exceeded its progress deadline{detail}", failed=True)
    want = int(spec["replicas"]) if spec.get("replicas") is not None else 1
    replicas, updated, available = (int(status.get(key) or 0)
                                    for key in ("replicas", "updatedReplicas", "availableReplicas"))
    if updated < want:
        return Rollout(False, f"{updated} out of {want} new replicas have been updated")
    if replicas > updated:
        return Rollout(False, f"{replicas - updated} old replicas are pending termination")
    if available < updated:
        return Rollout(False, f"{available} of {updated} updated replicas are available")
    return Rollout(True, "successfully rolled out")


def deployment_ready(dep: dict[str, Any]) -> bool:
    """The rollout is complete (see `deployment_rollout`). Pure."""
    return deployment_rollout(dep).done


def describe_problem(kube: Any, problem: PodProblem, log_lines: int = 20) -> str:
    """The failure text: headline, termination message, the last lines of the previous log."""
    lines = [problem.headline()]
    if problem.message:
        lines.append(f"  message: {problem.message}")
    previous = kube.pod_log(problem.namespace, problem.pod, problem.container, previous=True,
                            tail=log_lines)
    current = "" if previous.strip() else kube.pod_log(problem.namespace, problem.pod,
                                                        problem.container, tail=log_lines)
    log = previous or current
    if log.strip():
        which = "previous" if previous.strip() else "current"
        lines.append(f"  last lines of the {which} container's log:")
        lines.extend(f"    {line}" for line in log.rstrip().splitlines()[-log_lines:])
    return "\n".join(lines)


def _time_limit(kube: Any, seconds: float) -> ContextManager[Any]:
    """Every API call of a wait ends by the wait's own timeout (a slow API server included)."""
    limit = getattr(kube, "deadline", None)
    return limit(seconds) if limit is not None else nullcontext()


def wait_deployment(
    kube: Any,
    namespace: str,
    name: str,
    selector: str,
    timeout: float,
    cancellation: Cancellation,
    explain: Callable[[PodProblem], str] | None = None,
) -> float:
    """Block until the Deployment is available; return the seconds it took.

    Raises NotReady at once when a pod of it shows a fatal problem, or at the timeout with the
    pods' current states.
    """
    with _time_limit(kube, timeout):
        return _wait_deployment(kube, namespace, name, selector, timeout, cancellation, explain)


def _wait_deployment(kube: Any, namespace: str, name: str, selector: str, timeout: float,
                     cancellation: Cancellation, explain: Callable[[PodProblem], str] | None) -> float:
    started = time.monotonic()
    deadline = started + timeout
    last_pods: dict[str, dict[str, Any]] = {}
    while True:
        cancellation.check()
        dep = kube.get("Deployment", name, namespace)
        rollout = deployment_rollout(dep) if dep is not None else None
        if rollout is not None and rollout.done:
            return time.monotonic() - started
        if rollout is not None and rollout.failed:
            raise NotReady("\n".join([f"deployment {namespace}/{name} {rollout.message}",
                                       *_pod_lines(kube, namespace, last_pods)]))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotReady(_timeout_message(kube, namespace, name, timeout, dep, last_pods))
        # A short watch: each pod change is inspected as it arrives, and the Deployment is
        # re-read at least once a second (its status lags the pods' by a moment). A pod that
        # *becomes* ready ends the watch early; one that already was (an old replica during a
        # rollout, listed again by every new watch) must not, or this loop would spin.
        for pod in kube.watch_pods(namespace, selector, timeout=min(1.0, remaining)):
            pod_name = pod["metadata"]["name"]
            was = last_pods.get(pod_name)
            last_pods[pod_name] = pod
            problems = pod_problems(pod)
            if problems:
                text = (explain or (lambda p: describe_problem(kube, p)))(problems[0])
                raise NotReady(f"deployment {namespace}/{name} will not become ready:\n{text}",
                               problems[0])
            if (pod_ready(pod) and not (was is not None and pod_ready(was))) or cancellation.cancelled:
                break


def _timeout_message(kube: Any, namespace: str, name: str, timeout: float,
                     dep: dict[str, Any] | None, pods: dict[str, dict[str, Any]]) -> str:
    if dep is None:
        return f"deployment {namespace}/{name} does not exist after {timeout:g}s"
    status = dep.get("status") or {}
    headline = (f"deployment {namespace}/{name} not ready after {timeout:g}s: "
                f"{status.get('availableReplicas') or 0}/{(dep.get('spec') or {}).get('replicas', 1)} "
                f"available, {deployment_rollout(dep).message}")
    return "\n".join([headline, *_pod_lines(kube, namespace, pods)])


def _pod_lines(kube: Any, namespace: str, pods: dict[str, dict[str, Any]]) -> list[str]:
    """The last seen state of each pod: phase, waiting reasons, recent Warning events."""
    lines = []
    for pod_name, pod in sorted(pods.items()):
        phase = (pod.get("status") or {}).get("phase")
        terminating = ", terminating" if (pod.get("metadata") or {}).get("deletionTimestamp") else ""
        lines.append(f"  pod {pod_name}: {phase}{terminating}, ready={pod_ready(pod)}")
        lines.extend(f"    waiting: {reason}" for reason in waiting_reasons(pod))
        for event in kube.events_for(namespace, pod_name)[-3:]:
            if event.get("type") == "Warning":
                lines.append(f"    {event.get('reason')}: {event.get('message')}")
    return lines


def wait_job(kube: Any, namespace: str, name: str, timeout: float, cancellation: Cancellation,
             poll: float = 0.5) -> dict[str, Any]:
    """Block until the Job completes; raise NotReady with its pod's log when it fails."""
    with _time_limit(kube, timeout):
        return _wait_job(kube, namespace, name, timeout, cancellation, poll)


def _wait_job(kube: Any, namespace: str, name: str, timeout: float, cancellation: Cancellation,
              poll: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        cancellation.check()
        job = kube.get("Job", name, namespace) or {}
        status = job.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
        if status.get("succeeded") or "Complete" in conditions:
            return job
        if "Failed" in conditions or (status.get("failed") or 0) > 0:
            log = job_log(kube, namespace, name)
            raise NotReady(f"job {namespace}/{name} failed: "
                           f"{conditions.get('Failed', {}).get('message', '')}\n"
                           + "\n".join(f"    {line}" for line in log.rstrip().splitlines()[-20:]))
        if time.monotonic() >= deadline:
            raise NotReady(f"job {namespace}/{name} did not complete within {timeout:g}s")
        cancellation.wait(poll)


def job_log(kube: Any, namespace: str, name: str) -> str:
    pods = kube.list("Pod", namespace, selector=f"job-name={name}")
    if not pods:
        return ""
    pod = pods[-1]
    container = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name", "")
    return kube.pod_log(namespace, pod["metadata"]["name"], container, tail=200)
