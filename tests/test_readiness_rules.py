"""Pure readiness rules: which pod states mean "will never be ready"."""
from __future__ import annotations

from kubernaut_e2e.readiness import deployment_ready, pod_problems, pod_ready


def _pod(*statuses: dict, ready: bool = False) -> dict:
    return {"metadata": {"name": "gateway-abc", "namespace": "ns"},
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
    for reason in ("ErrImageNeverPull", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"):
        cs = {"name": "c", "restartCount": 0, "state": {"waiting": {"reason": reason, "message": "m"}}}
        [problem] = pod_problems(_pod(cs))
        assert problem.reason == reason and problem.message == "m"


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
