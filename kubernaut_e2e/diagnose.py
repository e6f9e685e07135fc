"""`e2e.diagnose`: collect what the cluster (or a log bundle) shows and say why it broke.

Collection talks to the API (kubernaut_e2e.kube); matching is kubernaut_e2e.diagnosis with its knowledge base
(kubernaut_e2e/signatures.yaml); this module joins the two, writes the bundle and picks the exit code.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from kubernaut_e2e.context import LocalSite, Site
from kubernaut_e2e.diagnosis import (ContainerFacts, Finding, PodFacts, diagnose_path, diagnose_pod, is_problem,
                             pod_facts_from_api, sort_findings)
from kubernaut_e2e.redact import Redactor, secret_values
from kubernaut_e2e.runner import Cancellation


@dataclass
class PodRecord:
    """One unhealthy pod as collected: the API object, its events and logs, and its facts."""

    pod: dict[str, Any]
    events: list[dict[str, Any]]
    logs: dict[tuple[str, bool], str]
    facts: PodFacts


@dataclass
class Snapshot:
    nodes: list[dict[str, str]] = field(default_factory=list)  # name, arch, ready
    pods: list[PodRecord] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)  # namespace Warning events
    examined: int = 0  # pods looked at in all


def _unhealthy(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") == "Succeeded":
        return False
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    restarted = any(int(s.get("restartCount") or 0) > 0 for s in statuses)
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return restarted or not ready or status.get("phase") == "Failed"


def node_architectures(kube: Any) -> dict[str, str]:
    return {n["metadata"]["name"]: ((n.get("status") or {}).get("nodeInfo") or {}).get("architecture", "")
            for n in kube.list("Node")}


def collect_pod(kube: Any, pod: dict[str, Any], node_archs: Mapping[str, str],
                image_archs: Mapping[str, str] | None = None) -> PodRecord:
    ns, name = pod["metadata"].get("namespace", ""), pod["metadata"]["name"]
    logs: dict[tuple[str, bool], str] = {}
    spec = pod.get("spec") or {}
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for previous in (False, True):
            logs[(container["name"], previous)] = kube.pod_log(ns, name, container["name"],
                                                                previous=previous, tail=200)
    events = kube.events_for(ns, name)
    node_arch = node_archs.get(spec.get("nodeName") or "") or None
    facts = pod_facts_from_api(pod, node_arch, logs, events, image_archs)
    return PodRecord(pod, events, logs, facts)


def collect(kube: Any, namespaces: Sequence[str], image_archs: Mapping[str, str] | None = None) -> Snapshot:
    snap = Snapshot()
    archs = node_architectures(kube)
    snap.nodes = [{"name": n, "arch": a} for n, a in sorted(archs.items())]
    for ns in namespaces:
        pods = kube.list("Pod", ns)
        snap.examined += len(pods)
        snap.pods.extend(collect_pod(kube, p, archs, image_archs) for p in pods if _unhealthy(p))
        snap.warnings.extend(e for e in kube.list("Event", ns) if e.get("type") == "Warning")
    return snap


def _fallback(facts: PodFacts) -> Finding:
    """An unhealthy pod that matched no signature is still a finding, with its raw states."""
    evidence = []
    for c in facts.containers:
        state = c.waiting_reason or c.terminated_reason or ("ready" if c.ready else "not ready")
        evidence.append(f"container {c.name}: {state}, restarts {c.restart_count}"
                        + (f", exit code {c.exit_code}" if c.exit_code is not None else ""))
    return Finding("pod-not-ready", "Pod not ready (no known signature matched)", "warning",
                   f"pod {facts.namespace}/{facts.name}",
                   "The pod is not ready or has restarted, and nothing in its state, events or logs "
                   "matched a known cause.", tuple(evidence),
                   "Read the logs in the bundle (`invoke e2e.diagnose --out DIR`) and the pod's events.",
                   cause="the pod is not ready and nothing says why")


def findings_from(snapshot: Snapshot) -> list[Finding]:
    found: list[Finding] = []
    for record in snapshot.pods:
        pod_findings = diagnose_pod(record.facts)
        # Notes alone (a recovered dependency) explain a pod that is ready again; a pod that is
        # still not ready without any problem found gets the raw-state finding.
        settled = all(c.ready or (c.terminated_reason == "Completed" and c.exit_code == 0)
                      for c in record.facts.containers)
        found.extend(pod_findings if any(is_problem(f) for f in pod_findings) or (pod_findings and settled)
                     else [*pod_findings, _fallback(record.facts)])
    return sort_findings(found)


def findings_for_pod(kube: Any, namespace: str, name: str) -> list[Finding]:
    """For `up`: the findings of the one pod a readiness wait failed on."""
    pod = kube.get("Pod", name, namespace)
    if pod is None:
        return []
    return diagnose_pod(collect_pod(kube, pod, node_architectures(kube)).facts)


def cluster_redactor(kube: Any, namespaces: Iterable[str]) -> Redactor:
    """Mask whatever the namespaces' Secrets hold in everything diagnose prints or writes."""
    redactor = Redactor()
    for ns in namespaces:
        for secret in kube.list("Secret", ns):
            for value in secret_values(secret):
                redactor.add(value)
    return redactor


