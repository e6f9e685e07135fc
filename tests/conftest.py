"""Shared fixtures: a real podman set up for this machine, a fake Kubernaut tree, and a way to
run `invoke` as a subprocess with the stand-in `kind` first on PATH."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"

# The real_cluster tier's fixtures (a real control plane, started once per session on first use).
pytest_plugins = ("tests.realcluster",)

# A static binary: FROM scratch images need no base image (nothing can be pulled here).
_HELLO_C = r"""
#include <stdio.h>
int main(void) { puts("kubernaut stand-in service"); return 0; }
"""

#: The fast tier's stack: the default stack with images that can be built here (see its file).
FAST_STACK = TESTS / "stacks" / "fast" / "stack.yaml"
#: A source tree shaped like Kubernaut upstream (see its README.md).
KUBERNAUT_FIXTURE = TESTS / "fixtures" / "kubernaut"
#: Local stand-ins for the third-party images the stack preloads (the fast stack names them).
PRELOAD_IMAGES = ("localhost/e2etest-postgres:16", "localhost/e2etest-redis:7")


@pytest.fixture(scope="session")
def containers_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """podman on these machines needs runc and no default ulimits (see shared/notes/machine.md)."""
    path = tmp_path_factory.mktemp("podman") / "containers.conf"
    path.write_text('[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n')
    return path


@pytest.fixture(scope="session")
def storage_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A podman image store of the test session's own, not the machine's.

    Tests kill podman mid-build on purpose (fail-fast, interrupts); podman 4.3 can leave a
    half-committed image behind that breaks every later lookup in that store. A store per
    session keeps such damage away from the machine and from the next run (and each `project`
    gets a store of its own on top of it). vfs: no overlay mounts needed, and the test images
    are a few kB.
    """
    return write_storage_conf(tmp_path_factory.mktemp("podman-store"))


def write_storage_conf(root: Path, *, read_only_below: Path | None = None) -> Path:
    """`root/storage.conf`: a vfs store in `root`; with `read_only_below` (another store's
    conf), that store's images are seen here too, read-only."""
    text = f'[storage]\ndriver = "vfs"\nrunroot = "{root / "run"}"\ngraphroot = "{root / "graph"}"\n'
    if read_only_below is not None:
        text += f'[storage.options]\nadditionalimagestores = ["{read_only_below.parent / "graph"}"]\n'
    root.mkdir(exist_ok=True)
    path = root / "storage.conf"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def podman_env(containers_conf: Path, storage_conf: Path) -> dict[str, str]:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: .ci/run installs it (apt-get install podman runc)")
    return {**os.environ, "CONTAINERS_CONF": str(containers_conf), "CONTAINERS_STORAGE_CONF": str(storage_conf)}


@pytest.fixture(scope="session")
def hello_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hello")
    (d / "hello.c").write_text(_HELLO_C)
    subprocess.run(["gcc", "-static", "-Os", "-o", str(d / "hello"), str(d / "hello.c")], check=True)
    return d / "hello"


