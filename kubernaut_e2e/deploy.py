"""The Kubernetes steps: one per stack component, plus `health`.

Each component has a type (see kubernaut_e2e.stack.COMPONENT_TYPES) and this module has one
function per type; the scheduler calls `run_component` with the step's context. Everything goes
through kubernaut_e2e.kube (the real client): apply is server-side and idempotent, waits fail fast
(kubernaut_e2e.readiness), generated credentials are read back from the cluster on a re-run and
masked everywhere.
"""
from __future__ import annotations

import base64
import datetime
import secrets as secrets_module
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernaut_e2e import manifests, migrations as mig
from kubernaut_e2e.context import StepContext, write_private
from kubernaut_e2e.errors import StepFailed
from kubernaut_e2e.kube import Kube
from kubernaut_e2e.readiness import PodProblem, describe_problem, pod_ready, wait_deployment, wait_job
from kubernaut_e2e.redact import secret_values
from kubernaut_e2e.scheduler import Noted, parallel
from kubernaut_e2e.stack import Component

#: Pod-template annotation naming the CA a workload's certificates come from: a new CA rolls it.
CA_ANNOTATION = "e2e.kubernaut.ai/ca"
#: A CA this close to expiry is replaced (a reused cluster can outlive its certificates).
_CA_RENEW_WINDOW = datetime.timedelta(hours=2)


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
    return ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "nothing to apply"


# --- generated credentials -------------------------------------------------------------------

def stack_secrets(ctx: StepContext, kube: Kube) -> dict[str, str]:
    """The stack's generated credentials: read back from their Secret, or generated once.

    Shared by every step of the run (the first caller decides), so two components rendering the
    same credential in parallel can never disagree.
    """
    with ctx.run.generated_lock:
        for spec in ctx.cfg.stack.secrets:
            if spec.name in ctx.run.generated:
                continue
            existing = kube.get("Secret", spec.secret, ctx.cfg.namespace) or {}
            encoded = (existing.get("data") or {}).get(spec.key)
            value = base64.b64decode(encoded).decode() if encoded else secrets_module.token_hex(24)
            ctx.run.generated[spec.name] = value
            ctx.run.redactor.add(value)
        return dict(ctx.run.generated)


def _uses_secrets(ctx: StepContext, comp: Component) -> bool:
    names = [f"${{{s.var}}}" for s in ctx.cfg.stack.secrets]
    return any(name in Path(m).read_text() for m in comp.manifests for name in names)


# --- waits -----------------------------------------------------------------------------------

def _explain(kube: Kube) -> Callable[[PodProblem], str]:
    """Failure text for a pod problem, with the matching diagnosis findings (if any), masked."""

    def explain(problem: PodProblem) -> str:
        from kubernaut_e2e.diagnose import cluster_redactor, findings_for_pod

        text = describe_problem(kube, problem)
        findings = findings_for_pod(kube, problem.namespace, problem.pod)
        if findings:
            text += "\n  diagnosis:"
            for f in findings:
                text += f"\n    [{f.severity}] {f.title}: {f.meaning}\n      fix: {f.fix}"
        # A crashing pod's log may print any credential of its namespace, not only the ones
        # this run generated: mask them all, as `e2e.diagnose` does.
        return cluster_redactor(kube, [problem.namespace]).redact(text)

    return explain


def _wait(ctx: StepContext, kube: Kube, name: str) -> float:
    cfg = ctx.cfg
    took = wait_deployment(kube, cfg.namespace, name, f"app={name}", cfg.ready_timeout,
                           ctx.run.cancellation, explain=_explain(kube))
    ctx.log(f"deployment {name} ready after {took:.1f}s")
    return took


# --- component types -------------------------------------------------------------------------

def run_component(ctx: StepContext) -> object:
    """The body of a component's step: dispatch on the component's type."""
    if _dry(ctx):
        return None
    comp = ctx.cfg.stack.component(ctx.step)
    return _TYPES[comp.type](ctx, comp)


def _manifests(ctx: StepContext, comp: Component) -> object:
    cfg = ctx.cfg
    with _connect(ctx) as kube:
        generated = stack_secrets(ctx, kube) if _uses_secrets(ctx, comp) else {}
        objects = manifests.render_component(comp, manifests.template_values(cfg, generated))
        objects = manifests.pin_image_ids(objects, _loaded_image_ids(ctx, comp))
        objects = _pin_ca(ctx, comp, objects)
        counts = _apply_all(ctx, kube, objects)
        patched = _patch_status(ctx, kube, comp, objects)
        took = parallel(*(lambda d=d: _wait(ctx, kube, d) for d in comp.wait),
                        cancellation=None) if comp.wait else []
    note = _note(counts)
    if patched:
        note += f"; status set on {patched}"
    if took:
        note += f"; ready in {max(took):.1f}s"
    return Noted(note)