def redact_findings(findings: Iterable[Finding], redactor: Redactor) -> list[Finding]:
    return [replace(f, evidence=tuple(redactor.redact(e) for e in f.evidence),
                    subject=redactor.redact(f.subject)) for f in findings]


def report_document(findings: Sequence[Finding], snapshot: Snapshot | None, source: str) -> dict[str, Any]:
    return {
        "source": source,
        "nodes": snapshot.nodes if snapshot else [],
        "pods_examined": snapshot.examined if snapshot else None,
        "unhealthy_pods": [f"{r.facts.namespace}/{r.facts.name}" for r in snapshot.pods] if snapshot else [],
        "findings": [f.to_dict() for f in findings],
    }


def write_bundle(out: Path, snapshot: Snapshot, findings: Sequence[Finding], redactor: Redactor) -> list[Path]:
    """Pod descriptions, logs, events, nodes and the findings, every file masked."""
    written: list[Path] = []

    def put(rel: str, text: str) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(redactor.redact(text))
        written.append(path)

    put("nodes.yaml", yaml.safe_dump(snapshot.nodes, sort_keys=False))
    put("events.yaml", yaml.safe_dump(snapshot.warnings, sort_keys=False))
    for record in snapshot.pods:
        ns, name = record.facts.namespace, record.facts.name
        put(f"pods/{ns}/{name}.yaml", yaml.safe_dump(record.pod, sort_keys=False))
        put(f"pods/{ns}/{name}.events.yaml", yaml.safe_dump(record.events, sort_keys=False))
        for (container, previous), text in record.logs.items():
            if text:
                put(f"logs/{ns}/{name}/{container}{'.previous' if previous else ''}.log", text)
    put("findings.json", json.dumps([f.to_dict() for f in findings], indent=2))
    return written


def offline(path: Path) -> list[Finding]:
    return sort_findings(diagnose_path(path))


def render(findings: Sequence[Finding], snapshot: Snapshot | None, source: str, stream: Any) -> None:
    """The human report: nodes, then one panel per problem, causes first, then the notes."""
    from rich.console import Console
    from rich.markup import escape

    from kubernaut_e2e.console import is_terminal

    # Into a pipe or a file: no wrapping at an assumed width (a sentence cut mid-way breaks grep).
    console = Console(file=stream) if is_terminal(stream) else Console(file=stream, soft_wrap=True, width=10_000)
    console.print(f"[bold]diagnose[/] {escape(source)}", highlight=False)
    if snapshot is not None:
        nodes = ", ".join(f"{n['name']} ({n['arch'] or '?'})" for n in snapshot.nodes) or "none"
        console.print(f"nodes: {escape(nodes)}", highlight=False)
        console.print(f"pods examined: {snapshot.examined}, unhealthy: {len(snapshot.pods)}", highlight=False)
    if not any(is_problem(f) for f in findings):
        console.print("[green]no problems found[/]")
    colour = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "cyan"}
    for i, f in enumerate(findings, 1):
        style = colour.get(f.severity, "")
        label = f.severity.upper() if is_problem(f) else "NOTE"
        console.print(f"\n[{style}]{i}. [{label}] {escape(f.title)}[/]", highlight=False)
        console.print(f"   where: {escape(f.subject)}", highlight=False, soft_wrap=True)
        if f.cause:
            console.print(f"   cause: {escape(f.cause)}", highlight=False, soft_wrap=True)
        console.print(f"   why:   {escape(f.meaning.strip())}", highlight=False)
        if f.evidence:
            console.print("   evidence:", highlight=False)
            for line in f.evidence:
                console.print(f"     {escape(line)}", highlight=False, soft_wrap=True)
        console.print(f"   fix:   {escape(f.fix.strip())}", highlight=False)


__all__ = ["ContainerFacts", "collect", "findings_for_pod", "findings_from", "offline", "write_bundle",
           "render", "report_document", "cluster_redactor", "redact_findings"]


