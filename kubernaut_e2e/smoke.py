"""`e2e.smoke`: prove the live environment works end to end, the way upstream's audit spec does.

One signal goes in at the Gateway and its audit trail comes back out of DataStorage:

  namespace   a namespace the Gateway manages (the stack's labels) with a pod the alert names
  token       a ServiceAccount token (TokenRequest) allowed to send signals
  signal      POST a Prometheus alert to the Gateway: bearer token, X-Timestamp; 201 expected
  remediation the RemediationRequest the Gateway answered with exists
  audit token a token allowed to read DataStorage (data-storage-client)
  audit       GET the Gateway's audit events from DataStorage over HTTPS, verified against the
              environment's CA; every expected event type must be there

Each hop is printed with its latency as it completes; the first failing hop ends the run with
exit 1 and is named. Everything the smoke creates lives in its own namespace, deleted at the
end; the tokens it gets are masked wherever they could be printed. What it sends and expects is
the stack's `smoke` section (kubernaut_e2e/stacks/gateway-e2e/stack.yaml).
"""
from __future__ import annotations

import json
import secrets
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.errors import Cancelled, StepFailed, UsageError
from kubernaut_e2e.redact import Redactor
from kubernaut_e2e.runner import Cancellation

#: What a smoke run needs from the stack's `smoke` section.
_REQUIRED = ("namespace_prefix", "pod_image", "signal", "remediation", "audit")


@dataclass(frozen=True)
class Hop:
    name: str
    ok: bool
    seconds: float
    detail: str


class HopFailed(StepFailed):
    """A hop failed; the message names it."""


def settings(cfg: E2EConfig) -> Mapping[str, Any] | None:
    """The stack's smoke section (None: this stack has no smoke test); UsageError when incomplete."""
    smoke = cfg.stack.smoke
    if not smoke:
        return None
    missing = [key for key in _REQUIRED if key not in smoke]
    if missing:
        raise UsageError(f"stack {cfg.stack.path}: smoke: missing {', '.join(missing)} (the smoke test needs them)")
    return smoke


def check_inputs(cfg: E2EConfig) -> Mapping[str, Any] | None:
    """Bad input (exit 2) before anything is made: the stack's smoke section and a cluster."""
    smoke = settings(cfg)
    if smoke is not None and not cfg.kubeconfig.is_file():
        raise UsageError(f"no cluster: {cfg.kubeconfig} does not exist (run `invoke e2e.up` first)")
    return smoke


def alert_payload(namespace: str, pod: str, alertname: str, now: float) -> dict[str, Any]:
    """An Alertmanager webhook body with one firing alert about `pod`. Pure."""
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    labels = {"alertname": alertname, "namespace": namespace, "severity": "warning", "pod": pod}
    annotations = {"summary": f"kubernaut-e2e smoke signal for {namespace}/{pod}",
                   "description": "Sent by `invoke e2e.smoke` to prove the Gateway -> DataStorage path."}
    return {
        "receiver": "kubernaut-e2e-smoke", "status": "firing",
        "alerts": [{"status": "firing", "labels": labels, "annotations": annotations,
                    "startsAt": started, "endsAt": "0001-01-01T00:00:00Z"}],
        "groupLabels": {"alertname": alertname}, "commonLabels": labels, "commonAnnotations": annotations,
    }


def audit_complete(answer: Mapping[str, Any], expected: list[str]) -> tuple[bool, str]:
    """Whether DataStorage's answer holds every expected event type; and what it holds. Pure."""
    types = sorted({str(e.get("event_type")) for e in answer.get("data") or [] if isinstance(e, Mapping)})
    total = (answer.get("pagination") or {}).get("total")
    missing = [t for t in expected if t not in types]
    return not missing, f"{total if total is not None else len(types)} event(s): {', '.join(types) or 'none'}" + (
        f"; missing {', '.join(missing)}" if missing else "")


