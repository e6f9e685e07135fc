"""The Kubernetes steps: CRDs, namespace, PostgreSQL + Redis, migrations, services, health.

Each body is called by the scheduler with its StepContext (see kubernaut_e2e.steps). Everything goes
through kubernaut_e2e.kube (the real client); apply is idempotent, waits fail fast (kubernaut_e2e.readiness).
"""
from __future__ import annotations

import base64
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubernaut_e2e import manifests, migrations as mig
from kubernaut_e2e.context import StepContext
from kubernaut_e2e.errors import StepFailed
from kubernaut_e2e.kube import Kube
from kubernaut_e2e.redact import secret_values
from kubernaut_e2e.readiness import (NotReady, PodProblem, describe_problem, job_log, pod_ready, wait_deployment,
                             wait_job)
from kubernaut_e2e.scheduler import Noted, parallel

DB_SECRET = "postgresql-credentials"


@contextmanager
def _connect(ctx: StepContext) -> Iterator[Kube]:
    kube = Kube(ctx.cfg.kubeconfig, cancellation=ctx.run.cancellation)  # Ctrl-C ends an API call at once
    try:
        yield kube
    finally:
        kube.close()


def _dry(ctx: StepContext) -> bool:
    if ctx.run.dry:
        from kubernaut_e2e.deploy_plan import describe

        for line in describe(ctx.step, ctx.cfg):
            ctx.run.echo(f"# {ctx.step}: {line}")
    return ctx.run.dry


def _apply_all(ctx: StepContext, kube: Kube, objects: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in objects:
        if obj.get("kind") == "Secret":
            _register_secret_values(ctx, obj)
        applied = kube.apply(obj)
        ctx.log(f"{applied.action}: {applied.description}")  # names only: objects may be Secrets
        counts[applied.action] = counts.get(applied.action, 0) + 1
    return counts


def _register_secret_values(ctx: StepContext, secret: dict[str, Any]) -> None:
    """Credentials a Secret holds are masked in every log and message of this run."""
    for value in secret_values(secret):
        ctx.run.redactor.add(value)


def _note(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))


def db_secrets(kube: Kube, namespace: str) -> dict[str, str]:
    """The DB passwords: read back from the cluster's Secret, or generated once per cluster."""
    existing = kube.get("Secret", DB_SECRET, namespace)
    data = (existing or {}).get("data") or {}
    if "POSTGRES_PASSWORD" in data and "APP_PASSWORD" in data:
        decode = (lambda key: base64.b64decode(data[key]).decode())
        return {"postgres_admin_password": decode("POSTGRES_PASSWORD"),
                "postgres_password": decode("APP_PASSWORD")}
    return {"postgres_admin_password": secrets.token_hex(24), "postgres_password": secrets.token_hex(24)}


def _db_secrets(ctx: StepContext, kube: Kube) -> dict[str, str]:
    values = db_secrets(kube, ctx.cfg.namespace)
    for value in values.values():
        ctx.run.redactor.add(value)
    return values


def _render(ctx: StepContext, step: str, secret_values: dict[str, str] | None = None) -> list[dict[str, Any]]:
    values = manifests.template_values(ctx.cfg, secret_values or {})
    return [obj for name in manifests.STEP_MANIFESTS[step] for obj in manifests.render(name, values)]


def _explain(kube: Kube):  # type: ignore[no-untyped-def]
    """Failure text for a pod problem, with the matching diagnosis findings (if any)."""

    def explain(problem: PodProblem) -> str:
        from kubernaut_e2e.diagnose import findings_for_pod

        text = describe_problem(kube, problem)
        findings = findings_for_pod(kube, problem.namespace, problem.pod)
        if findings:
            text += "\n  diagnosis:"
            for f in findings:
                text += f"\n    [{f.severity}] {f.title}: {f.meaning}\n      fix: {f.fix}"
        return text

    return explain


def _wait(ctx: StepContext, kube: Kube, name: str) -> float:
    cfg = ctx.cfg
    took = wait_deployment(kube, cfg.namespace, name, f"app={name}", cfg.ready_timeout,
                           ctx.run.cancellation, explain=_explain(kube))
    ctx.log(f"deployment {name} ready after {took:.1f}s")
    return took


# --- steps ----------------------------------------------------------------------------------

def crds(ctx: StepContext) -> object:
    if _dry(ctx):
        return None
    cfg = ctx.cfg
    files = sorted(cfg.source_dir.glob(cfg.crd_glob))
    if not files:
        raise StepFailed(f"no CRD files match {cfg.source_dir / cfg.crd_glob} (e2e.crd_glob)")
    objects = []
    for path in files:
        objects.extend(manifests.load_documents(path.read_text(), str(path)))
    objects = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    with _connect(ctx) as kube:
        counts = _apply_all(ctx, kube, objects)
        names = [o["metadata"]["name"] for o in objects]
        deadline = time.monotonic() + cfg.crd_timeout
        pending = set(names)
        while pending:
            for name in sorted(pending):
                crd = kube.get("CustomResourceDefinition", name) or {}
                conditions = (crd.get("status") or {}).get("conditions") or []
                if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                    pending.discard(name)
                    ctx.log(f"established: {name}")
            if pending and time.monotonic() > deadline:
                raise StepFailed(f"CRDs not Established after {cfg.crd_timeout}s: {', '.join(sorted(pending))}")
            if pending and ctx.run.cancellation.wait(0.2):
                ctx.run.cancellation.check()
    return Noted(f"{len(names)} CRDs established; {_note(counts)}", names)


