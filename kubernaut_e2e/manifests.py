"""The project's manifests: templates in manifests/, rendered from the validated config.

Placeholders are `${name}` (string.Template). Every value comes from E2EConfig, whose values
were validated (DNS-1123 names, image references, integers, quantities), or from generated
secrets (hex), so nothing rendered can break out of its YAML scalar.
"""
from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kubernaut_e2e import safe_yaml
from kubernaut_e2e.config import PACKAGE_DIR, E2EConfig
from kubernaut_e2e.errors import UsageError

MANIFEST_DIR = PACKAGE_DIR / "stacks" / "gateway-e2e" / "manifests"

#: Manifests applied by each Kubernetes step, in order.
STEP_MANIFESTS = {
    "namespace": ("namespace.yaml",),
    "infra": ("postgresql.yaml", "redis.yaml"),
    "datastorage": ("datastorage.yaml",),
    "gateway": ("gateway.yaml",),
}


def template_values(cfg: E2EConfig, secrets: Mapping[str, str]) -> dict[str, str]:
    keys = ("namespace", "gateway_image", "datastorage_image", "postgres_image", "redis_image",
            "memory_limit", "cpu_limit", "gateway_node_port", "gateway_host_port",
            "datastorage_node_port", "datastorage_host_port")
    return {**{k: str(getattr(cfg, k)) for k in keys}, **secrets}


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


def render(name: str, values: Mapping[str, str], directory: Path = MANIFEST_DIR) -> list[dict[str, Any]]:
    path = directory / name
    return load_documents(render_text(path, values), str(path))


def describe(obj: Mapping[str, Any]) -> str:
    """`Kind/namespace/name`, for logs; never the object's data (it may be a Secret)."""
    meta = obj.get("metadata", {})
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')}/{ns}{meta.get('name')}"
