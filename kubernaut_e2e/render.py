"""`e2e.render`: write everything `up` would apply, in apply order, for review and diffing.

Like `skaffold render` or `helm template`: the kind config and one file per Kubernetes step, in
the order the step graph runs them (ties broken by declaration order), with each generated
credential, key and certificate replaced by a `<generated:...>` placeholder. Nothing is contacted:
no cluster, no provider. The files are numbered so that `ls` shows the apply order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubernaut_e2e import manifests, migrations as mig
from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.errors import UsageError
from kubernaut_e2e.stack import Component


def _tls_placeholders(comp: Component, namespace: str) -> list[dict[str, Any]]:
    settings = comp.settings
    ca = settings["ca"]
    objects: list[dict[str, Any]] = [{
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": ca["configmap"], "namespace": namespace},
        "data": {ca["key"]: manifests.GENERATED.format(name=f"{ca['common_name']} certificate")}}]
    for entry in [*(settings.get("certificates") or []), *(settings.get("signing") or [])]:
        name = entry["secret"]
        objects.append({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": {"tls.crt": manifests.GENERATED.format(name=f"{name} tls.crt"),
                           "tls.key": manifests.GENERATED.format(name=f"{name} tls.key")}})
    return objects


def component_objects(cfg: E2EConfig, comp: Component) -> list[dict[str, Any]]:
    """What a component's step would apply (generated values as placeholders)."""
    ns = cfg.namespace
    if comp.type == "crds":
        files = sorted(cfg.source_dir.glob(comp.settings["source"]))
        docs = [d for path in files for d in manifests.load_documents(path.read_text(), str(path))]
        return [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    if comp.type == "migrations":
        loaded = mig.load_migrations(sorted(cfg.source_dir.glob(comp.settings["source"])))
        db = comp.settings["database"]
        return [mig.configmap(loaded, ns),
                mig.job(ns, cfg.stack.preload[db["preload"]], db, cfg.ready_timeout)]
    if comp.type == "tls":
        return _tls_placeholders(comp, ns)
    values = manifests.template_values(cfg, manifests.placeholder_secrets(cfg))
    return manifests.render_component(comp, values)


def render_stack(cfg: E2EConfig, out_dir: Path) -> list[Path]:
    """Write the kind config and each component's objects into `out_dir`; return the files."""
    from kubernaut_e2e.steps import build_registry, kind_config_text

    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: exists and is not a folder")
    order = [n for n in build_registry(cfg.stack).graph().order if n in {c.name for c in cfg.stack.components}]
    # Everything is rendered before anything is written: an error leaves no half-written folder.
    rendered: list[tuple[str, str]] = [("00-kind-config.yaml", kind_config_text(cfg))]
    for index, name in enumerate(order, start=1):
        comp = cfg.stack.component(name)
        objects = component_objects(cfg, comp)
        header = f"# step {name} ({comp.type}): {comp.help}\n"
        rendered.append((f"{index:02d}-{name}.yaml", header + yaml.safe_dump_all(objects, sort_keys=False,
                                                                                 width=120)))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, text in rendered:
        path = out_dir / file_name
        path.write_text(text)
        written.append(path)
    return written
