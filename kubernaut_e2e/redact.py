"""Secret values are replaced by *** wherever this project writes text a person may see.

A secret leaks in more shapes than its literal value: a crashing pod prints its DSN
URL-encoded, a basic-auth header carries base64 of `user:password`, a Secret manifest carries
base64 of the value, and a container log exported by kind may hold bytes that are not UTF-8
around it. So each value is masked as itself, URL-encoded, and base64-encoded at any position
inside a longer base64 run (whatever precedes it, e.g. `user:`): for each of the three byte
alignments, the part of the encoding that depends on the secret alone is searched for, and the
whole base64 token around a match is masked. `redact_bytes` does the same over raw bytes.
"""
from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
#: Values this short would mask ordinary words; no generated secret is this short.
_MIN_LENGTH = 6
#: A base64 fragment shorter than this could match by chance in unrelated data.
_MIN_CORE = 8
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_")


def encoded_forms(value: str) -> tuple[list[str], list[str]]:
    """(literal forms, base64 fragments) under which `value` may appear. Pure.

    The fragments are the characters of base64(prefix + value) that do not depend on the
    prefix or on what follows, for prefixes of length 0, 1 and 2 (mod 3), in the standard and
    URL-safe alphabets.
    """
    literals = [value]
    for form in (quote(value, safe=""), quote_plus(value), quote(value)):
        if form not in literals:
            literals.append(form)
    raw = value.encode()
    cores: list[str] = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        whole_groups = (shift + len(raw)) // 3
        core = encoded[4 if shift else 0: 4 * whole_groups]
        for form in (core, core.replace("+", "-").replace("/", "_")):
            if len(form) >= _MIN_CORE and form not in cores:
                cores.append(form)
    return literals, cores


def _spans(text: Any, matches: Iterable[re.Match[Any]], chars: Any) -> list[tuple[int, int]]:
    """Each base64 match widened to the whole base64 token around it, overlaps merged."""
    spans: list[tuple[int, int]] = []
    size = len(text)
    for match in matches:
        start, end = match.start(), match.end()
        while start > 0 and text[start - 1:start] in chars:
            start -= 1
        while end < size and text[end:end + 1] in chars:
            end += 1
        while end < size and text[end:end + 1] in (("=",) if isinstance(text, str) else (b"=",)):
            end += 1
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    return spans


class Redactor:
    """Holds the run's secret values (thread-safe) and masks them in text and in bytes."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: list[str] = []
        self._literals: list[str] = []
        self._cores: list[str] = []
        self._compiled: tuple[Any, ...] | None = None
        for value in secrets:
            self.add(value)

    def add(self, value: str) -> None:
        value = value.strip()
        if len(value) < _MIN_LENGTH:
            return
        literals, cores = encoded_forms(value)
        with self._lock:
            if value in self._secrets:
                return
            self._secrets.append(value)
            self._literals.extend(form for form in literals if form not in self._literals)
            # Longest first, so a secret that contains another is masked whole.
            self._literals.sort(key=len, reverse=True)
            self._cores.extend(core for core in cores if core not in self._cores)
            self._compiled = None

    def _patterns(self) -> tuple[Any, ...]:
        with self._lock:
            if self._compiled is None:
                literal = "|".join(re.escape(form) for form in self._literals)
                core = "|".join(re.escape(form) for form in sorted(self._cores, key=len, reverse=True))
                self._compiled = (
                    re.compile(literal) if literal else None,
                    re.compile(core) if core else None,
                    re.compile(literal.encode()) if literal else None,
                    re.compile(core.encode()) if core else None,
                )
            return self._compiled

    def redact(self, text: str) -> str:
        literal, core, _, _ = self._patterns()
        if literal is None:
            return text
        text = literal.sub(MASK, text)
        if core is not None:
            text = _replace(text, _spans(text, core.finditer(text), _B64_CHARS), MASK)
        return text

    def redact_bytes(self, data: bytes) -> bytes:
        """The same masking over raw bytes: a log that is not UTF-8 is masked all the same."""
        _, _, literal, core = self._patterns()
        if literal is None:
            return data
        data = literal.sub(MASK.encode(), data)
        if core is not None:
            data = _replace(data, _spans(data, core.finditer(data), _B64_BYTES), MASK.encode())
        return data

    def __bool__(self) -> bool:
        return bool(self._secrets)


_B64_BYTES = frozenset(c.encode() for c in _B64_CHARS)


def _replace(text: Any, spans: list[tuple[int, int]], mask: Any) -> Any:
    if not spans:
        return text
    parts = []
    last = 0
    for start, end in spans:
        parts += [text[last:start], mask]
        last = end
    parts.append(text[last:])
    return text[:0].join(parts)


#: Secret keys (and keys inside file-shaped Secret values) whose values are credentials.
_SENSITIVE = re.compile(r"pass|token|secret|key|cred|cert", re.IGNORECASE)


def secret_values(secret: Mapping[str, Any]) -> list[str]:
    """The credentials a Secret object holds, in stringData or (base64) data. Pure.

    User and database names are not included: masking "postgres" would make logs unreadable.
    File-shaped values ("password: x" inside db-secrets.yaml) are searched line by line.
    """
    values = dict(secret.get("stringData") or {})
    for key, value in (secret.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(value).decode()
        except (ValueError, UnicodeDecodeError):
            continue
    found: list[str] = []
    for key, value in values.items():
        if _SENSITIVE.search(key):
            found.append(str(value))
        for line in str(value).splitlines():
            inner_key, sep, inner = line.partition(":")
            if sep and _SENSITIVE.search(inner_key):
                found.append(inner.strip().strip('"'))
    return found
