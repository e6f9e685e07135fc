"""The real_cluster test tier: a real Kubernetes control plane, started once per test session.

Kubernetes semantics (server-side apply, validation, CRDs becoming Established, Deployments rolling
through ReplicaSets, garbage collection, pod logs through the API server) come from the real thing:
etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from the pinned Kubernetes
release by `.ci/build-control-plane`, run by `kwokctl --runtime binary`. There is no kubelet here, so
the pods run on kwok's fake nodes and kwok Stages (tests/realcluster/stages.yaml, chosen by pod label)
play their lifecycles: ready, slow start, crash loop with a previous log, image pull errors, config
error, OOMKill, and SIGTERM on deletion. The stand-in API server (tests/kubeapi.py) stays the fast tier.

Every test that uses `real_cluster` (directly or through `real_kube` / `real_namespace`) is marked
`real_cluster`; one that uses `real_kind` (the real kind CLI of the same build) `real_kind`. Nothing touches ~/.kube/config: kwokctl runs with `--kubeconfig ""` and a KWOK_WORKDIR
of the session's own. When the binaries are missing the fixture fails with the command that builds them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / ".ci" / "build-control-plane"
DATA = Path(__file__).resolve().parent / "realcluster"

#: Pod labels and annotations the Stages in tests/realcluster/stages.yaml select on.
START_LABEL = "kwok.e2e.test/start"
STOP_LABEL = "kwok.e2e.test/stop"
DELAY_ANNOTATION = "kwok.e2e.test/delay-ms"
EXIT_CODE_ANNOTATION = "kwok.e2e.test/exit-code"
#: The container name whose logs (current and previous) are tests/realcluster/logs/crasher-*.log.
CRASHER = "crasher"
#: The migration Job's container (kubernaut_e2e.migrations): its log is what the job prints when the
#: test source tree's migrations ran (tests/conftest.py MIGRATION_LOG). There is no PostgreSQL here.
MIGRATE = "migrate"

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "kwokctl")
_HOW_TO_BUILD = f"run {BUILD_SCRIPT.relative_to(ROOT)} (about 8 min once on 2 cores, instant when warm)"


@dataclass(frozen=True)
class RealCluster:
    """One running kwok cluster with real control-plane processes."""

    name: str
    kubeconfig: Path
    workdir: Path
    bin_dir: Path
    version: str  # what the API server reports at /version, e.g. v1.36.1
    started_in: float  # seconds from `kwokctl create cluster` to a Ready node

    def env(self) -> dict[str, str]:
        """The environment kwokctl and kubectl run in: the built binaries first on PATH, and a HOME
        (kubectl's discovery cache, kwokctl's defaults) inside the workdir, never the user's."""
        return {**os.environ, "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                "KWOK_WORKDIR": str(self.workdir), "HOME": str(self.workdir / "home"),
                "KUBECACHEDIR": str(self.workdir / "home" / "kube-cache")}

    def kubectl(self, *args: str, check: bool = True, input: str | None = None
                ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
                              env=self.env(), capture_output=True, text=True, check=check, input=input,
                              timeout=60)


def control_plane_bin_dir() -> Path:
    """The folder the build script fills; pytest.fail in one line when it is not complete."""
    out = subprocess.run(["bash", str(BUILD_SCRIPT), "--print-bin-dir"], capture_output=True, text=True,
                         check=True)
    bin_dir = Path(out.stdout.strip().splitlines()[-1])
    missing = [b for b in BINARIES if not (bin_dir / b).is_file()]
    if missing or not (bin_dir.parent / "complete").is_file():
        pytest.fail(f"real control plane binaries are not built in {bin_dir} "
                    f"(missing: {', '.join(missing) or 'completion stamp'}): {_HOW_TO_BUILD}", pytrace=False)
    return bin_dir


#: The ports kwokctl would otherwise count down from 32767 in each KWOK_WORKDIR: two control
#: planes started at once (pytest-xdist workers) would both take the same ones.
_PORT_OPTIONS = ("etcdPort", "etcdPeerPort", "kubeApiserverPort", "kubeControllerManagerPort",
                 "kubeSchedulerPort", "kwokControllerPort")


def _kwokctl_ports() -> dict[str, Any]:
    """A KwokctlConfiguration whose ports the kernel handed out just now (all distinct)."""
    from tests.conftest import free_ports

    return {"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokctlConfiguration",
            "options": dict(zip(_PORT_OPTIONS, free_ports(len(_PORT_OPTIONS))))}


