"""SSH tunnels over a real sshd: local ports reach servers on the host's side; kubeconfig copies
point at the tunnel (the real kubernetes client goes through it); all close with the block."""
from __future__ import annotations

import http.server
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubernaut_e2e.errors import UsageError
from kubernaut_e2e.tunnel import Forward, api_server, tunnel_kubeconfig, tunnels, write_tunnel_kubeconfig
from tests.sshd import free_port, ssh_connection, sshd  # noqa: F401


class _Named(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = f"{self.server.name} {self.path}".encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def services() -> Iterator[dict[str, int]]:
    """Two HTTP servers on the host's loopback (the host is this machine), standing in for the
    Gateway's and DataStorage's Kind host ports; name -> port."""
    servers = []
    for name in ("gateway", "datastorage"):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Named)
        srv.name = name  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    yield {srv.name: srv.server_address[1] for srv in servers}  # type: ignore[attr-defined]
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _get(port: int, path: str = "/health") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return resp.read().decode()


def test_forwards_reach_the_hosts_ports_and_close_with_the_block(ssh_connection, services: dict[str, int]):
    wanted = free_port()
    forwards = [Forward("gateway", services["gateway"]), Forward("datastorage", services["datastorage"],
                                                                  local_port=wanted)]
    with tunnels(ssh_connection, forwards) as opened:
        gw, ds = opened["gateway"], opened["datastorage"]
        assert gw.local_port not in (0, services["gateway"]) and ds.local_port == wanted
        assert _get(gw.local_port) == "gateway /health"
        assert _get(ds.local_port, "/x?y=1") == "datastorage /x?y=1"
        results: list[str] = []
        workers = [threading.Thread(target=lambda: results.append(_get(gw.local_port, "/c"))) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(15)
        assert results == ["gateway /c"] * 8
    for tunnel in (gw, ds):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", tunnel.local_port), timeout=2).close()


def test_nothing_listening_on_the_host_closes_that_connection_only(ssh_connection, services: dict[str, int]):
    with tunnels(ssh_connection, [Forward("dead", free_port()), Forward("gateway", services["gateway"])]) as opened:
        with pytest.raises(OSError):
            _get(opened["dead"].local_port)
        assert _get(opened["gateway"].local_port) == "gateway /health"


def test_a_local_port_in_use_is_one_line_and_opens_nothing(ssh_connection, services: dict[str, int]):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        first = free_port()
        with pytest.raises(UsageError) as info:
            with tunnels(ssh_connection, [Forward("gateway", services["gateway"], local_port=first),
                                          Forward("datastorage", services["datastorage"], local_port=port)]):
                pytest.fail("the block must not start")
    assert str(info.value).startswith(f"tunnel datastorage: cannot listen on 127.0.0.1:{port}")
    with pytest.raises(OSError):  # the forward opened before the failure was closed again
        socket.create_connection(("127.0.0.1", first), timeout=2).close()


_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: kind-a
  cluster: {server: "https://127.0.0.1:41234", certificate-authority-data: Q0E=}
- name: other
  cluster: {server: "https://api.example.com:6443"}
contexts:
- name: kind-a
  context: {cluster: kind-a, user: kind-a}
current-context: kind-a
users:
- name: kind-a
  user: {token: t}
"""


def test_kubeconfig_copies_point_at_the_tunnel():
    assert api_server(_KUBECONFIG) == ("127.0.0.1", 41234)
    assert api_server(_KUBECONFIG, "other") == ("api.example.com", 6443)
    doc = yaml.safe_load(tunnel_kubeconfig(_KUBECONFIG, 5555))
    clusters = {c["name"]: c["cluster"] for c in doc["clusters"]}
    assert clusters["kind-a"] == {"server": "https://127.0.0.1:5555", "certificate-authority-data": "Q0E="}
    assert clusters["other"]["server"] == "https://api.example.com:6443"  # only the current one moves
    named = yaml.safe_load(tunnel_kubeconfig(_KUBECONFIG, 5556, cluster="other"))
    other = {c["name"]: c["cluster"] for c in named["clusters"]}["other"]
    assert other == {"server": "https://127.0.0.1:5556", "tls-server-name": "api.example.com"}
    with pytest.raises(UsageError, match="kubeconfig: no cluster 'nope'"):
        api_server(_KUBECONFIG, "nope")


def test_the_kubernetes_client_reaches_the_api_server_through_the_tunnel(ssh_connection, kubeapi, tmp_path: Path):
    from kubernaut_e2e.kube import Kube, KubeError

    original = Path(kubeapi.kubeconfig(tmp_path / "remote-kubeconfig")).read_text()
    host, port = api_server(original)
    local = tmp_path / "kubeconfig"
    with tunnels(ssh_connection, [Forward("api-server", port, remote_host=host)]) as opened:
        write_tunnel_kubeconfig(local, original, opened["api-server"])
        assert (local.stat().st_mode & 0o777) == 0o600
        assert api_server(local.read_text()) == ("127.0.0.1", opened["api-server"].local_port) != (host, port)
        kube = Kube(local, request_timeout=10)
        try:
            names = [ns["metadata"]["name"] for ns in kube.request("GET", "/api/v1/namespaces")["items"]]
        finally:
            kube.close()
        assert "default" in names
    kube = Kube(local, request_timeout=3)
    try:
        with pytest.raises(KubeError, match="no answer from"):  # the tunnel is closed: nothing answers
            kube.request("GET", "/api/v1/namespaces")
    finally:
        kube.close()
