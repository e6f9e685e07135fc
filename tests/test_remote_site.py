"""The remote host as a run's site: the config views and graph (pure), and the file operations,
kubeconfig tunnel and remembered ports against a real sshd on 127.0.0.1."""
from __future__ import annotations

import http.server
import json
import os
import socket
import stat
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubernaut_e2e.config import load_config
from kubernaut_e2e.errors import UsageError
from kubernaut_e2e.hosts import HostSpec
from kubernaut_e2e.remote_site import (CLEAN, SYNC_STEP, UP, HostCommandFailed, RemoteSite, host_view,
                                       listening_ports, local_view, open_site, with_source_sync)
from kubernaut_e2e.runner import Cancellation
from kubernaut_e2e.steps import build_registry
from tests.conftest import FAST_STACK
from tests.sshd import SSHServer, free_port, start_sshd

SPEC = HostSpec("build1", "ci", 2222)


def _cfg(tmp_path: Path, **values: object):  # type: ignore[no-untyped-def]
    return load_config({"stack": str(FAST_STACK), "source_dir": str(tmp_path / "src"),
                        "state_dir": str(tmp_path / "state"), "cluster_name": "c1", "host": "ci@build1:2222",
                        **values})


def test_the_host_view_puts_every_path_the_commands_get_in_the_hosts_folder(tmp_path: Path):
    cfg = _cfg(tmp_path)
    folder = Path("/home/ci/.local/state/kubernaut-e2e/c1")
    there = host_view(cfg, folder)
    assert there.source_dir == folder / "source"
    assert there.kubeconfig == folder / "state" / "c1" / "kubeconfig"
    assert there.rendered_kind_config == folder / "state" / "c1" / "kind-config.yaml"
    assert there.archive("gateway") == folder / "state" / "c1" / "archives" / "gateway.tar"
    assert there.dockerfile("gateway") == folder / "dockerfiles" / "gateway.Dockerfile"  # the stack's own
    assert cfg.dockerfile("gateway") == FAST_STACK.parent / "Dockerfile.service"  # unchanged here
    assert there.host_ports == cfg.host_ports and there.hosts == () and there.image_ref("gateway") == cfg.image_ref(
        "gateway")


def test_the_local_view_has_a_state_per_host_and_the_tunnels_ports(tmp_path: Path):
    cfg = _cfg(tmp_path)
    ports = {name: 40000 + i for i, name in enumerate(cfg.host_ports)}
    local = local_view(cfg, SPEC, ports)
    assert local.state_dir == cfg.state_dir / "hosts" / SPEC.slug
    assert local.kubeconfig.is_relative_to(local.state_dir) and local.runs_dir.is_relative_to(local.state_dir)
    assert local.url("gateway") == f"http://127.0.0.1:{ports['gateway-api']}"
    assert local.source_dir == cfg.source_dir and local.hosts == ()


def test_the_builds_need_the_synced_tree_and_nothing_else_changes():
    from tests.conftest import FAST_STACK as stack_file
    from kubernaut_e2e.stack import load_stack

    graph = build_registry(load_stack(stack_file)).graph()
    synced = with_source_sync(graph, mounts_in_source=True)
    assert set(synced.steps) == {*graph.steps, SYNC_STEP}
    assert synced.steps[SYNC_STEP].needs == ()
    for name, step in graph.steps.items():
        extra = (SYNC_STEP,) if name.startswith("build-") or name == "cluster" else ()
        assert synced.steps[name].needs == (*step.needs, *extra), name
    assert with_source_sync(graph, mounts_in_source=False).steps["cluster"].needs == graph.steps["cluster"].needs
    assert SYNC_STEP in synced.select(["images"]).steps  # --only images sends the tree first


def test_listening_ports_are_read_from_proc_net_tcp():
    text = ("  sl  local_address rem_address   st tx_queue rx_queue\n"
            "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n"  # 127.0.0.1:8080 LISTEN
            "   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000\n"  # established: not listening
            "   0: 00000000000000000000000000000000:4E20 00000000000000000000000000000000:0000 0A 0\n")
    assert listening_ports(text) == {8080, 20000}


# --- against a real sshd -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SSHServer, Path]]:
    """An sshd whose sessions keep their state in a folder of the test (XDG_STATE_HOME)."""
    root = tmp_path_factory.mktemp("site")
    with start_sshd(root / "sshd", env={"XDG_STATE_HOME": str(root / "remote-state")}) as server:
        yield server, root / "remote-state"


@pytest.fixture
def site(host: tuple[SSHServer, Path], tmp_path: Path) -> Iterator[RemoteSite]:
    server, _ = host
    opened = open_site(_cfg(tmp_path, host=""), server.spec, CLEAN, options=server.options())
    yield opened
    opened.close()


def test_files_are_made_tested_and_removed_on_the_host(site: RemoteSite, host: tuple[SSHServer, Path]):
    _, state_home = host
    assert site.folder == state_home / "kubernaut-e2e" / "c1"
    secret_dir = site.folder / "state" / "c1"
    site.private_dir(secret_dir)
    assert stat.S_IMODE(secret_dir.stat().st_mode) == 0o700
    site.write_private(secret_dir / "kind-config.yaml", "kind: Cluster\n")
    written = secret_dir / "kind-config.yaml"
    assert written.read_text() == "kind: Cluster\n" and stat.S_IMODE(written.stat().st_mode) == 0o600
    assert site.exists(written) and not site.exists(secret_dir / "nothing")
    site.remove(written)
    site.remove(written)  # absent is fine
    assert not written.exists()
    site.makedirs(site.folder / "source" / "coverdata")
    assert (site.folder / "source" / "coverdata").is_dir()
    with pytest.raises(AssertionError):
        site.remove_tree(state_home)  # never outside this tool's folder for the cluster
    site.remove_tree(site.folder)
    assert not site.folder.exists()


