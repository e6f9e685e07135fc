"""The real kind CLI (built at the pinned version by .ci/build-control-plane) with podman: the command
lines kubernaut_e2e.kind builds are accepted, its parsers read what real kind prints, a bad kind config
fails before any pull, and a create that cannot pull its node image fails in a way `invoke e2e.up`
reports. A kind cluster cannot start here (no registry), so half-made and stopped clusters are made
the way real kind leaves them: labelled node containers (a FROM scratch image) without a control plane.
Their real-kind behaviour is what the stand-in's fault modes (tests/bin/kind) must match.

HOME and KUBECONFIG point into the test's tmp_path: nothing here can write ~/.kube.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from kubernaut_e2e import kind
from tests.conftest import Project
from tests.kindstate import interrupted_create, standin_env
from tests.realcluster import DATA

CLUSTER_LABEL, ROLE_LABEL = "io.x-k8s.kind.cluster", "io.x-k8s.kind.role"


@pytest.fixture
def kind_env(podman_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    env = {**podman_env, "KIND_EXPERIMENTAL_PROVIDER": "podman", "HOME": str(home),
           "KUBECONFIG": str(tmp_path / "kubeconfig")}
    env.pop("KIND_CLUSTER_NAME", None)
    return env


def run_kind(real_kind: Path, argv: list[str], env: dict[str, str], timeout: float = 120
             ) -> subprocess.CompletedProcess[str]:
    """Run a product-built argv (starting with "kind") with the real binary."""
    assert argv[0] == "kind"
    return subprocess.run([str(real_kind), *argv[1:]], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def node_image(podman_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """An image whose containers look like kind nodes from the outside (see realcluster/kind-node.c)."""
    context = tmp_path_factory.mktemp("kind-node")
    subprocess.run(["gcc", "-static", "-Os", "-o", str(context / "kind-node"), str(DATA / "kind-node.c")], check=True)
    (context / "Containerfile").write_text(
        "FROM scratch\nCOPY kind-node /kind-node\nCOPY kind-node /bin/cat\nENTRYPOINT [\"/kind-node\"]\n")
    ref = f"localhost/e2etest-kind-node-{uuid.uuid4().hex[:8]}:test"
    subprocess.run(["podman", "build", "-q", "-t", ref, str(context)], env=podman_env, check=True,
                   capture_output=True)
    yield ref
    subprocess.run(["podman", "rmi", "--force", ref], env=podman_env, capture_output=True)


@pytest.fixture
def node_container(podman_env: dict[str, str], node_image: str):  # type: ignore[no-untyped-def]
    """make(cluster, running=True): a labelled control-plane "node" of that cluster; removed afterwards."""
    made: list[str] = []

    def make(cluster: str, running: bool = True) -> str:
        name = f"{cluster}-control-plane"
        verb = ["run", "-d"] if running else ["create"]
        subprocess.run(["podman", *verb, "--name", name, "--label", f"{CLUSTER_LABEL}={cluster}",
                        "--label", f"{ROLE_LABEL}=control-plane", node_image],
                       env=podman_env, check=True, capture_output=True)
        made.append(name)
        return name

    yield make
    for name in made:
        subprocess.run(["podman", "rm", "--force", "--time", "0", name], env=podman_env, capture_output=True)


def _cluster_name() -> str:
    return f"e2e-{uuid.uuid4().hex[:6]}"


# --- argv and parsers ----------------------------------------------------------------------------------

def test_every_argv_the_product_builds_is_accepted(real_kind: Path, kind_env: dict[str, str], tmp_path: Path):
    # cobra parses every flag before it honours --help: an unknown or misspelt flag fails with exit 1.
    argvs = [
        kind.get_clusters(), kind.version(), kind.get_kubeconfig("e2e"), kind.get_nodes("e2e"),
        kind.create_cluster("e2e", tmp_path / "kind.yaml", tmp_path / "kubeconfig", "60s"),
        kind.delete_cluster("e2e"), kind.delete_cluster("e2e", tmp_path / "kubeconfig"),
        kind.load_image_archive(tmp_path / "gateway.tar", "e2e"), kind.export_logs("e2e", tmp_path / "logs"),
    ]
    for argv in argvs:
        result = run_kind(real_kind, [*argv, "--help"], kind_env)
        assert result.returncode == 0, f"{argv}: {result.stderr}"
    bogus = run_kind(real_kind, [*kind.get_nodes("e2e"), "--bogus", "--help"], kind_env)
    assert bogus.returncode == 1 and "unknown flag: --bogus" in bogus.stderr  # the check above can fail
    assert run_kind(real_kind, kind.version(), kind_env).stdout.startswith("kind v0.32.0 ")


def test_get_clusters_with_none(real_kind: Path, kind_env: dict[str, str]):
    result = run_kind(real_kind, kind.get_clusters(), kind_env)
    assert result.returncode == 0
    assert "No kind clusters found." in result.stderr
    assert kind.parse_clusters(result.stdout) == []


def test_half_made_cluster_is_listed_but_unusable_as_the_standin_models_it(
        real_kind: Path, kind_env: dict[str, str], node_container, tmp_path: Path):  # type: ignore[no-untyped-def]
    # What a `kind create` killed during kubeadm init leaves: a running node container, no admin.conf.
    name = _cluster_name()
    node_container(name)
    listed = run_kind(real_kind, kind.get_clusters(), kind_env)
    assert name in kind.parse_clusters(listed.stdout)
    nodes = run_kind(real_kind, kind.get_nodes(name), kind_env)
    assert nodes.stdout.split() == [f"{name}-control-plane"]
    real = run_kind(real_kind, kind.get_kubeconfig(name), kind_env)
    assert real.returncode == 1
    real_error = next(line for line in real.stderr.splitlines() if line.startswith("ERROR:"))
    assert real_error == (f'ERROR: failed to get cluster internal kubeconfig: command "podman exec --privileged '
                          f'{name}-control-plane cat /etc/kubernetes/admin.conf" failed with error: exit status 1')

    # The stand-in's interrupted create leaves the same thing, with the same words.
    state = tmp_path / "standin"
    env = {**standin_env(state), "KIND_EXPERIMENTAL_PROVIDER": "podman"}
    interrupted_create(state, name, env)
    standin = subprocess.run(["kind", *kind.get_kubeconfig(name)[1:]], env=env, capture_output=True, text=True)
    assert standin.returncode == 1
    assert next(line for line in standin.stderr.splitlines() if line.startswith("ERROR:")) == real_error
    standin_listed = subprocess.run(["kind", "get", "clusters"], env=env, capture_output=True, text=True)
    assert kind.parse_clusters(standin_listed.stdout) == [name]

    deleted = run_kind(real_kind, kind.delete_cluster(name, tmp_path / "kubeconfig"), kind_env)
    assert deleted.returncode == 0, deleted.stderr
    assert name not in kind.parse_clusters(run_kind(real_kind, kind.get_clusters(), kind_env).stdout)


def test_stopped_node_is_still_listed(real_kind: Path, kind_env: dict[str, str], node_container):  # type: ignore[no-untyped-def]
    # After a host or podman machine restart the nodes exist but do not run (issue 9 item 7).
    name = _cluster_name()
    node_container(name, running=False)
    assert name in kind.parse_clusters(run_kind(real_kind, kind.get_clusters(), kind_env).stdout)
    result = run_kind(real_kind, kind.get_kubeconfig(name), kind_env)
    assert result.returncode == 1
    assert "ERROR: failed to get cluster internal kubeconfig" in result.stderr


def test_bad_kind_config_fails_before_any_pull(real_kind: Path, kind_env: dict[str, str], tmp_path: Path):
    config = tmp_path / "kind.yaml"
    config.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n"
                      "  extraPortMapings: []\n")
    result = run_kind(real_kind, kind.create_cluster("e2e-bad", config, tmp_path / "kc", "60s"), kind_env, timeout=30)
    assert result.returncode == 1
    assert ("ERROR: failed to create cluster: unable to decode config: yaml: unmarshal errors:\n"
            "  line 5: field extraPortMapings not found in type v1alpha4.Node") in result.stderr
    assert "Ensuring node image" not in result.stderr  # nothing was pulled
    assert not (tmp_path / "kc").exists() and not any(Path(kind_env["HOME"]).iterdir())


# --- through the product -------------------------------------------------------------------------------

def test_up_without_a_pullable_node_image_fails_clearly(real_kind: Path, project: Project, tmp_path: Path):
    """`invoke e2e.up --only cluster` with the real kind: the product's rendered kind config passes kind's
    validation, the node image pull fails (no registry here, ~11 s of retries), and the failure is
    reported with kind's reason; nothing is left behind."""
    bin_dir = tmp_path / "real-kind-bin"
    bin_dir.mkdir()
    (bin_dir / "kind").symlink_to(real_kind)
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": f"{bin_dir}{os.pathsep}{project.env['PATH']}", "HOME": str(home)}
    result = project.run("e2e.up", "--only", "cluster", extra_env=env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    log = (project.last_run_dir() / "cluster.log").read_text()
    assert "Ensuring node image (kindest/node:" in log  # the rendered kind config passed kind's validation
    assert 'ERROR: failed to create cluster: failed to pull image "docker.io/kindest/node@sha256:' in log
    assert "FAILED cluster: `kind create cluster --name" in output
    assert "kindest/node" in output  # the reason reaches the terminal, not only the log
    listed = subprocess.run([str(real_kind), "get", "clusters"], capture_output=True, text=True,
                            env={**project.env, **env, "KIND_EXPERIMENTAL_PROVIDER": "podman"})
    name = project.env["INVOKE_E2E_CLUSTER_NAME"]
    assert name not in kind.parse_clusters(listed.stdout)  # kind removed its half-made node
    assert not (project.state / "state" / name / "kubeconfig").exists()
    assert not (home / ".kube").exists()
    # Known misreport (for the lead): the KB matches the registry DNS error as a service dependency
    # problem, and up says a cluster "was kept" that kind already deleted. When fixed, the asserts below run.
    misleading = [text for text in ("A dependency the service needs cannot be reached", "was kept for diagnosis")
                  if text in output]
    if misleading:
        pytest.xfail(f"e2e.up misreports kind's node image pull failure: {misleading}")
    assert "node image" in output.lower()