def run_diagnose(cfg: Any, *, namespaces: Sequence[str], as_json: bool, out: Path | None,
                 logs: Path | None, stream: Any, cancellation: Cancellation | None = None,
                 site: Site | None = None) -> int:
    """The whole `e2e.diagnose`: 0 nothing wrong (notes only), 1 problems found (UsageError -> 2).

    With the caller's `cancellation` (whoever owns the signals), Ctrl-C ends an API call or
    `kind export logs` at once (Cancelled). `site`: where the cluster's tools run (default this
    machine; a host's API server is reached through the tunnel `cfg.kubeconfig` points at).
    """
    site = site or LocalSite(cfg)
    from kubernaut_e2e.errors import UsageError

    if logs is not None:
        if not logs.exists():
            raise UsageError(f"--logs {logs}: no such file or directory")
        findings, snapshot, source, redactor = offline(logs), None, str(logs), Redactor()
    else:
        if not cfg.kubeconfig.is_file():
            raise UsageError(f"no cluster: {cfg.kubeconfig} does not exist "
                             f"(run `invoke e2e.up`, or analyse logs offline with --logs PATH)")
        from kubernaut_e2e.kube import Kube, KubeError

        try:
            kube = Kube(cfg.kubeconfig, request_timeout=10, cancellation=cancellation)
        except KubeError as exc:
            raise UsageError(f"no cluster: {exc}") from None
        try:
            redactor = cluster_redactor(kube, namespaces)
            snapshot = collect(kube, namespaces, _image_archs(cfg, site))
        except (KubeError, OSError) as exc:
            raise UsageError(f"no cluster: the API server of {cfg.cluster_name!r} did not answer "
                             f"({' '.join(str(exc).split())[:200]})") from None
        finally:
            kube.close()
        findings, source = findings_from(snapshot), f"cluster {cfg.cluster_name}"
    findings = redact_findings(findings, redactor)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if snapshot is not None:
            write_bundle(out, snapshot, findings, redactor)
            _export_kind_logs(cfg, out / "kind-logs", redactor, cancellation, site)
        else:
            (out / "findings.json").write_text(json.dumps([f.to_dict() for f in findings], indent=2))
    if as_json:
        stream.write(redactor.redact(json.dumps(report_document(findings, snapshot, source), indent=2)) + "\n")
    else:
        render(findings, snapshot, source, stream)
        if out is not None:
            stream.write(f"bundle written to {out}\n")
    return 1 if any(is_problem(f) for f in findings) else 0


def _image_archs(cfg: Any, site: Site) -> dict[str, str]:
    """Recorded architecture of the images this project built, when the provider has them."""
    from kubernaut_e2e import podman
    from kubernaut_e2e.preflight import choose_provider
    from kubernaut_e2e.toolchain import built_image_archs

    built = built_image_archs(cfg, choose_provider(cfg, site.which), site.runner(Cancellation()))
    return {cfg.image_ref(svc): podman.normalize_arch(out.split("/")[-1]) for svc, out in built.items()}


def _export_kind_logs(cfg: Any, target: Path, redactor: Redactor, cancellation: Cancellation | None = None,
                      site: Site | None = None) -> None:
    """`kind export logs` into the bundle, masked afterwards; skipped (with a note) without kind."""
    from kubernaut_e2e import kind
    from kubernaut_e2e.preflight import choose_provider
    from kubernaut_e2e.runner import CommandFailed
    from kubernaut_e2e.sync import SyncFailed

    site = site or LocalSite(cfg)
    provider = choose_provider(cfg, site.which) or "docker"
    note = target.parent / "kind-logs.txt"
    if not site.which("kind"):
        note.write_text("kind is not installed: `kind export logs` was skipped\n")
        return
    runner = site.runner(cancellation.child() if cancellation else Cancellation(), redactor=redactor)

    def export(folder: Path) -> None:
        runner.run(kind.export_logs(cfg.cluster_name, folder), env=kind.provider_env(provider), log=note, timeout=300)

    try:
        site.collect(target, export)
    except (CommandFailed, SyncFailed) as exc:  # a failed fetch from a host, too
        with note.open("a") as fh:
            fh.write(redactor.redact(f"{exc}\n"))
        return
    mask_tree(target, redactor)


#: Larger exported files keep only their (masked) end: the bundle must stay masked and sane.
_MASK_IN_MEMORY = 256 * 1024 * 1024
_KEEP_TAIL = 64 * 1024 * 1024


def mask_tree(folder: Path, redactor: Redactor) -> None:
    """Mask every file under `folder` as bytes: text or not, UTF-8 or not (journal, container logs)."""
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            path.unlink()  # a link could point outside the bundle: not ours to rewrite or keep
            continue
        if not path.is_file():
            continue
        size = path.stat().st_size
        with path.open("rb") as fh:
            if size > _MASK_IN_MEMORY:
                fh.seek(size - _KEEP_TAIL)
                data = fh.read()
                masked = (f"(kubernaut-e2e: {size} bytes, only the last {_KEEP_TAIL} kept)\n".encode()
                          + redactor.redact_bytes(data))
            else:
                data = fh.read()
                masked = redactor.redact_bytes(data)
        if masked != data:
            path.write_bytes(masked)
