"""SSH tunnels to a remote environment: its Kind API server and its host ports, seen locally.

When the cluster runs on another host, Kind binds its API server and the services' host ports
on that host's loopback. The Kubernetes steps, `health`, `diagnose` and the suite run here, so
each of those ports is forwarded from a local port over the SSH connection (the same thing as
`ssh -L`; `direct-tcpip` channels of the open paramiko transport). `tunnels()` opens several
at once and closes them all when its block ends; a local port of 0 means any free one, and the
port really used is in the result. `tunnel_kubeconfig` makes the copy of the cluster's
kubeconfig that points at the local end of the API server's tunnel.

Fabric's own `Connection.forward_local` is not used: it binds inside its thread, so neither a
port in use nor the port chosen for 0 can be known before the block starts.
"""
from __future__ import annotations

import select
import socket
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from kubernaut_e2e.errors import UsageError

if TYPE_CHECKING:
    from fabric import Connection

#: Seconds to wait for the host to open a forwarded connection.
OPEN_TIMEOUT = 10.0


@dataclass(frozen=True)
class Forward:
    """A port to forward: `remote_host:remote_port` as seen from the host, to a local port."""

    name: str  # what it is, for messages: "api-server", "gateway", ...
    remote_port: int
    remote_host: str = "127.0.0.1"
    local_port: int = 0  # 0: any free port


@dataclass(frozen=True)
class Tunnel:
    """An open forward: connect to `local_host:local_port` to reach the remote end."""

    forward: Forward
    local_host: str
    local_port: int

    @property
    def address(self) -> str:
        return f"{self.local_host}:{self.local_port}"


class _Listener:
    """Accepts local connections for one forward; each one gets a channel to the remote end."""

    def __init__(self, transport: Any, forward: Forward, sock: socket.socket) -> None:
        self.transport = transport
        self.forward = forward
        self.sock = sock
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.open: set[Any] = set()  # sockets and channels to close at the end
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, name=f"tunnel-{forward.name}", daemon=True)

    def _accept(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.2)
            if not ready:
                continue
            try:
                client, peer = self.sock.accept()
            except OSError:
                return
            worker = threading.Thread(target=self._serve, args=(client, peer), daemon=True)
            with self.lock:
                self.threads.append(worker)
            worker.start()

    def _serve(self, client: socket.socket, peer: tuple[str, int]) -> None:
        with self.lock:
            self.open.add(client)
        try:
            channel = self.transport.open_channel(
                "direct-tcpip", (self.forward.remote_host, self.forward.remote_port), peer, timeout=OPEN_TIMEOUT)
        except Exception:  # noqa: BLE001 - nothing listens there (yet): the client sees a closed connection
            self._close(client)
            return
        with self.lock:
            self.open.add(channel)
        try:
            _relay(client, channel, self.stop)
        except Exception:  # noqa: BLE001 - either side went away: close both
            pass
        finally:
            self._close(channel)
            self._close(client)

    def _close(self, thing: Any) -> None:
        with self.lock:
            self.open.discard(thing)
        try:
            thing.close()
        except OSError:
            pass

    def close(self) -> None:
        """Stop accepting and close every connection. `stop` may be set before (all listeners at
        once: each accept loop sees it within 0.2 s, so closing many costs 0.2 s, not 0.2 s each)."""
        self.stop.set()
        self.thread.join(timeout=2)  # it polls `stop` every 0.2 s
        self.sock.close()
        with self.lock:
            things, workers = list(self.open), list(self.threads)
        for thing in things:
            self._close(thing)
        for worker in workers:
            worker.join(timeout=2)


