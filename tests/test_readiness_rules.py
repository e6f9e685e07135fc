"""Pure readiness rules: which pod states mean "will never be ready"."""
from __future__ import annotations

from kubernaut_e2e.readiness import (deployment_ready, deployment_rollout, pod_problems, pod_ready,
                                     registry_can_serve, waiting_reasons)


def _pod(*statuses: dict, ready: bool = False, containers: list[dict] | None = None, **meta: str) -> dict:
    return {"metadata": {"name": "gateway-abc", "namespace": "ns", **meta},
            "spec": {"containers": containers or []},
            "status": {"phase": "Running", "containerStatuses": list(statuses),
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_crash_loop_is_fatal_with_exit_code_and_message():
    cs = {"name": "gateway", "restartCount": 3,
          "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
          "lastState": {"terminated": {"reason": "Error", "exitCode": 2, "message": "fatal error: lfstack.push"}}}
    [problem] = pod_problems(_pod(cs))
    assert problem.reason == "CrashLoopBackOff, last terminated: Error"
    assert problem.exit_code == 2 and problem.restarts == 3
    assert problem.message == "fatal error: lfstack.push"
    assert "pod ns/gateway-abc container gateway" in problem.headline()


def test_image_never_pull_and_config_error_are_fatal():
    for reason in ("ErrImageNeverPull", "CreateContainerConfigError", "InvalidImageName"):
        cs = {"name": "c", "restartCount": 0, "state": {"waiting": {"reason": reason, "message": "m"}}}
        [problem] = pod_problems(_pod(cs))
        assert problem.reason == reason and problem.message == "m"


def test_pull_errors_are_fatal_only_for_images_no_registry_serves():
    public = {"name": "c", "image": "docker.io/library/redis:7-alpine", "imagePullPolicy": "IfNotPresent"}
    ours = {"name": "c", "image": "localhost/kubernaut-gateway:e2e", "imagePullPolicy": "IfNotPresent"}
    never = {"name": "c", "image": "quay.io/x/y:1", "imagePullPolicy": "Never"}
    assert registry_can_serve(public) and not registry_can_serve(ours) and not registry_can_serve(never)
    for reason in ("ErrImagePull", "ImagePullBackOff"):
        cs = {"name": "c", "restartCount": 0, "state": {"waiting": {"reason": reason, "message": "503"}}}
        assert pod_problems(_pod(cs, containers=[public])) == []  # the kubelet retries it
        assert pod_problems(_pod(cs, containers=[ours]))[0].reason == reason
        assert pod_problems(_pod(cs, containers=[never]))[0].reason == reason
        assert waiting_reasons(_pod(cs, containers=[public])) == [f"c: {reason} (503)"]


def test_a_terminating_pod_is_not_a_problem():
    sigterm = {"name": "c", "restartCount": 0, "state": {"terminated": {"reason": "Error", "exitCode": 143}}}
    assert pod_problems(_pod(sigterm))[0].exit_code == 143
    assert pod_problems(_pod(sigterm, deletionTimestamp="2026-01-01T00:00:00Z")) == []


def test_oom_killed_last_state_is_fatal():
    cs = {"name": "c", "restartCount": 1, "state": {"running": {}},
          "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
    [problem] = pod_problems(_pod(cs))
    assert problem.reason == "OOMKilled" and problem.exit_code == 137


def test_error_termination_is_fatal_but_success_is_not():
    bad = {"name": "c", "restartCount": 0, "state": {"terminated": {"reason": "Error", "exitCode": 1}}}
    ok = {"name": "c", "restartCount": 0, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}
    assert pod_problems(_pod(bad))[0].reason == "terminated: Error"
    assert pod_problems(_pod(ok)) == []


def test_starting_pods_are_not_problems():
    creating = {"name": "c", "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
    running = {"name": "c", "restartCount": 0, "state": {"running": {}}}
    assert pod_problems(_pod(creating)) == [] and pod_problems(_pod(running)) == []
    assert pod_ready(_pod(running, ready=True)) and not pod_ready(_pod(running))


def test_deployment_ready_needs_available_replicas_for_current_generation():
    dep = {"metadata": {"generation": 2}, "spec": {"replicas": 1},
           "status": {"observedGeneration": 2, "availableReplicas": 1, "updatedReplicas": 1}}
    assert deployment_ready(dep)
    assert not deployment_ready({**dep, "status": {**dep["status"], "availableReplicas": 0}})
    assert not deployment_ready({**dep, "status": {**dep["status"], "observedGeneration": 1}})


def _dep(**status: int) -> dict:
    return {"metadata": {"generation": 2}, "spec": {"replicas": 1}, "status": {"observedGeneration": 2, **status}}


def test_rollout_in_progress_is_not_ready():
    # The old pod still serves (available 1) while the new one starts: kubectl rollout status waits.
    mid = deployment_rollout({"metadata": {"generation": 2}, "spec": {"replicas": 1},
                              "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1,
                                         "availableReplicas": 1}})
    assert not mid.done and mid.message == "1 old replicas are pending termination"
    assert not deployment_ready(_dep(**{"replicas": 1, "availableReplicas": 1}))  # no updatedReplicas yet
    unavailable = deployment_rollout(_dep(**{"replicas": 1, "updatedReplicas": 1, "availableReplicas": 0}))
    assert not unavailable.done and unavailable.message == "0 of 1 updated replicas are available"
    done = deployment_rollout(_dep(**{"replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}))
    assert done.done and not done.failed


def test_progress_deadline_exceeded_fails_the_rollout():
    dep = _dep(**{"replicas": 1, "updatedReplicas": 1})
    dep["status"]["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                    "message": 'ReplicaSet "gw-1" has timed out progressing.'}]
    rollout = deployment_rollout(dep)
    assert rollout.failed and not rollout.done and "gw-1" in rollout.message
