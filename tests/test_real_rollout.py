"""On the real control plane: what a re-run does to the workloads (issue 9 items 2 and 4).

- A rebuilt image keeps its tag. The pods must still end up running the new build: the pod
  template carries the loaded image's ID, so new content is a new template and a real rollout (a
  new ReplicaSet), while an unchanged image changes nothing at all.
- The migrations Job is replaced on every change; Job pods outlive their Job for a while (garbage
  collection is asynchronous). The log read must be that of the pod the *new* Job owns.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from kubernaut_e2e.config import load_config
from kubernaut_e2e.context import RunContext, StepContext
from kubernaut_e2e.deploy import run_component
from kubernaut_e2e.preflight import Tools
from kubernaut_e2e.runner import Cancellation, LocalRunner
from tests.conftest import KUBERNAUT_FIXTURE, TESTS, Project
from tests.realcluster import CRASHER, RealCluster


def _replica_sets(kube: Any, namespace: str, app: str) -> list[str]:
    return sorted(rs["metadata"]["name"] for rs in kube.list("ReplicaSet", namespace, selector=f"app={app}"))


def test_a_rebuilt_image_rolls_its_deployment_and_an_unchanged_one_does_not(
        project: Project, real_cluster: RealCluster, real_kube: Any, tmp_path: Path):
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    stack = tmp_path / "stack.yaml"
    stack.write_text(f"extends: {project.stack.parent / 'no-smoke.yaml'}\nnamespace: {namespace}\n")
    rest = project.env["PATH"].split(os.pathsep, 1)[1]
    env = {"KIND_STANDIN_REAL_KUBECONFIG": str(real_cluster.kubeconfig), "INVOKE_E2E_STACK": str(stack),
           "PATH": os.pathsep.join([str(TESTS / "bin"), str(real_cluster.bin_dir), rest])}
    try:
        assert project.run("e2e.up", extra_env=env).returncode == 0
        gateway_before = _replica_sets(real_kube, namespace, "gateway")
        datastorage_before = _replica_sets(real_kube, namespace, "datastorage")
        assert len(gateway_before) == len(datastorage_before) == 1

        # Nothing changed: no build, no load, no new ReplicaSet anywhere.
        again = project.run("e2e.up", extra_env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert _replica_sets(real_kube, namespace, "gateway") == gateway_before
        assert _replica_sets(real_kube, namespace, "datastorage") == datastorage_before

        # A source change: both images are rebuilt under the same tags (the build context is the
        # whole tree) and both Deployments roll; the pods run the new image IDs.
        (project.source / "cmd" / "gateway" / "main.go").write_text("package main\n\nfunc main() { println(2) }\n")
        changed = project.run("e2e.up", extra_env=env)
        assert changed.returncode == 0, changed.stdout + changed.stderr
        steps = {s["name"]: s for s in project.timings()["steps"]}
        assert not steps["build-gateway"]["note"].startswith("reused")
        gateway_after = _replica_sets(real_kube, namespace, "gateway")
        assert len(gateway_after) == 2 and set(gateway_before) < set(gateway_after)
        image_id = project.podman("image", "inspect", "--format", "{{.Id}}", project.images["gateway"]).stdout.strip()
        dep = real_kube.get("Deployment", "gateway", namespace)
        assert dep["spec"]["template"]["metadata"]["annotations"]["e2e.kubernaut.ai/image-gateway"] == image_id
        status = dep["status"]
        assert status["updatedReplicas"] == status["availableReplicas"] == status["replicas"] == 1
        new_rs = next(n for n in gateway_after if n not in gateway_before)
        pods = real_kube.list("Pod", namespace, selector="app=gateway")
        owners = {ref["name"] for p in pods if not p["metadata"].get("deletionTimestamp")
                  for ref in p["metadata"].get("ownerReferences") or []}
        assert owners == {new_rs}  # the serving pod is the new template's
    finally:
        project.run("e2e.clean", extra_env=env)


def test_the_migration_log_comes_from_the_pod_the_new_job_owns(real_cluster: RealCluster, real_kube: Any,
                                                               real_namespace: str, tmp_path: Path):
    stack = tmp_path / "stack.yaml"
    stack.write_text(f"extends: default\nnamespace: {real_namespace}\n")
    cfg = load_config({"stack": str(stack), "source_dir": str(KUBERNAUT_FIXTURE), "state_dir": str(tmp_path / "st"),
                       "ready_timeout": 60})
    cfg.kubeconfig.parent.mkdir(parents=True)
    shutil.copy(real_cluster.kubeconfig, cfg.kubeconfig)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cancellation = Cancellation()
    run = RunContext(cfg, Tools("podman", "kind"), LocalRunner(cancellation), run_dir, cancellation)
    # A pod left over from an earlier Job of that name, with its own log and a name that sorts last:
    # reading "the last pod labelled job-name=e2e-migrations" would read this one.
    real_kube.create({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": "e2e-migrations-zzzzzzzz", "namespace": real_namespace,
                                   "labels": {"job-name": "e2e-migrations", "batch.kubernetes.io/job-name": "e2e-migrations"}},
                      "spec": {"containers": [{"name": CRASHER, "image": "localhost/old:1"}]}})
    result = run_component(StepContext(run, "migrations"))
    assert result.value == ["action_type_catalog", "audit_events", "notification_audit", "retention_operations"]
    log = (run_dir / "migrations.log").read_text()
    assert "VERSION: 5" in log and "TABLES: " in log