class _Http:
    """Bounded, interruptible HTTP for the hops (urllib; TLS verified against our CA)."""

    def __init__(self, cancellation: Cancellation, ca_file: Path | None) -> None:
        self.cancellation = cancellation
        self.context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None

    def call(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None,
             timeout: float = 10.0) -> tuple[int, str]:
        self.cancellation.check()
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
        context = self.context if url.startswith("https") else None
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:  # noqa: S310
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")
        except ssl.SSLError as exc:
            raise HopFailed(f"TLS with {url} failed: {exc.reason or exc}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLError):
                raise HopFailed(f"TLS with {url} failed: {reason.reason or reason} "
                                "(is DataStorage serving a certificate of this environment's CA?)") from None
            return 0, str(reason)


def _token(kube: Any, namespace: str, account: str, redactor: Redactor) -> str:
    review = kube.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
                          body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                "spec": {"expirationSeconds": 600}})
    token = str((review.get("status") or {}).get("token") or "")
    if not token:
        raise HopFailed(f"TokenRequest for {namespace}/{account} returned no token")
    redactor.add(token)
    return token


def run_smoke(cfg: E2EConfig, *, out: TextIO | None = None, cancellation: Cancellation | None = None,
              run_dir: Path | None = None, redactor: Redactor | None = None) -> int:
    """Run every hop; print each; write smoke.json to `run_dir`. 0 all passed, 1 a hop failed."""
    from kubernaut_e2e.kube import Kube, KubeError

    out = out or sys.stdout
    smoke = check_inputs(cfg)
    if smoke is None:
        print(f"the stack {cfg.stack.name} defines no smoke test: nothing to do", file=out, flush=True)
        return 0
    cancellation = cancellation or Cancellation()
    redactor = redactor or Redactor()
    http = _Http(cancellation, cfg.ca_file if cfg.ca_file.is_file() else None)
    hops: list[Hop] = []
    state: dict[str, Any] = {}

    def hop(name: str, body: Callable[[], str]) -> None:
        started = time.monotonic()
        try:
            detail = body()
        except (HopFailed, KubeError) as exc:
            hops.append(Hop(name, False, time.monotonic() - started, redactor.redact(str(exc))))
            _say(out, hops[-1])
            raise
        hops.append(Hop(name, True, time.monotonic() - started, redactor.redact(detail)))
        _say(out, hops[-1])

    kube = Kube(cfg.kubeconfig, cancellation=cancellation)
    namespace = f"{smoke['namespace_prefix']}-{secrets.token_hex(3)}"
    pod = "smoke-target"

    def token_for(section: str) -> Callable[[], str]:
        def body() -> str:
            account = smoke[section]["service_account"]
            state[section] = _token(kube, cfg.namespace, account, redactor)
            return f"TokenRequest for {cfg.namespace}/{account}"

        return body

    code = 0
    try:
        hop("namespace", lambda: _make_namespace(kube, namespace, pod, smoke, cancellation))
        hop("token", token_for("signal"))
        hop("signal", lambda: _send_signal(cfg, smoke, http, state, namespace, pod, cancellation))
        hop("remediation", lambda: _remediation_exists(kube, smoke, state))
        hop("audit token", token_for("audit"))
        hop("audit", lambda: _read_audit(cfg, smoke, http, state, cancellation))
    except (HopFailed, KubeError):
        code = 1
    except Cancelled:
        code = 130
    finally:
        try:
            kube.delete("Namespace", namespace)
        except (KubeError, Cancelled):
            pass  # a smoke namespace left behind is named in the output below
        kube.close()
    failed = next((h for h in hops if not h.ok), None)
    if failed is not None:
        print(f"smoke FAILED at hop {failed.name!r}: {failed.detail}", file=out, flush=True)
    elif code == 0:
        total = sum(h.seconds for h in hops)
        print(f"smoke passed: {len(hops)} hops in {total:.2f}s", file=out, flush=True)
    if run_dir is not None:
        document = {"passed": code == 0 and failed is None, "namespace": namespace,
                    "hops": [asdict(h) for h in hops]}
        try:
            (run_dir / "smoke.json").write_text(redactor.redact(json.dumps(document, indent=2)) + "\n")
        except OSError as exc:
            print(f"warning: could not write {run_dir / 'smoke.json'}: {exc.strerror or exc}", file=out)
    return code if code else (1 if failed else 0)


def _say(out: TextIO, h: Hop) -> None:
    mark = "ok  " if h.ok else "FAIL"
    print(f"{mark} {h.name:<12} {h.seconds * 1000:7.0f} ms  {h.detail}", file=out, flush=True)


