"""An HTTP proxy in front of a Kubernetes API server that injects a bad day, for tests.

The product talks to it exactly as to the API server (its kubeconfig names the proxy), so the
real `kubernetes` client configuration and the real HTTP stack see real faults:

    proxy = FaultProxy(kubeapi.url).start()
    proxy.fail(500, count=3)                 # the next 3 requests get HTTP 500 (a Status body)
    proxy.fail(500, seconds=0.3)             # every request for 0.3 s gets HTTP 500
    proxy.fail(429, count=1, retry_after=1)  # "Too Many Requests, retry after 1 s"
    proxy.reset(count=2)                     # the next 2 connections are reset (RST), no answer
    proxy.hang()                             # requests are read and never answered
    proxy.clear()                            # back to forwarding everything
    proxy.requests                           # [(method, path, outcome)] in arrival order

Forwarding keeps watch streams streaming (chunked, line by line). This is a fault injector,
not an API server: everything it answers comes from the upstream server it stands in front of.
"""
from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer", "upgrade"}


@dataclass
class _Fault:
    kind: str  # status | reset | hang
    status: int = 0
    count: int | None = None  # requests left (None: until `until`, or forever)
    until: float | None = None
    retry_after: str | None = None
    methods: tuple[str, ...] = ()


class FaultProxy:
    def __init__(self, upstream: str, port: int = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._port = port
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._released = threading.Event()
        self.requests: list[tuple[str, str, str]] = []
        self._server: ThreadingHTTPServer | None = None

    # --- control ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        server = ThreadingHTTPServer(("127.0.0.1", self._port), _Handler)
        server.daemon_threads = True
        server.proxy = self  # type: ignore[attr-defined]
        self._server = server
        self._port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def fail(self, status: int, *, count: int | None = None, seconds: float | None = None,
             retry_after: float | None = None, methods: tuple[str, ...] = ()) -> None:
        self._add(_Fault("status", status, count, time.monotonic() + seconds if seconds else None,
                         None if retry_after is None else f"{retry_after:g}", methods))

    def reset(self, *, count: int | None = None, methods: tuple[str, ...] = ()) -> None:
        self._add(_Fault("reset", count=count, methods=methods))

    def hang(self, *, methods: tuple[str, ...] = ()) -> None:
        self._released.clear()
        self._add(_Fault("hang", methods=methods))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
        self._released.set()

    def outcomes(self, method: str | None = None) -> list[str]:
        with self._lock:
            return [o for m, _, o in self.requests if method in (None, m)]

    def _next(self, method: str, path: str) -> _Fault | None:
        now = time.monotonic()
        with self._lock:
            for fault in list(self._faults):
                if fault.until is not None and now > fault.until:
                    self._faults.remove(fault)
                    continue
                if fault.methods and method not in fault.methods:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                self.requests.append((method, path, fault.kind if fault.kind != "status" else str(fault.status)))
                return fault
            self.requests.append((method, path, "forwarded"))
            return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _any(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        fault = proxy._next(self.command, self.path)
        if fault is None:
            self._forward(proxy, body)
        elif fault.kind == "hang":
            proxy._released.wait(600)
            self.close_connection = True
        elif fault.kind == "reset":
            # SO_LINGER 0 makes close() send RST: "connection reset by peer" on the client.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
        else:
            reason = {500: "InternalError", 503: "ServiceUnavailable", 429: "TooManyRequests"}.get(
                fault.status, "InternalError")
            payload = json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": f"injected HTTP {fault.status} by the fault proxy",
                                  "reason": reason, "code": fault.status}).encode()
            self.send_response(fault.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("X-Fault-Header", "a header no error message should show")
            if fault.retry_after is not None:
                self.send_header("Retry-After", fault.retry_after)
            self.end_headers()
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    def _forward(self, proxy: FaultProxy, body: bytes | None) -> None:
        conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        chunked = resp.getheader("Transfer-Encoding", "").lower() == "chunked"
        self.send_response(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        if not chunked:
            data = resp.read()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while True:
            data = resp.read1(65536)
            if not data:
                break
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        conn.close()


def proxied_kubeconfig(kubeapi, path, proxy: FaultProxy):  # type: ignore[no-untyped-def]
    """A kubeconfig for the stand-in API server, with the server URL replaced by the proxy's."""
    from pathlib import Path

    kubeapi.kubeconfig(path)
    target = Path(path)
    target.write_text(target.read_text().replace(kubeapi.url, proxy.url))
    return target