def kwok_config(bin_dir: Path, workdir: Path) -> Path:
    """kwokctl's --config: kwok's default Stages, ours after them, and the ClusterLogs.

    Any Stage in the config replaces kwok's defaults, so the defaults (copied out of the kwok
    module by the build script) come first. Log files are copied next to the config: kwok reads
    them by absolute path whenever `kubectl logs` asks.
    """
    defaults = sorted((bin_dir.parent / "kwok-stages").glob("*.yaml"))
    if not defaults:
        pytest.fail(f"kwok's default stages are missing in {bin_dir.parent / 'kwok-stages'}: {_HOW_TO_BUILD}",
                    pytrace=False)
    logs = workdir / "logs"
    shutil.copytree(DATA / "logs", logs)
    cluster_logs = {
        "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterLogs", "metadata": {"name": "e2e-logs"},
        "spec": {"selector": {}, "logs": [
            {"containers": [CRASHER], "logsFile": str(logs / "crasher-current.log"),
             "previousLogsFile": str(logs / "crasher-previous.log")},
            {"containers": [MIGRATE], "logsFile": str(logs / "migrate.log")},
            {"logsFile": str(logs / "default.log")},
        ]},
    }
    documents = [yaml.safe_dump(_kwokctl_ports(), sort_keys=False)]
    documents += [path.read_text() for path in defaults]
    documents.append((DATA / "stages.yaml").read_text())
    documents.append(yaml.safe_dump(cluster_logs, sort_keys=False))
    path = workdir / "kwok.yaml"
    path.write_text("\n---\n".join(doc.strip() for doc in documents) + "\n")
    return path


def start_cluster(bin_dir: Path, workdir: Path, name: str) -> RealCluster:
    started = time.monotonic()
    config = kwok_config(bin_dir, workdir)
    draft = RealCluster(name, workdir / "clusters" / name / "kubeconfig.yaml", workdir, bin_dir, "", 0.0)
    argv = [str(bin_dir / "kwokctl"), "create", "cluster", "--name", name, "--runtime", "binary",
            "--kubeconfig", "", "--config", str(config), "--wait", "60s", "--disable-qps-limits",
            "--etcd-binary", str(bin_dir / "etcd"),
            "--kube-apiserver-binary", str(bin_dir / "kube-apiserver"),
            "--kube-controller-manager-binary", str(bin_dir / "kube-controller-manager"),
            "--kube-scheduler-binary", str(bin_dir / "kube-scheduler"),
            "--kwok-controller-binary", str(bin_dir / "kwok")]
    created = subprocess.run(argv, env=draft.env(), capture_output=True, text=True, timeout=180)
    if created.returncode != 0:
        stop_cluster(draft)
        pytest.fail(f"kwokctl create cluster failed (exit {created.returncode}): "
                    f"{(created.stderr or created.stdout).strip()[-2000:]}", pytrace=False)
    scaled = subprocess.run([str(bin_dir / "kwokctl"), "scale", "node", "--name", name, "--replicas", "2"],
                            env=draft.env(), capture_output=True, text=True, timeout=60)
    if scaled.returncode != 0:
        stop_cluster(draft)
        pytest.fail(f"kwokctl scale node failed: {scaled.stderr.strip()[-2000:]}", pytrace=False)
    draft.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
    # kind's first node is the control plane: its label is what the services' nodeSelector names
    # (a one-node kind cluster has no NoSchedule taint on it).
    first = sorted(draft.kubectl("get", "nodes", "-o", "name").stdout.split())[0]
    draft.kubectl("label", first, "node-role.kubernetes.io/control-plane=", "--overwrite")
    version = yaml.safe_load(draft.kubectl("get", "--raw", "/version").stdout)["gitVersion"]
    return RealCluster(name, draft.kubeconfig, workdir, bin_dir, version, time.monotonic() - started)


def stop_cluster(cluster: RealCluster) -> None:
    """Stop and delete the cluster's processes and files.

    `delete cluster` refuses `--kubeconfig ""`, and without the flag it would edit ~/.kube/config:
    it gets a file of the workdir's own instead.
    """
    deleted = subprocess.run([str(cluster.bin_dir / "kwokctl"), "delete", "cluster", "--name", cluster.name,
                              "--kubeconfig", str(cluster.workdir / "unused-kubeconfig.yaml")],
                             env=cluster.env(), capture_output=True, text=True, timeout=120)
    if deleted.returncode != 0:
        raise RuntimeError(f"kwokctl delete cluster {cluster.name} failed: {deleted.stderr.strip()[-1000:]}")


#: kind installs this default StorageClass in every cluster (served by local-path-provisioner).
_STANDARD_CLASS = """\
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: rancher.io/local-path
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
"""


