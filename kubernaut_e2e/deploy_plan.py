"""What each Kubernetes step does, in words, for `e2e.plan` and `--dry` (no kubernetes import).

Derived from the stack, like the steps themselves: a component's type says what kind of work
it does, its data says on what.
"""
from __future__ import annotations

from pathlib import Path

from kubernaut_e2e.config import E2EConfig

_API = "(Kubernetes API, server-side apply)"


def _short(path: str, cfg: E2EConfig) -> str:
    try:
        return str(Path(path).relative_to(cfg.stack.folder))
    except ValueError:
        return path


def describe(step: str, cfg: E2EConfig) -> list[str]:
    if step == "health":
        return _health_lines(cfg)
    comp = cfg.stack.component(step)
    ns, src = cfg.namespace, cfg.source_dir
    if comp.type == "crds":
        return [f"apply {src / comp.settings['source']} {_API}",
                f"wait until each CRD is Established (timeout {cfg.crd_timeout}s)"]
    if comp.type == "migrations":
        db = comp.settings["database"]
        return [f"unless {src / comp.settings['source']} and the database volume are unchanged since "
                "they were last verified:",
                f"apply them (goose Up sections, numeric order, goose_db_version) with a Job in {ns} "
                f"that waits for {db['service']}:{db['port']} over TCP",
                "verify the final schema (tables created, minus dropped, renamed)"]
    if comp.type == "tls":
        names = [c["secret"] for c in comp.settings.get("certificates") or []]
        names += [s["secret"] for s in comp.settings.get("signing") or []]
        return [f"unless present and valid: generate CA {comp.settings['ca']['common_name']} "
                f"(ConfigMap {comp.settings['ca']['configmap']}) and Secrets {', '.join(names)} {_API}",
                f"write the CA certificate to {cfg.ca_file}"]
    lines = [f"apply {', '.join(_short(m, cfg) for m in comp.manifests)} {_API}"]
    if comp.images:
        lines.append("images: " + ", ".join(cfg.image_ref(i) for i in comp.images)
                     + " (pod templates carry the loaded image IDs: new content rolls them)")
    for kind, status in comp.status.items():
        lines.append(f"set status {dict(status)} on each {kind}")
    if comp.wait:
        lines.append(f"wait for deployment(s) {', '.join(comp.wait)} in {ns} (timeout {cfg.ready_timeout}s,"
                     " fail fast on crash loops)")
    return lines


def health_urls(cfg: E2EConfig) -> dict[str, str]:
    """Health check name -> the URL the host polls (through the published host port)."""
    return {h.name: cfg.url(h.endpoint) + h.path for h in cfg.stack.health}


def _health_lines(cfg: E2EConfig) -> list[str]:
    lines = [f"GET {url} until 200 (timeout {cfg.health_timeout}s"
             + (f"; TLS verified with {cfg.ca_file})" if url.startswith("https") else ")")
             for url in health_urls(cfg).values()]
    if cfg.stack.deployments:
        lines.append(f"each of {', '.join(cfg.stack.deployments)} has a Running, ready pod")
    return lines