@dataclass(frozen=True)
class Project:
    """One test's world: a Kubernaut-like source tree, Dockerfiles, state and kind state."""

    source: Path
    stack: Path
    state: Path
    kind_state: Path
    images: dict[str, str]
    env: dict[str, str]
    host_ports: dict[str, int]

    def run(self, *args: str, timeout: float = 300, extra_env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT,
                              env={**self.env, **(extra_env or {})}, capture_output=True,
                              text=True, timeout=timeout)

    def kind_calls(self) -> list[dict]:
        from tests.kindstate import read_calls

        return read_calls(self.kind_state)

    def last_run_dir(self) -> Path:
        runs = sorted((self.state / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
        return runs[-1]

    def timings(self) -> dict:
        return json.loads((self.last_run_dir() / "timings.json").read_text())

    def podman(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                              check=check)

    def image_exists(self, ref: str) -> bool:
        return self.podman("image", "exists", ref).returncode == 0


#: What the migrations Job prints for the fixture tree's migrations (scripted on the API stand-in):
#: the final schema, after later migrations dropped and renamed tables.
MIGRATION_LOG = ("applied 00000001\napplied 00000002\napplied 00000003\napplied 00000004\napplied 00000005\n"
                 "VERSION: 5\nTABLES: action_type_catalog,audit_events,notification_audit,retention_operations\n")


def make_source_tree(root: Path, hello: Path | None = None) -> Path:
    """A copy of the Kubernaut-shaped fixture tree (tests/fixtures/kubernaut) under `root`."""
    src = root / "kubernaut"
    shutil.copytree(KUBERNAUT_FIXTURE, src)
    if hello is not None:
        shutil.copy(hello, src / "hello")
    return src


#: Where the ports for the servers tests start come from: below the kernel's ephemeral range
#: (where bind(0) and every outgoing connection take theirs) and below the stack's default host
#: ports. Each xdist worker has a block of its own and hands its ports out in turn, so a port
#: given to one test is not given to another, here or in the other worker, while it may be in
#: use, and nothing else takes it before its server binds it.
_PORT_RANGE = range(10000, 18000)
_PORT_TURN = itertools.count()


def _worker_ports() -> range:
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    size = len(_PORT_RANGE) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    start = _PORT_RANGE.start + index * size
    return range(start, start + size)


def _bindable(port: int) -> bool:
    import socket

    with socket.socket() as sock:  # the wildcard address: it clashes with any listener on the port
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` distinct ports nothing is bound to now, from this worker's block (see _PORT_RANGE)."""
    block = _worker_ports()
    found: list[int] = []
    for _ in block:
        port = block[next(_PORT_TURN) % len(block)]
        if _bindable(port):
            found.append(port)
            if len(found) == count:
                return found
    raise RuntimeError(f"fewer than {count} free ports in {block}")


def host_ports_setting(ports: dict[str, int]) -> str:
    return ",".join(f"{name}={port}" for name, port in ports.items())


@pytest.fixture(scope="session")
def preload_images(podman_env: dict[str, str], hello_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """Build the third-party image stand-ins once per session, in the session's own store."""
    ctx = tmp_path_factory.mktemp("preload")
    shutil.copy(hello_binary, ctx / "hello")
    (ctx / "Containerfile").write_text("FROM scratch\nCOPY hello /hello\nENTRYPOINT [\"/hello\"]\n")
    for ref in PRELOAD_IMAGES:
        subprocess.run(["podman", "build", "-q", "-t", ref, str(ctx)], env=podman_env, check=True,
                       capture_output=True)
    return PRELOAD_IMAGES


@pytest.fixture
def kubeapi():  # type: ignore[no-untyped-def]
    """The Kubernetes API stand-in on 127.0.0.1, spoken to over HTTP by the real client."""
    from tests.kubeapi import KubeAPI

    api = KubeAPI().start()
    yield api
    api.stop()
    assert not api.errors, api.errors


@pytest.fixture
def project(tmp_path: Path, podman_env: dict[str, str], hello_binary: Path, preload_images: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """A world of one test: the fast stack, a source tree, its own cluster name (so its own image
    tags), free host ports that the stand-in kind holds (and answers HTTP on) while its cluster
    exists, and private state folders."""
    from kubernaut_e2e.stack import load_stack
    from tests.kindstate import standin_env

    tag = uuid.uuid4().hex[:8]
    cluster = f"e2e-{tag}"
    stack = load_stack(FAST_STACK)
    images = {i.name: f"{i.repository}:{cluster}" for i in stack.images}
    ports = dict(zip((p.name for p in stack.cluster.ports), free_ports(len(stack.cluster.ports))))
    kind_state = tmp_path / "kind-state"
    kind_state.mkdir()
    env = standin_env(kind_state)
    env.update({
        "CONTAINERS_CONF": podman_env["CONTAINERS_CONF"],
        # A store of the test's own: a build this test kills mid-commit cannot break the next
        # test's lookups (podman 4.3), however tests are ordered or spread over xdist workers.
        # The session's store, holding the preload images, is seen through it read-only.
        "CONTAINERS_STORAGE_CONF": str(write_storage_conf(
            tmp_path / "podman-store", read_only_below=Path(podman_env["CONTAINERS_STORAGE_CONF"]))),
        "CI": "true",
        "KIND_STANDIN_PUBLISH_PORTS": "1",
        "INVOKE_E2E_STACK": str(FAST_STACK),
        "INVOKE_E2E_SOURCE_DIR": str(make_source_tree(tmp_path, hello_binary)),
        "INVOKE_E2E_STATE_DIR": str(tmp_path / "state"),
        "INVOKE_E2E_CLUSTER_NAME": cluster,
        "INVOKE_E2E_HOST_PORTS": host_ports_setting(ports),
    })
    proj = Project(Path(env["INVOKE_E2E_SOURCE_DIR"]), FAST_STACK, tmp_path / "state", kind_state, images,
                   env, ports)
    yield proj
    # Never leave a published port or a test image behind, whatever the test did.
    subprocess.run([str(TESTS / "bin" / "kind"), "delete", "clusters", "--all"],
                   env={**env, "KIND_EXPERIMENTAL_PROVIDER": "podman"}, capture_output=True)
    proj.podman("rmi", "--force", *images.values())
    proj.podman("image", "prune", "--force", "--filter", f"label=io.kubernaut.e2e.cluster={cluster}")


@pytest.fixture
def small_fs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A tiny tmpfs (a disk that fills up, or a read-only one) mounted under tmp_path.

    Real ENOSPC/EROFS from the kernel, for the disk-full and unwritable-state-dir tests. Needs
    root with CAP_SYS_ADMIN, which the CI machine (and this one) has.
    """
    mounted: list[Path] = []

    def mount(size: str = "1m", read_only: bool = False) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs ({done.stderr.strip()}): these tests need root with CAP_SYS_ADMIN")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