class LocalPathProvisioner(threading.Thread):
    """Stand-in for kind's local-path-provisioner (a pod: cannot run here).

    Like the real one, it serves the `standard` class: once the scheduler has picked a node for a
    claim's pod (annotation volume.kubernetes.io/selected-node), it creates a hostPath
    PersistentVolume pre-bound to the claim; the real PV controller then binds them, and deleting
    the claim releases the volume, which it deletes (reclaimPolicy Delete).
    """

    def __init__(self, cluster: RealCluster) -> None:
        super().__init__(name="local-path-provisioner", daemon=True)
        self.cluster = cluster
        self.stop = threading.Event()
        self.provisioned = 0

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                self._once()
            except (subprocess.SubprocessError, ValueError, KeyError):
                continue  # a transient API error: try again on the next tick

    def _once(self) -> None:
        import json

        claims = json.loads(self.cluster.kubectl("get", "pvc", "-A", "-o", "json").stdout)["items"]
        for claim in claims:
            meta, spec = claim["metadata"], claim["spec"]
            if spec.get("volumeName") or spec.get("storageClassName") not in ("standard", None):
                continue
            if "volume.kubernetes.io/selected-node" not in (meta.get("annotations") or {}):
                continue
            volume = {
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": f"pvc-{meta['uid']}",
                             "annotations": {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"}},
                "spec": {"capacity": {"storage": spec["resources"]["requests"]["storage"]},
                         "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                         "persistentVolumeReclaimPolicy": "Delete",
                         "storageClassName": spec.get("storageClassName") or "standard",
                         "hostPath": {"path": f"/var/local-path-provisioner/pvc-{meta['uid']}",
                                      "type": "DirectoryOrCreate"},
                         "claimRef": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]}},
            }
            made = self.cluster.kubectl("create", "-f", "-", input=json.dumps(volume), check=False)
            if made.returncode == 0:
                self.provisioned += 1
        volumes = json.loads(self.cluster.kubectl("get", "pv", "-o", "json").stdout)["items"]
        for volume in volumes:
            if (volume.get("status") or {}).get("phase") == "Released" and \
                    volume["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
                self.cluster.kubectl("delete", "pv", volume["metadata"]["name"], "--wait=false", check=False)


_STARTED = pytest.StashKey[RealCluster]()
#: With pytest-xdist each worker starts its own control plane and reports it under this key.
_WORKER_KEY = "real_control_plane"
_FROM_WORKERS = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def real_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[RealCluster]:
    """The session's real control plane (started on first use, deleted at the end)."""
    bin_dir = control_plane_bin_dir()
    user_kube = _tree(Path.home() / ".kube")
    workdir = Path(tmp_path_factory.mktemp("kwok"))
    cluster = start_cluster(bin_dir, workdir, f"rt-{uuid.uuid4().hex[:6]}")
    request.config.stash[_STARTED] = cluster
    if hasattr(request.config, "workeroutput"):  # an xdist worker: the controller prints it
        request.config.workeroutput[_WORKER_KEY] = _describe(cluster)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\n{_describe(cluster)}")
    cluster.kubectl("apply", "-f", "-", input=_STANDARD_CLASS)
    provisioner = LocalPathProvisioner(cluster)
    provisioner.start()
    try:
        yield cluster
    finally:
        provisioner.stop.set()
        provisioner.join(10)
        stop_cluster(cluster)
    if _tree(Path.home() / ".kube") != user_kube:
        raise AssertionError(f"the real_cluster tier changed {Path.home() / '.kube'}: nothing may write there")


def _tree(root: Path) -> dict[str, float]:
    """Every path under root with its modification time (empty when root does not exist)."""
    return {str(p): p.stat().st_mtime for p in [root, *root.rglob("*")] if p.exists()}


@pytest.fixture(scope="session")
def real_kube(real_cluster: RealCluster) -> Iterator[Any]:
    """The product's own Kube client (kubernaut_e2e.kube), connected to the real API server."""
    from kubernaut_e2e.kube import Kube

    kube = Kube(real_cluster.kubeconfig)
    yield kube
    kube.close()


@pytest.fixture
def real_namespace(real_kube: Any) -> Iterator[str]:
    """A fresh namespace whose default ServiceAccount exists (pods cannot be created before)."""
    name = f"rt-{uuid.uuid4().hex[:8]}"
    real_kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    deadline = time.monotonic() + 30
    while real_kube.get("ServiceAccount", "default", name) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"namespace {name}: the default ServiceAccount never appeared (is the "
                        "controller-manager running?)", pytrace=False)
        time.sleep(0.1)
    yield name
    real_kube.delete("Namespace", name)


@pytest.fixture(scope="session")
def real_kind() -> Path:
    """The real kind CLI, built at the pinned version with the control plane."""
    return control_plane_bin_dir() / "kind"


def _describe(cluster: RealCluster) -> str:
    return (f"real control plane: kube-apiserver {cluster.version} (kwokctl --runtime binary, "
            f"binaries in {cluster.bin_dir}), started in {cluster.started_in:.1f}s")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the real control plane carries the `real_cluster` marker, and every test
    that runs the real kind CLI the `real_kind` marker."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "real_cluster" in fixtures:
            item.add_marker(pytest.mark.real_cluster)
        if "real_kind" in fixtures:
            item.add_marker(pytest.mark.real_kind)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist's controller: keep what each worker's control plane was."""
    line = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
    if line:
        node.config.stash.setdefault(_FROM_WORKERS, []).append(line)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The log names the API server's version the real tier ran against (issue 9)."""
    cluster = config.stash.get(_STARTED, None)
    lines = [_describe(cluster)] if cluster is not None else []
    for line in [*lines, *config.stash.get(_FROM_WORKERS, [])]:
        terminalreporter.write_line(line)
