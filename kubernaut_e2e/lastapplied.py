"""Whether an object on the server is already what we would apply, so a warm run only reads.

Server-side apply of an unchanged object changes nothing, but it is still a write request, and a
warm `up` made one for every object of the stack. Skipping it needs two facts, both read from the
object `Kube.apply` fetches anyway:

- the object carries the hash of the manifest we last applied (an annotation we add), so a
  manifest that changed, including one that dropped a field, is applied and server-side apply
  removes what we no longer set;
- every field we set still has our value (someone's `kubectl edit` is put back).

Fields we do not set (the server's defaults, other managers' fields) are not ours to compare. Where
the server stores a value differently from how we wrote it (a Secret's `stringData`, a quantity it
normalizes), the check fails and the object is applied as before: it can only cost a write. Pure.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: The hash of the manifest this tool last applied to the object.
ANNOTATION = "e2e.kubernaut.ai/applied"


def manifest_hash(obj: Mapping[str, Any]) -> str:
    """A short hash of the object as we would send it, without our own annotation."""
    bare = copy.deepcopy(dict(obj))
    metadata = bare.get("metadata") or {}
    if ANNOTATION in (metadata.get("annotations") or {}):
        rest = {k: v for k, v in metadata["annotations"].items() if k != ANNOTATION}
        if rest:
            metadata["annotations"] = rest
        else:
            del metadata["annotations"]  # as the manifest was before with_hash
    text = json.dumps(bare, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def with_hash(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `obj` annotated with its manifest hash (the object to apply)."""
    marked = copy.deepcopy(dict(obj))
    metadata = marked.setdefault("metadata", {})
    metadata["annotations"] = {**(metadata.get("annotations") or {}), ANNOTATION: manifest_hash(obj)}
    return marked


def is_current(live: Mapping[str, Any] | None, manifest: Mapping[str, Any]) -> bool:
    """True when `live` carries `manifest`'s hash and every field it sets (see the docstring)."""
    if live is None:
        return False
    return _covers(live, _as_stored(with_hash(manifest)))


def _as_stored(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """A Secret's stringData is stored base64-encoded under data."""
    if obj.get("kind") != "Secret" or not obj.get("stringData"):
        return obj
    stored = {k: v for k, v in obj.items() if k != "stringData"}
    encoded = {key: base64.b64encode(str(value).encode()).decode() for key, value in obj["stringData"].items()}
    stored["data"] = {**(obj.get("data") or {}), **encoded}
    return stored


def _covers(live: Any, desired: Any) -> bool:
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            key in live and _covers(live[key], value) for key, value in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(
            _covers(have, want) for have, want in zip(live, desired))
    if isinstance(desired, bool) or isinstance(live, bool):
        return live is desired
    return bool(live == desired)