def _relay(client: socket.socket, channel: Any, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes (or the tunnels are closed)."""
    while not stop.is_set():
        ready, _, _ = select.select([client, channel], [], [], 0.2)
        if client in ready:
            data = client.recv(65536)
            if not data:
                channel.shutdown_write()
                break
            channel.sendall(data)
        if channel in ready:
            data = channel.recv(65536)
            if not data:
                break
            client.sendall(data)
    # Drain what the remote end still sends after the client stopped writing.
    while not stop.is_set() and not channel.closed:
        ready, _, _ = select.select([channel], [], [], 0.2)
        if ready:
            data = channel.recv(65536)
            if not data:
                break
            client.sendall(data)


@contextmanager
def tunnels(connection: Connection, forwards: Sequence[Forward], *, local_host: str = "127.0.0.1",
            fallback: bool = False, avoid: Collection[int] = ()) -> Iterator[dict[str, Tunnel]]:
    """Open every forward (by name) over the connection; all are closed when the block ends.

    A local port that cannot be bound is a UsageError naming the forward, raised before the
    block starts, with the forwards already opened closed again; with `fallback`, a local
    port that is taken is only a preference, and any free port is used instead. A port chosen
    for 0 is never one of `avoid` (e.g. the host ports a local environment publishes).
    """
    connection.open()
    transport = connection.transport
    listeners: list[_Listener] = []
    opened: dict[str, Tunnel] = {}
    try:
        for forward in forwards:
            sock = _listen(forward, local_host, fallback, avoid)
            listener = _Listener(transport, forward, sock)
            listeners.append(listener)
            listener.thread.start()
            opened[forward.name] = Tunnel(forward, local_host, int(sock.getsockname()[1]))
        yield opened
    finally:
        for listener in listeners:
            listener.stop.set()
        for listener in listeners:
            listener.close()


def _listen(forward: Forward, local_host: str, fallback: bool, avoid: Collection[int]) -> socket.socket:
    """A listening socket for the forward's local end (its port, else any with `fallback`)."""
    ports = [forward.local_port, 0] if fallback and forward.local_port else [forward.local_port]
    for port in ports:
        kept: list[socket.socket] = []  # ports in `avoid` stay held until another one is found
        try:
            while True:
                sock = socket.socket(socket.AF_INET6 if ":" in local_host else socket.AF_INET)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((local_host, port))
                except OSError as exc:
                    sock.close()
                    if port == ports[-1]:
                        raise UsageError(f"tunnel {forward.name}: cannot listen on {local_host}:{port} "
                                         f"({exc.strerror or exc}); is another environment using that port?"
                                         ) from None
                    break
                if port == 0 and sock.getsockname()[1] in avoid and len(kept) < 64:
                    kept.append(sock)
                    continue
                sock.listen(16)
                return sock
        finally:
            for held in kept:
                held.close()
    raise AssertionError("unreachable")


def _current_cluster(doc: dict[str, Any], cluster: str | None) -> dict[str, Any]:
    clusters = {c.get("name"): c for c in doc.get("clusters") or []}
    if cluster is None:
        contexts = {c.get("name"): c for c in doc.get("contexts") or []}
        current = contexts.get(doc.get("current-context")) or {}
        cluster = (current.get("context") or {}).get("cluster")
        if cluster is None and len(clusters) == 1:
            cluster = next(iter(clusters))
    found = clusters.get(cluster)
    if found is None or not (found.get("cluster") or {}).get("server"):
        raise UsageError(f"kubeconfig: no cluster {cluster!r} with a server")
    return found["cluster"]


def _parse(kubeconfig: str) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(kubeconfig)
    except yaml.YAMLError as exc:
        raise UsageError(f"kubeconfig: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise UsageError("kubeconfig: not a mapping")
    return doc


def api_server(kubeconfig: str, cluster: str | None = None) -> tuple[str, int]:
    """The API server's host and port in a kubeconfig (its current context's cluster). Pure."""
    url = urlsplit(_current_cluster(_parse(kubeconfig), cluster)["server"])
    if not url.hostname:
        raise UsageError(f"kubeconfig: server {url.geturl()!r} has no host")
    return url.hostname, url.port or (443 if url.scheme == "https" else 80)


def tunnel_kubeconfig(kubeconfig: str, local_port: int, *, local_host: str = "127.0.0.1",
                      cluster: str | None = None) -> str:
    """A copy of `kubeconfig` whose server is the local end of the API server's tunnel. Pure.

    When the original server is a name rather than an address, `tls-server-name` keeps the
    certificate check against that name.
    """
    import yaml

    doc = _parse(kubeconfig)
    entry = _current_cluster(doc, cluster)
    url = urlsplit(entry["server"])
    host = f"[{local_host}]" if ":" in local_host else local_host
    entry["server"] = urlunsplit((url.scheme, f"{host}:{local_port}", url.path, url.query, url.fragment))
    if url.hostname and not _is_address(url.hostname) and "tls-server-name" not in entry:
        entry["tls-server-name"] = url.hostname
    return yaml.safe_dump(doc, sort_keys=False)


def _is_address(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def write_tunnel_kubeconfig(path: Path, kubeconfig: str, tunnel: Tunnel, *, cluster: str | None = None) -> Path:
    """Write (mode 0600) the copy of `kubeconfig` that reaches its API server through `tunnel`."""
    from kubernaut_e2e.context import write_private

    write_private(path, tunnel_kubeconfig(kubeconfig, tunnel.local_port, local_host=tunnel.local_host,
                                          cluster=cluster))
    return path
