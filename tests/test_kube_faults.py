"""kubernaut_e2e.kube on a bad day: HTTP 500 bursts, 429, resets, refused connections, a server
that never answers, and Ctrl-C in the middle of a call. The real `kubernetes` client config and
urllib3 talk to the API stand-in through tests/faultproxy.py."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from kubernaut_e2e.errors import Cancelled
from kubernaut_e2e.kube import Kube, KubeError
from kubernaut_e2e.readiness import wait_deployment
from kubernaut_e2e.runner import Cancellation
from tests.faultproxy import FaultProxy, proxied_kubeconfig

NS = "default"


@pytest.fixture
def proxy(kubeapi):  # type: ignore[no-untyped-def]
    p = FaultProxy(kubeapi.url).start()
    yield p
    p.stop()


@pytest.fixture
def kubeconfig(tmp_path: Path, kubeapi, proxy: FaultProxy) -> Path:  # type: ignore[no-untyped-def]
    return proxied_kubeconfig(kubeapi, tmp_path / "kubeconfig", proxy)


def _cm(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS}, "data": {"k": "v"}}


def test_a_short_burst_of_http_500_is_retried(kubeconfig: Path, proxy: FaultProxy):
    kube = Kube(kubeconfig)
    proxy.fail(500, seconds=0.3)
    started = time.monotonic()
    assert kube.apply(_cm("burst")).action == "created"
    assert time.monotonic() - started < 10
    assert "500" in proxy.outcomes() and proxy.outcomes()[-1] == "forwarded"


def test_429_waits_for_retry_after(kubeconfig: Path, proxy: FaultProxy):
    kube = Kube(kubeconfig)
    proxy.fail(429, count=1, retry_after=1)
    started = time.monotonic()
    assert kube.get("ConfigMap", "nothing", NS) is None  # 404 after the retry: not an error
    assert time.monotonic() - started >= 0.9
    assert proxy.outcomes() == ["429", "forwarded"]


def test_reset_connections_are_retried(kubeconfig: Path, proxy: FaultProxy):
    kube = Kube(kubeconfig)
    proxy.reset(count=2)
    assert kube.list("ConfigMap", NS) == []
    assert proxy.outcomes() == ["reset", "reset", "forwarded"]


def test_a_post_is_not_repeated_after_a_500(kubeconfig: Path, proxy: FaultProxy):
    kube = Kube(kubeconfig)
    proxy.fail(500, count=1, methods=("POST",))
    with pytest.raises(KubeError) as info:
        kube.create(_cm("once"))
    assert info.value.status == 500
    assert proxy.outcomes("POST") == ["500"]  # the server may have created it: not sent twice


def test_persistent_error_is_one_readable_line(kubeconfig: Path, proxy: FaultProxy):
    from kubernaut_e2e.kube import RetryPolicy

    kube = Kube(kubeconfig, retry=RetryPolicy(attempts=3, backoff=0.05))
    proxy.fail(503)
    started = time.monotonic()
    with pytest.raises(KubeError) as info:
        kube.get("ConfigMap", "x", NS)
    assert time.monotonic() - started < 5
    text = str(info.value)
    assert text == (f"Kubernetes API: HTTP 503 ServiceUnavailable: GET /api/v1/namespaces/{NS}/configmaps/x: "
                    "injected HTTP 503 by the fault proxy (after 3 attempts)")
    assert "\n" not in text and "X-Fault-Header" not in text and "HTTP response headers" not in text
    assert (info.value.status, info.value.reason) == (503, "ServiceUnavailable")


def test_refused_then_up_is_retried_and_refused_for_good_is_one_line(tmp_path: Path, kubeapi):
    from kubernaut_e2e.kube import RetryPolicy

    with socket_port() as port:
        late = FaultProxy(kubeapi.url, port=port)
        config = proxied_kubeconfig(kubeapi, tmp_path / "kc", late)
    kube = Kube(config)
    timer = threading.Timer(0.5, late.start)
    timer.start()
    try:
        assert kube.list("Namespace") is not None  # refused for 0.5 s, then answered
    finally:
        timer.join()
        late.stop()
    gone = Kube(config, retry=RetryPolicy(attempts=3, backoff=0.05))
    with pytest.raises(KubeError) as info:
        gone.list("Namespace")
    assert str(info.value).startswith("Kubernetes API: GET /api/v1/namespaces: no answer from http://127.0.0.1:")
    assert "connection refused after 3 attempts" in str(info.value)
    assert info.value.status == 0


def test_cancel_ends_a_call_the_server_never_answers(kubeconfig: Path, proxy: FaultProxy):
    cancellation = Cancellation()
    kube = Kube(kubeconfig, cancellation=cancellation)
    proxy.hang()
    threading.Timer(0.5, cancellation.interrupt, args=("SIGINT",)).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        kube.get("ConfigMap", "x", NS)
    assert time.monotonic() - started < 2


def test_a_wait_with_a_short_timeout_ends_near_it_on_a_silent_server(kubeconfig: Path, proxy: FaultProxy):
    kube = Kube(kubeconfig)
    proxy.hang()
    started = time.monotonic()
    with pytest.raises(KubeError, match="no answer"):
        wait_deployment(kube, NS, "gateway", "app=gateway", 3, Cancellation())
    took = time.monotonic() - started
    assert took < 8, took  # the wait's 3 s (plus one short attempt), not 30 s x retries


def test_watch_streams_through_and_is_interruptible(kubeconfig: Path, proxy: FaultProxy, kubeapi):
    kubeapi.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": NS,
                                                                    "labels": {"app": "w"}},
                    "spec": {"containers": [{"name": "c", "image": "x"}]}})
    cancellation = Cancellation()
    kube = Kube(kubeconfig, cancellation=cancellation)
    seen = [p["metadata"]["name"] for p in kube.watch_pods(NS, "app=w", timeout=1)]
    assert seen and seen[0] == "p1"
    proxy.hang()
    threading.Timer(0.5, cancellation.interrupt, args=("SIGTERM",)).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        list(kube.watch_pods(NS, "app=w", timeout=30))
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("method, status, error, expected", [
    ("GET", 500, None, True), ("GET", 404, None, False), ("PATCH", 502, None, True),
    ("POST", 500, None, False), ("POST", 503, None, True), ("POST", 429, None, True),
])
def test_retry_rules(method: str, status: int, error, expected: bool):
    from kubernaut_e2e.kube import retryable

    assert retryable(method, status, error) is expected


def test_backoff_is_bounded_and_honours_retry_after():
    from kubernaut_e2e.kube import RetryPolicy

    policy = RetryPolicy(backoff=0.2, max_backoff=2.0, max_retry_after=5.0)
    assert [policy.delay(i) for i in range(5)] == [0.2, 0.4, 0.8, 1.6, 2.0]
    assert policy.delay(0, "3") == 3.0 and policy.delay(0, "120") == 5.0
    assert policy.delay(1, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.4


class socket_port:
    """A free TCP port on 127.0.0.1 (nothing listens on it once the block ends)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return self._sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
