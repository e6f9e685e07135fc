"""A full `invoke e2e.up` as a subprocess against the real control plane.

The kind stand-in adopts the session's kwok cluster (KIND_STANDIN_REAL_KUBECONFIG): `create cluster`
hands the product a kubeconfig for the real API server and records the image loads, `delete cluster`
removes what the run created there. Real podman builds the test images; the real controller-manager
rolls the Deployments and runs the migration Job; kwok plays the pods. One place on purpose: when the
stack changes (issue 8), only this file follows.
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from kubernaut_e2e.stack import load_stack
from tests.conftest import PRELOAD_IMAGES, TESTS, Project
from tests.kindstate import clusters, interrupted_create
from tests.realcluster import RealCluster

SERVICES = {"postgresql", "redis", "datastorage", "gateway"}


def _env(project: Project, real_cluster: RealCluster, tmp_path: Path) -> dict[str, str]:
    # The stand-in first, then the built binaries (its kubectl), then the rest.
    rest = project.env["PATH"].split(os.pathsep, 1)[1]
    # The fast stack in a namespace of this test's own (the control plane is shared by the session).
    stack = tmp_path / "real-stack.yaml"
    stack.write_text(f"extends: {project.stack}\nnamespace: e2e-{uuid.uuid4().hex[:8]}\n")
    return {
        "KIND_STANDIN_REAL_KUBECONFIG": str(real_cluster.kubeconfig),
        "PATH": os.pathsep.join([str(TESTS / "bin"), str(real_cluster.bin_dir), rest]),
        "INVOKE_E2E_STACK": str(stack),
    }


def _deployments(real_kube: Any, namespace: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in real_kube.list("Deployment", namespace)}


def test_up_rerun_and_clean_on_the_real_control_plane(project: Project, real_cluster: RealCluster, real_kube,
                                                       tmp_path: Path):
    env = _env(project, real_cluster, tmp_path)
    namespace = load_stack(Path(env["INVOKE_E2E_STACK"])).namespace
    started = time.monotonic()
    result = project.run("e2e.up", extra_env=env)
    first_up = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr

    deployments = _deployments(real_kube, namespace)
    assert set(deployments) == SERVICES
    for dep in deployments.values():  # rolled out for real: kubectl rollout status would agree
        status = dep["status"]
        assert status["updatedReplicas"] == status["replicas"] == status["availableReplicas"] == dep["spec"]["replicas"]
    image = deployments["gateway"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == project.images["gateway"]  # the ref built is the ref deployed
    [record] = clusters(project.kind_state).values()
    assert set(record["images"]) == {*project.images.values(), *PRELOAD_IMAGES}  # ours and third-party
    assert all(s["status"] == "done" for s in project.timings()["steps"])

    # A re-run on the same cluster changes nothing on the server: server-side apply is idempotent.
    versions = {name: d["metadata"]["resourceVersion"] for name, d in deployments.items()}
    again = project.run("e2e.up", extra_env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert {n: d["metadata"]["resourceVersion"] for n, d in _deployments(real_kube, namespace).items()} == versions

    # clean deletes the "cluster": the stand-in removes what the run created on the real server.
    cleaned = project.run("e2e.clean", extra_env=env)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    ns = real_kube.get("Namespace", namespace)
    assert ns is None or ns["metadata"].get("deletionTimestamp")
    assert clusters(project.kind_state) == {}
    print(f"e2e.up on the real control plane took {first_up:.1f}s")


def test_up_recreates_a_half_made_cluster(project: Project, real_cluster: RealCluster, tmp_path: Path):
    """A `kind create` killed mid-way leaves a cluster `kind get clusters` lists and `get kubeconfig`
    cannot use. The next up must notice, say so in one line, delete it and create it again."""
    env = {**project.env, **_env(project, real_cluster, tmp_path)}
    interrupted_create(project.kind_state, env["INVOKE_E2E_CLUSTER_NAME"],
                       {**env, "KIND_EXPERIMENTAL_PROVIDER": "podman"})  # the provider the product uses
    result = project.run("e2e.up", extra_env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    argvs = [c["argv"][:2] for c in project.kind_calls()]
    assert ["delete", "cluster"] in argvs and argvs.index(["delete", "cluster"]) < argvs.index(["create", "cluster"])
    assert "recreat" in result.stdout.lower()
    project.run("e2e.clean", extra_env=env)