def namespace(ctx: StepContext) -> object:
    if _dry(ctx):
        return None
    with _connect(ctx) as kube:
        return Noted(_note(_apply_all(ctx, kube, _render(ctx, "namespace"))))


def infra(ctx: StepContext) -> object:
    if _dry(ctx):
        return None
    with _connect(ctx) as kube:
        counts = _apply_all(ctx, kube, _render(ctx, "infra", _db_secrets(ctx, kube)))
        parallel(lambda: _wait(ctx, kube, "postgresql"), lambda: _wait(ctx, kube, "redis"))
    return Noted(_note(counts))


def migrations(ctx: StepContext) -> object:
    if _dry(ctx):
        return None
    cfg = ctx.cfg
    files = sorted(cfg.source_dir.glob(cfg.migrations_glob))
    try:
        loaded = mig.load_migrations(files)
    except ValueError as exc:
        raise StepFailed(f"migrations in {cfg.source_dir / cfg.migrations_glob}: {exc}") from None
    if not loaded:
        raise StepFailed(f"no migration files match {cfg.source_dir / cfg.migrations_glob} (e2e.migrations_glob)")
    expected = mig.created_tables(loaded)
    ctx.log(f"{len(loaded)} migrations: {', '.join(m.name for m in loaded)}")
    with _connect(ctx) as kube:
        kube.apply(mig.configmap(loaded, cfg.namespace))
        # A Job's template is immutable: replace the previous run's Job (and its pods).
        if kube.delete("Job", mig.JOB_NAME, cfg.namespace):
            _wait_gone(ctx, kube, "Job", mig.JOB_NAME, cfg.namespace)
        kube.create(mig.job(cfg.namespace, cfg.postgres_image))
        wait_job(kube, cfg.namespace, mig.JOB_NAME, cfg.ready_timeout, ctx.run.cancellation)
        log = job_log(kube, cfg.namespace, mig.JOB_NAME)
    ctx.log(log)
    found = mig.parse_tables(log)
    if found is None:
        raise StepFailed(f"migration job printed no table list (log: {ctx.log_path})")
    missing = sorted(expected - found)
    if missing:
        raise StepFailed(f"migrations ran but these tables are missing: {', '.join(missing)}")
    return Noted(f"{len(loaded)} migrations, {len(expected)} tables verified", sorted(found))


def _wait_gone(ctx: StepContext, kube: Kube, kind: str, name: str, namespace: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while kube.get(kind, name, namespace) is not None:
        if time.monotonic() > deadline:
            raise StepFailed(f"{kind} {namespace}/{name} still exists {timeout:g}s after deletion")
        ctx.run.cancellation.wait(0.2)
        ctx.run.cancellation.check()


def _service(ctx: StepContext, step: str) -> object:
    if _dry(ctx):
        return None
    with _connect(ctx) as kube:
        values = _db_secrets(ctx, kube)
        counts = _apply_all(ctx, kube, _render(ctx, step, values))
        took = _wait(ctx, kube, step)
    return Noted(f"{_note(counts)}; ready in {took:.1f}s")


def datastorage(ctx: StepContext) -> object:
    return _service(ctx, "datastorage")


def gateway(ctx: StepContext) -> object:
    return _service(ctx, "gateway")


def http_ok(url: str, timeout: float, cancellation: Any, interval: float = 1.0) -> tuple[bool, str]:
    """Poll `url` until HTTP 200 or the timeout; return (ok, last outcome)."""
    deadline = time.monotonic() + timeout
    outcome = "not tried"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=min(5.0, timeout)) as resp:  # noqa: S310 (localhost)
                outcome = f"HTTP {resp.status}"
                if resp.status == 200:
                    return True, outcome
        except urllib.error.HTTPError as exc:
            outcome = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            outcome = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline or cancellation.wait(interval):
            return False, outcome


def health(ctx: StepContext) -> object:
    if _dry(ctx):
        return None
    cfg = ctx.cfg
    urls = {"gateway": f"http://localhost:{cfg.gateway_host_port}/health",
            "datastorage": f"http://localhost:{cfg.datastorage_host_port}/health"}
    results = dict(zip(urls, parallel(*(lambda u=u: http_ok(u, cfg.health_timeout, ctx.run.cancellation)
                                        for u in urls.values()))))
    with _connect(ctx) as kube:
        pods = kube.list("Pod", cfg.namespace, selector="app=gateway")
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running" and pod_ready(p)]
    outcome = {
        "gateway_pod_ready": bool(running),
        "gateway_pod": running[0]["metadata"]["name"] if running else None,
        "checks": {svc: {"url": urls[svc], "ok": ok, "outcome": out} for svc, (ok, out) in results.items()},
    }
    for svc, (_, out) in results.items():
        ctx.log(f"{urls[svc]}: {out}")
    failed = [f"{urls[s]} -> {out}" for s, (ok, out) in results.items() if not ok]
    if failed:
        raise StepFailed(f"health check failed after {cfg.health_timeout}s: {'; '.join(failed)}")
    if not running:
        raise StepFailed(f"no Running and ready gateway pod in {cfg.namespace}")
    return Noted("gateway and datastorage answer 200 on /health", outcome)


__all__ = ["crds", "namespace", "infra", "migrations", "datastorage", "gateway", "health", "NotReady"]
