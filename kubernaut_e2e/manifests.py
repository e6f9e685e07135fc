"""A stack's manifests: templates rendered from the validated config and the stack's data.

Placeholders are `${name}` (string.Template; `$$` is a literal `$`). Every value comes from
E2EConfig and its Stack, whose values were validated (DNS-1123 names, image references, ports),
or from generated secrets (hex), so nothing rendered can break out of its YAML scalar.
`template_values` is the one place that says which names exist (kubernaut_e2e.stack checks the
manifests against the same list when the stack is loaded).
"""
from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from kubernaut_e2e import safe_yaml
from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.errors import UsageError
from kubernaut_e2e.stack import Component

#: What `render` and the preflight put where a generated secret goes: never a real value.
GENERATED = "<generated:{name}>"
#: Pod-template annotation that carries the ID of the image a container runs, so that a
#: rebuilt image with an unchanged tag still rolls the Deployment.
IMAGE_ID_ANNOTATION = "e2e.kubernaut.ai/image-{container}"
_WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def _var(name: str) -> str:
    return name.replace("-", "_")


def template_values(cfg: E2EConfig, secrets: Mapping[str, str]) -> dict[str, str]:
    """Every `${name}` a manifest may use. `secrets` maps stack secret names to values."""
    stack = cfg.stack
    values = {
        "namespace": stack.namespace,
        "cluster_name": cfg.cluster_name,
        # Our images exist only inside the kind node (loaded, never pushed): never pull them.
        "image_pull_policy": "Never",
        "kubeconfig": str(cfg.kubeconfig),
        "ca_file": str(cfg.ca_file),
    }
    values.update({f"image_{_var(i.name)}": cfg.image_ref(i.name) for i in stack.images})
    values.update({f"preload_{_var(alias)}": ref for alias, ref in stack.preload.items()})
    for port in stack.cluster.ports:
        values[f"node_port_{port.var}"] = str(port.node_port)
        values[f"host_port_{port.var}"] = str(cfg.host_port(port.name))
    values.update({f"url_{_var(ep.name)}": cfg.url(ep.name) for ep in stack.endpoints})
    for secret in stack.secrets:
        values[secret.var] = secrets.get(secret.name, GENERATED.format(name=secret.name))
    return values


def placeholder_secrets(cfg: E2EConfig) -> dict[str, str]:
    """Stand-ins for generated secrets, for `render` and the preflight's syntax check."""
    return {s.name: GENERATED.format(name=s.name) for s in cfg.stack.secrets}


def render_text(path: Path, values: Mapping[str, str]) -> str:
    try:
        return string.Template(path.read_text()).substitute(values)
    except KeyError as exc:
        raise UsageError(f"manifest {path}: unknown placeholder ${{{exc.args[0]}}}") from None
    except ValueError as exc:
        raise UsageError(f"manifest {path}: bad placeholder: {exc}") from None


def load_documents(text: str, source: str, *, require_name: bool = True) -> list[dict[str, Any]]:
    """Parse multi-document YAML into objects; a document must have kind (and metadata.name)."""
    try:
        docs = [d for d in safe_yaml.load_all(text) if d is not None]
    except safe_yaml.UnsafeYAML as exc:  # aliases (a YAML bomb) or a huge file: refused unparsed
        raise UsageError(f"manifest {source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"manifest {source}: not valid YAML: {' '.join(str(exc).split())}") from None
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc:
            raise UsageError(f"manifest {source}: every document needs a kind")
        if require_name and "name" not in (doc.get("metadata") or {}):
            raise UsageError(f"manifest {source}: {doc['kind']} without metadata.name")
    return docs


def render(path: Path, values: Mapping[str, str]) -> list[dict[str, Any]]:
    return load_documents(render_text(path, values), str(path))


def render_component(component: Component, values: Mapping[str, str]) -> list[dict[str, Any]]:
    """The objects of a component's manifests, in file and document order."""
    return [obj for manifest in component.manifests for obj in render(Path(manifest), values)]


def pin_image_ids(objects: Iterable[dict[str, Any]], image_ids: Mapping[str, str]) -> list[dict[str, Any]]:
    """Annotate pod templates with the ID of each image ref they run (from `image_ids`). Pure.

    A rebuilt image keeps its tag, so without this the Deployment would not change, server-side
    apply would be a no-op and the old binary would keep running. With it, new content means a
    new template (a rollout) and unchanged content means no change at all.
    """
    out = []
    for obj in objects:
        template = (obj.get("spec") or {}).get("template") if obj.get("kind") in _WORKLOADS else None
        if template is not None:
            notes = {}
            for container in (template.get("spec") or {}).get("containers") or []:
                image_id = image_ids.get(container.get("image", ""))
                if image_id:
                    notes[IMAGE_ID_ANNOTATION.format(container=container["name"])] = image_id
            if notes:
                template.setdefault("metadata", {}).setdefault("annotations", {}).update(notes)
        out.append(obj)
    return out


def describe(obj: Mapping[str, Any]) -> str:
    """`Kind/namespace/name`, for logs; never the object's data (it may be a Secret)."""
    meta = obj.get("metadata", {})
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')}/{ns}{meta.get('name')}"
