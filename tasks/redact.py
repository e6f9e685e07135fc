"""Secret values are replaced by *** wherever this project writes text a person may see."""
from __future__ import annotations

import threading
from collections.abc import Iterable

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
