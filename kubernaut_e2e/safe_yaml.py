"""YAML from users (invoke.yaml, CRDs, manifests), loaded with bounds.

PyYAML's safe loader still expands aliases: nine nested `&a [*a, *a, ...]` lines ("billion
laughs") become 10^9 nodes, and Invoke's config merge then walks and formats all of them (it
took minutes and 5.8 GB). None of this project's inputs needs aliases, so a document that
uses one is refused, with its line, before anything builds the expanded data. Files larger
than MAX_BYTES are refused before they are parsed at all.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

#: The largest YAML text accepted; real CRDs are a few hundred kB.
MAX_BYTES = 8 * 1024 * 1024


class UnsafeYAML(ValueError):
    """The text is too large or uses aliases; the message says which, and where."""


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses `*alias` nodes (anchors alone are harmless)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise UnsafeYAML(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not "
                             "accepted here: write the value out")
        return super().compose_node(parent, index)


def check_size(text: str | bytes) -> None:
    if len(text) > MAX_BYTES:
        raise UnsafeYAML(f"{len(text)} bytes is larger than the {MAX_BYTES // (1024 * 1024)} MB accepted")


def load(text: str | bytes) -> Any:
    """One document, like yaml.safe_load; raises UnsafeYAML or yaml.YAMLError."""
    check_size(text)
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)


def load_all(text: str | bytes) -> Iterator[Any]:
    """Every document, like yaml.safe_load_all; raises UnsafeYAML or yaml.YAMLError."""
    check_size(text)
    return yaml.load_all(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)


def load_path(path: Path, label: str) -> Any:
    """One YAML (or, for a `.json` path, JSON) file from a user, as data. Any problem, unreadable
    included, is a UsageError of one line that starts with `label` (e.g. "stack /x.yaml")."""
    import json

    from kubernaut_e2e.errors import UsageError

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{label}: cannot be read: {exc.strerror or exc}") from None
    try:
        check_size(data)
        return json.loads(data or b"null") if path.suffix == ".json" else load(data)
    except (UnsafeYAML, yaml.YAMLError) as exc:
        raise UsageError(f"{label}: {describe_error(exc)}") from None
    except ValueError as exc:  # JSON
        raise UsageError(f"{label}: not valid JSON: {exc}") from None


def describe_error(exc: Exception) -> str:
    """One line for a YAML problem: where and what, never PyYAML's multi-line caret display."""
    if isinstance(exc, UnsafeYAML):
        return str(exc)
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1})" if mark is not None else ""
    what = getattr(exc, "problem", None) or " ".join(str(exc).split())
    return f"not valid YAML{where}: {what}"