def _make_namespace(kube: Any, namespace: str, pod: str, smoke: Mapping[str, Any],
                    cancellation: Cancellation) -> str:
    kube.create({"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": namespace, "labels": dict(smoke.get("namespace_labels") or {})}})
    deadline = time.monotonic() + 30
    while kube.get("ServiceAccount", "default", namespace) is None:  # pods need it
        if time.monotonic() > deadline:
            raise HopFailed(f"namespace {namespace} got no default ServiceAccount within 30s")
        cancellation.wait(0.2)
        cancellation.check()
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": namespace,
                                                                  "labels": {"app": "kubernaut-e2e-smoke"}},
                 "spec": {"containers": [{"name": "pause", "image": smoke["pod_image"]}]}})
    return f"namespace {namespace} with pod {pod}"


def _send_signal(cfg: E2EConfig, smoke: Mapping[str, Any], http: _Http, state: dict[str, Any],
                 namespace: str, pod: str, cancellation: Cancellation) -> str:
    signal = smoke["signal"]
    url = cfg.url(signal["endpoint"]) + signal["path"]
    expect = int(signal.get("expect_status", 201))
    deadline = time.monotonic() + float(signal.get("retry_seconds", 30))
    attempts = 0
    while True:
        attempts += 1
        now = time.time()
        body = json.dumps(alert_payload(namespace, pod, "KubernautE2ESmoke", now)).encode()
        status, text = http.call("POST", url, {
            "Content-Type": "application/json", "X-Timestamp": str(int(now)),
            "Authorization": f"Bearer {state['signal']}"}, body)
        if status == expect:
            break
        # 401/403 will not change by waiting; anything else may be the scope cache catching up.
        if status in (401, 403) or time.monotonic() >= deadline:
            raise HopFailed(f"POST {url} answered {status or 'nothing'} (expected {expect}) after {attempts} "
                            f"attempt(s): {text.strip()[:200]}")
        cancellation.wait(2.0)
        cancellation.check()
    try:
        answer = json.loads(text)
    except ValueError:
        raise HopFailed(f"POST {url} answered {status} but not JSON: {text[:120]!r}") from None
    name = answer.get("remediationRequestName")
    if not name:
        raise HopFailed(f"POST {url} answered {status} without a remediationRequestName: {text[:200]}")
    state["remediation"] = (str(answer.get("remediationRequestNamespace") or cfg.namespace), str(name))
    return f"POST {url} -> {status}, RemediationRequest {name} (attempt {attempts})"


def _remediation_exists(kube: Any, smoke: Mapping[str, Any], state: dict[str, Any]) -> str:
    rr = smoke["remediation"]
    namespace, name = state["remediation"]
    path = f"/apis/{rr['group']}/{rr['version']}/namespaces/{namespace}/{rr['plural']}/{name}"
    kube.request("GET", path)  # KubeError 404 when the Gateway did not create it
    return f"{rr['plural']}/{name} exists in {namespace}"


def _read_audit(cfg: E2EConfig, smoke: Mapping[str, Any], http: _Http, state: dict[str, Any],
                cancellation: Cancellation) -> str:
    audit = smoke["audit"]
    _, name = state["remediation"]
    query = urllib.parse.urlencode({"event_category": audit.get("category", "gateway"), "correlation_id": name})
    url = f"{cfg.url(audit['endpoint'])}{audit['path']}?{query}"
    expected = [str(e) for e in audit.get("expect_events") or []]
    deadline = time.monotonic() + float(audit.get("retry_seconds", 30))
    while True:
        status, text = http.call("GET", url, {"Accept": "application/json",
                                              "Authorization": f"Bearer {state['audit']}"})
        if status in (401, 403):
            raise HopFailed(f"GET {url} answered {status}: {text.strip()[:200]}")
        seen = "nothing yet"
        if status == 200:
            try:
                complete, seen = audit_complete(json.loads(text), expected)
            except ValueError:
                raise HopFailed(f"GET {url} answered 200 but not JSON: {text[:120]!r}") from None
            if complete:
                return f"GET {url} -> {seen}"
        else:
            seen = f"HTTP {status or 'no answer'}: {text.strip()[:120]}"
        if time.monotonic() >= deadline:
            raise HopFailed(f"the audit trail of {name} is incomplete after {audit.get('retry_seconds', 30)}s: {seen}")
        cancellation.wait(2.0)
        cancellation.check()