def test_a_failing_file_operation_names_the_host(site: RemoteSite, tmp_path: Path):
    blocker = site.folder / "file"
    site.makedirs(site.folder)
    site.write_private(blocker, "x")
    with pytest.raises(HostCommandFailed) as info:
        site.makedirs(blocker / "below")
    assert str(info.value).startswith(f"host {site.label}: could not create {blocker / 'below'}: ")
    site.remove_tree(site.folder)


def test_collect_brings_back_what_commands_wrote_on_the_host(site: RemoteSite, tmp_path: Path):
    runner = site.runner(Cancellation())

    def produce(folder: Path) -> None:
        runner.run(["sh", "-c", 'mkdir -p "$1/sub" && printf "node log\\n" > "$1/sub/kubelet.log"', "sh", str(folder)])

    site.collect(tmp_path / "bundle", produce)
    assert (tmp_path / "bundle" / "sub" / "kubelet.log").read_text() == "node log\n"
    assert not list(site.folder.glob("collect-*"))  # the scratch folder on the host is gone


def test_busy_ports_are_the_hosts_listening_ones(site: RemoteSite):
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        busy = listening.getsockname()[1]
        free = free_port()
        assert site.busy_ports([busy, free]) == {busy}


class _Api(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = json.dumps({"gitVersion": "v1.36.1"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_local_kubeconfig_reaches_the_hosts_api_server_through_a_tunnel_on_a_remembered_port(
        host: tuple[SSHServer, Path], tmp_path: Path):
    server, _ = host
    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    api_port = api.server_address[1]
    kubeconfig = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kind-c1",
        "clusters": [{"name": "kind-c1", "cluster": {"server": f"http://127.0.0.1:{api_port}"}}],
        "contexts": [{"name": "kind-c1", "context": {"cluster": "kind-c1", "user": "kind-c1"}}],
        "users": [{"name": "kind-c1", "user": {"token": "t0ken"}}]})
    cfg = _cfg(tmp_path, host="")
    try:
        site = open_site(cfg, server.spec, CLEAN, options=server.options())
        try:
            site.private_dir(site.cfg.kubeconfig.parent)
            site.write_private(site.cfg.kubeconfig, kubeconfig)  # as `kind create --kubeconfig` leaves it
            assert site.adopt_kubeconfig()  # the file kind wrote on the host
            local = yaml.safe_load(site.local.kubeconfig.read_text())
            port = int(local["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1])
            assert port != api_port
            assert stat.S_IMODE(site.local.kubeconfig.stat().st_mode) == 0o600
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=10) as resp:
                assert json.load(resp)["gitVersion"] == "v1.36.1"
        finally:
            site.close()
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=5)
        # A later task takes the same local port again: the kubeconfig written before stays valid.
        again = open_site(cfg, server.spec, CLEAN, options=server.options())
        try:
            assert again.adopt_kubeconfig(kubeconfig)
            assert again.tunnels["api-server"].local_port == port
            assert json.loads(again.local.cluster_state_dir.joinpath("tunnels.json").read_text())["ports"] == {
                "api-server": port}
        finally:
            again.remove_tree(again.folder)
            again.close()
        # Taken by something else meanwhile: any free port, and the kubeconfig follows it.
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the tunnel's closed connections linger
            squatter.bind(("127.0.0.1", port))
            squatter.listen(1)
            third = open_site(cfg, server.spec, CLEAN, options=server.options())
            try:
                assert third.adopt_kubeconfig(kubeconfig)
                moved = third.tunnels["api-server"].local_port
                assert moved != port and f":{moved}" in third.local.kubeconfig.read_text()
            finally:
                third.close()
    finally:
        api.shutdown()
        api.server_close()


def test_no_kubeconfig_on_the_host_is_false(site: RemoteSite):
    assert site.adopt_kubeconfig() is False
    assert not site.local.kubeconfig.exists()


def test_the_port_tunnels_replace_the_host_ports_for_local_clients(site: RemoteSite):
    site.open_ports()
    assert set(site.local.host_ports) == set(site.cfg.host_ports)
    for name, port in site.local.host_ports.items():
        assert site.tunnels[name].local_port == port
        assert site.tunnels[name].forward.remote_port == site.cfg.host_ports[name]
    assert len(set(site.local.host_ports.values())) == len(site.local.host_ports)
    assert os.stat(site.local.cluster_state_dir / "tunnels.json").st_mode & 0o077 == 0


def test_a_stack_compiled_on_this_machine_is_refused_for_a_host_before_connecting(tmp_path: Path):
    stack = tmp_path / "stack.yaml"
    stack.write_text(f"extends: {FAST_STACK}\nimages:\n  gateway:\n    dockerfile: null\n    build_args: null\n"
                     "    build: host\n"
                     "    package: ./cmd/gateway\n    base: scratch\n")
    cfg = _cfg(tmp_path, stack=str(stack))
    # build1 does not resolve: had it tried to connect, the error would name that instead.
    with pytest.raises(UsageError, match=r"host ci@build1:2222: images gateway of stack .* are `build: host`"):
        open_site(cfg, SPEC, UP)
