"""Secret values are replaced by *** wherever this project writes text a person may see."""
from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
#: Values this short would mask ordinary words; no generated secret is this short.
_MIN_LENGTH = 6


class Redactor:
    """Holds the run's secret values (thread-safe) and masks them in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: list[str] = []
        for value in secrets:
            self.add(value)

    def add(self, value: str) -> None:
        value = value.strip()
        if len(value) < _MIN_LENGTH:
            return
        with self._lock:
            if value not in self._secrets:
                self._secrets.append(value)
                # Longest first, so a secret that contains another is masked whole.
                self._secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = list(self._secrets)
        for value in secrets:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self._secrets)


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
