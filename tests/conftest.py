"""Shared fixtures: a real podman set up for this machine, a fake Kubernaut tree, and a way to
run `invoke` as a subprocess with the stand-in `kind` first on PATH."""
from __future__ import annotations

import http.server
import json
import os
import threading
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

_TEST_DOCKERFILE = """\
# Test image: FROM scratch + a static binary, so the real build/save/load path runs offline.
FROM scratch
ARG TARGETARCH
ARG GO_VERSION
LABEL e2e.target-arch=${TARGETARCH} e2e.go-version=${GO_VERSION}
COPY hello /usr/local/bin/{svc}
ENTRYPOINT ["/usr/local/bin/{svc}"]
"""


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
    session keeps such damage away from the machine and from the next run. vfs: no overlay
    mounts needed, and the test images are a few kB.
    """
    root = tmp_path_factory.mktemp("podman-store")
    path = root / "storage.conf"
    path.write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{root / "run"}"\ngraphroot = "{root / "graph"}"\n')
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
    dockerfiles: Path
    state: Path
    kind_state: Path
    images: dict[str, str]
    env: dict[str, str]

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


CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: remediationrequests.kubernaut.ai
spec:
  group: kubernaut.ai
  names: {kind: RemediationRequest, listKind: RemediationRequestList, plural: remediationrequests, singular: remediationrequest}
  scope: Namespaced
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
      subresources: {status: {}}
"""

MIGRATIONS = {
    "001_audit_events.sql": "-- +goose Up\nCREATE TABLE audit_events (id bigserial PRIMARY KEY);\n"
                            "-- +goose Down\nDROP TABLE audit_events;\n",
    "002_action_traces.sql": "-- +goose Up\n-- +goose StatementBegin\nCREATE TABLE IF NOT EXISTS "
                             "resource_action_traces (id bigserial PRIMARY KEY);\n-- +goose StatementEnd\n"
                             "-- +goose Down\nDROP TABLE resource_action_traces;\n",
}
#: What the migration Job prints when the tables above exist (scripted on the API stand-in).
MIGRATION_LOG = "applied 00000001\napplied 00000002\nTABLES: audit_events,resource_action_traces\n"


def make_source_tree(root: Path, hello: Path | None = None) -> Path:
    """A Kubernaut-shaped tree: cmd/<svc>, go.mod, CRDs and goose migrations."""
    src = root / "kubernaut"
    for svc in ("gateway", "datastorage"):
        (src / "cmd" / svc).mkdir(parents=True)
        (src / "cmd" / svc / "main.go").write_text("package main\n\nfunc main() {}\n")
    (src / "go.mod").write_text("module github.com/jordigilh/kubernaut\n\ngo 1.24.6\n")
    (src / "config" / "crd" / "bases").mkdir(parents=True)
    (src / "config" / "crd" / "bases" / "kubernaut.ai_remediationrequests.yaml").write_text(CRD)
    (src / "migrations").mkdir()
    for name, text in MIGRATIONS.items():
        (src / "migrations" / name).write_text(text)
    if hello is not None:
        shutil.copy(hello, src / "hello")
    return src


@pytest.fixture
def kubeapi():  # type: ignore[no-untyped-def]
    """The Kubernetes API stand-in on 127.0.0.1, spoken to over HTTP by the real client."""
    from tests.kubeapi import KubeAPI

    api = KubeAPI().start()
    yield api
    api.stop()
    assert not api.errors, api.errors


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        code = self.server.status if self.path == "/health" else 404  # type: ignore[attr-defined]
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok" if code == 200 else b"no")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_ports():  # type: ignore[no-untyped-def]
    """Two local HTTP servers standing in for the Kind host ports of the Gateway and DataStorage."""
    servers = []
    for _ in range(2):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
        srv.status = 200  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    yield {"gateway": servers[0], "datastorage": servers[1]}
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def project(tmp_path: Path, podman_env: dict[str, str], hello_binary: Path):  # type: ignore[no-untyped-def]
    from tests.kindstate import standin_env

    tag = uuid.uuid4().hex[:8]
    dockerfiles = tmp_path / "dockerfiles"
    dockerfiles.mkdir()
    for svc in ("gateway", "datastorage"):
        (dockerfiles / f"Dockerfile.{svc}").write_text(_TEST_DOCKERFILE.replace("{svc}", svc))
    images = {svc: f"localhost/e2etest-{svc}-{tag}:test" for svc in ("gateway", "datastorage")}
    kind_state = tmp_path / "kind-state"
    kind_state.mkdir()
    env = standin_env(kind_state)
    env.update({
        "CONTAINERS_CONF": podman_env["CONTAINERS_CONF"],
        "CONTAINERS_STORAGE_CONF": podman_env["CONTAINERS_STORAGE_CONF"],
        "CI": "true",
        "INVOKE_E2E_SOURCE_DIR": str(make_source_tree(tmp_path, hello_binary)),
        "INVOKE_E2E_DOCKERFILE_DIR": str(dockerfiles),
        "INVOKE_E2E_STATE_DIR": str(tmp_path / "state"),
        "INVOKE_E2E_CLUSTER_NAME": f"e2e-{tag}",
        "INVOKE_E2E_GATEWAY_IMAGE": images["gateway"],
        "INVOKE_E2E_DATASTORAGE_IMAGE": images["datastorage"],
    })
    proj = Project(Path(env["INVOKE_E2E_SOURCE_DIR"]), dockerfiles, tmp_path / "state",
                   kind_state, images, env)
    yield proj
    # Never leave test images in the machine's store, whatever the test did.
    proj.podman("rmi", "--force", *images.values())
    proj.podman("image", "prune", "--force", "--filter", "label=io.kubernaut.e2e.inputs")


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