def _loaded_image_ids(ctx: StepContext, comp: Component) -> dict[str, str]:
    """ref -> image ID of the images this component deploys, as loaded into the cluster."""
    from kubernaut_e2e.steps import loaded_images

    loaded = loaded_images(ctx.cfg)
    return {ctx.cfg.image_ref(i): loaded[ctx.cfg.image_ref(i)] for i in comp.images
            if ctx.cfg.image_ref(i) in loaded}


def _pin_ca(ctx: StepContext, comp: Component, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Workloads of a component that needs a tls component carry that CA's fingerprint."""
    fingerprints = [ctx.run.results.get(need) for need in comp.needs
                    if ctx.cfg.stack.component(need).type == "tls"]
    fingerprint = next((f for f in fingerprints if isinstance(f, str)), None)
    if fingerprint is None:
        return objects
    for obj in objects:
        template = (obj.get("spec") or {}).get("template")
        if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet") and template is not None:
            template.setdefault("metadata", {}).setdefault("annotations", {})[CA_ANNOTATION] = fingerprint
    return objects


def _patch_status(ctx: StepContext, kube: Kube, comp: Component, objects: list[dict[str, Any]]) -> int:
    """Set the stack's status on each applied object of the kinds it names (e.g. ActionTypes)."""
    count = 0
    for obj in objects:
        patch = comp.status.get(obj.get("kind", ""))
        if patch is None:
            continue
        current = kube.get_object(obj) or {}
        wanted = dict(patch)
        if all((current.get("status") or {}).get(k) == v for k, v in wanted.items()):
            continue  # already so: no write
        kube.patch_status(obj, wanted)
        count += 1
    if count:
        ctx.log(f"status patched on {count} object(s)")
    return count


def _crds(ctx: StepContext, comp: Component) -> object:
    cfg = ctx.cfg
    pattern = comp.settings["source"]
    files = sorted(cfg.source_dir.glob(pattern))
    if not files:
        raise StepFailed(f"no CRD files match {cfg.source_dir / pattern} (stack component {comp.name})")
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


def _tls(ctx: StepContext, comp: Component) -> object:
    """The CA, certificates and signing keys: kept while valid, regenerated when missing or old.

    Returns the CA's fingerprint; workloads that need this component carry it in their pod
    template, so a regenerated CA rolls them onto the new certificates.
    """
    from kubernaut_e2e import tls

    cfg, ns = ctx.cfg, ctx.cfg.namespace
    configmap, secret_names = tls.names_of(comp.settings)
    with _connect(ctx) as kube:
        current = kube.get("ConfigMap", configmap, ns)
        ca_pem = ((current or {}).get("data") or {}).get(comp.settings["ca"]["key"], "")
        missing = [s for s in secret_names if kube.get("Secret", s, ns) is None]
        reason = ("no CA yet" if not ca_pem else
                  f"missing {', '.join(missing)}" if missing else
                  "the CA expires soon" if tls.expires_within(ca_pem, _CA_RENEW_WINDOW) else "")
        if reason:
            material = tls.generate(comp.settings, ns)
            ctx.log(f"generating the CA and {len(secret_names)} key pair(s): {reason}")
            counts = _apply_all(ctx, kube, list(material.objects))
            ca_pem, note = material.ca_pem, f"generated ({reason}); {_note(counts)}"
        else:
            note = "reused: CA and certificates present and valid"
    write_private(cfg.ca_file, ca_pem)
    ctx.log(f"CA certificate for host clients: {cfg.ca_file}")
    return Noted(note, tls.ca_fingerprint(ca_pem))


def _migrations(ctx: StepContext, comp: Component) -> object:
    cfg, ns = ctx.cfg, ctx.cfg.namespace
    pattern, database = comp.settings["source"], comp.settings["database"]
    files = sorted(cfg.source_dir.glob(pattern))
    try:
        loaded = mig.load_migrations(files)
    except ValueError as exc:
        raise StepFailed(f"migrations in {cfg.source_dir / pattern}: {exc}") from None
    if not loaded:
        raise StepFailed(f"no migration files match {cfg.source_dir / pattern} (stack component {comp.name})")
    expected = mig.final_tables(loaded)
    inputs = mig.inputs_hash(loaded)
    with _connect(ctx) as kube:
        volume = _database_volume(kube, ns, database["service"])
        recorded = ((kube.get("ConfigMap", mig.CONFIGMAP_NAME, ns) or {}).get("metadata") or {}).get("annotations") or {}
        if (recorded.get(mig.APPLIED_ANNOTATION) == inputs and volume
                and recorded.get(mig.VOLUME_ANNOTATION) == volume):
            ctx.log(f"migrations {inputs} were applied and verified on volume {volume}: not run again")
            return Noted(f"reused: {len(loaded)} migrations unchanged, schema verified before",
                         sorted((recorded.get(mig.TABLES_ANNOTATION) or "").split(",")))
        ctx.log(f"{len(loaded)} migrations: {', '.join(m.name for m in loaded)}")
        kube.apply(mig.configmap(loaded, ns))
        # A Job's template is immutable: replace the previous run's Job (and its pods).
        if kube.delete("Job", mig.JOB_NAME, ns):
            _wait_gone(ctx, kube, "Job", mig.JOB_NAME, ns)
        image = cfg.stack.preload[database["preload"]]
        created = kube.create(mig.job(ns, image, database, cfg.ready_timeout))
        uid = created["metadata"]["uid"]
        wait_job(kube, ns, mig.JOB_NAME, cfg.ready_timeout, ctx.run.cancellation)
        log = job_pod_log(kube, ns, uid)
        ctx.log(log)
        found = mig.parse_tables(log)
        if found is None:
            raise StepFailed(f"migration job printed no table list (log: {ctx.log_path})")
        missing = sorted(expected - found)
        if missing:
            raise StepFailed(f"migrations ran but these tables are missing: {', '.join(missing)}")
        # Record what was applied, verified, and on which volume: an unchanged re-run is a no-op.
        kube.apply(mig.configmap(loaded, ns, {mig.APPLIED_ANNOTATION: inputs, mig.VOLUME_ANNOTATION: volume,
                                               mig.TABLES_ANNOTATION: ",".join(sorted(expected))}))
    version = mig.parse_marker(log, mig.VERSION_MARKER) or "?"
    return Noted(f"{len(loaded)} migrations (goose version {version}), {len(expected)} tables verified",
                 sorted(found))


def _database_volume(kube: Kube, namespace: str, service: str) -> str:
    """The UID of the database's volume claim ('' without one): a new volume is a new database."""
    dep = kube.get("Deployment", service, namespace) or {}
    volumes = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("volumes") or []
    for volume in volumes:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            pvc = kube.get("PersistentVolumeClaim", claim, namespace) or {}
            return (pvc.get("metadata") or {}).get("uid", "")
    return ""


def job_pod_log(kube: Kube, namespace: str, job_uid: str) -> str:
    """The log of the newest pod *owned by* this Job (an old Job's pods may still be around)."""
    pods = [p for p in kube.list("Pod", namespace, selector=f"batch.kubernetes.io/controller-uid={job_uid}")
            if any(ref.get("uid") == job_uid for ref in (p["metadata"].get("ownerReferences") or []))]
    if not pods:
        return ""
    pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
    container = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name", "")
    return kube.pod_log(namespace, pod["metadata"]["name"], container, tail=200)


def _wait_gone(ctx: StepContext, kube: Kube, kind: str, name: str, namespace: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while kube.get(kind, name, namespace) is not None:
        if time.monotonic() > deadline:
            raise StepFailed(f"{kind} {namespace}/{name} still exists {timeout:g}s after deletion")
        ctx.run.cancellation.wait(0.2)
        ctx.run.cancellation.check()


_TYPES: dict[str, Callable[[StepContext, Component], object]] = {
    "manifests": _manifests,
    "crds": _crds,
    "migrations": _migrations,
    "tls": _tls,
}


# --- health ----------------------------------------------------------------------------------

def http_ok(url: str, timeout: float, cancellation: Any, interval: float = 1.0,
            ca_file: Path | None = None) -> tuple[bool, str]:
    """Poll `url` until HTTP 200 or the timeout; return (ok, last outcome). https: our CA."""
    context = ssl.create_default_context(cafile=str(ca_file)) if url.startswith("https") and ca_file else None
    deadline = time.monotonic() + timeout
    outcome = "not tried"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=min(5.0, timeout), context=context) as resp:  # noqa: S310
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
    from kubernaut_e2e.deploy_plan import health_urls

    cfg = ctx.cfg
    urls = health_urls(cfg)
    ca = cfg.ca_file if cfg.ca_file.is_file() else None
    results = dict(zip(urls, parallel(*(lambda u=u: http_ok(u, cfg.health_timeout, ctx.run.cancellation,
                                                            ca_file=ca)
                                        for u in urls.values()))))
    pods: dict[str, str | None] = {}
    with _connect(ctx) as kube:
        for name in cfg.stack.deployments:
            running = [p for p in kube.list("Pod", cfg.namespace, selector=f"app={name}")
                       if (p.get("status") or {}).get("phase") == "Running" and pod_ready(p)
                       and not (p.get("metadata") or {}).get("deletionTimestamp")]
            pods[name] = running[0]["metadata"]["name"] if running else None
    outcome = {
        "pods": pods,
        "checks": {name: {"url": urls[name], "ok": ok, "outcome": out} for name, (ok, out) in results.items()},
    }
    for name, (_, out) in results.items():
        ctx.log(f"{urls[name]}: {out}")
    failed = [f"{urls[n]} -> {out}" for n, (ok, out) in results.items() if not ok]
    if failed:
        raise StepFailed(f"health check failed after {cfg.health_timeout}s: {'; '.join(failed)}")
    not_ready = sorted(n for n, pod in pods.items() if pod is None)
    if not_ready:
        raise StepFailed(f"no Running and ready pod for: {', '.join(not_ready)} (namespace {cfg.namespace})")
    return Noted(f"{len(urls)} health endpoints answer 200; {len(pods)} services ready", outcome)


__all__ = ["run_component", "health", "stack_secrets", "job_pod_log", "http_ok"]
