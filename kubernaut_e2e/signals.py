"""Ctrl-C and SIGTERM during a run: stop cleanly once, exit at once the second time."""
from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubernaut_e2e.errors import EXIT_INTERRUPTED
from kubernaut_e2e.runner import Cancellation


@contextmanager
def signals_as_interrupts(cancellation: Cancellation) -> Iterator[None]:
    """SIGTERM stops the run like Ctrl-C; a second Ctrl-C/SIGTERM exits at once.

    The first signal becomes a KeyboardInterrupt in the scheduler thread, which cancels the
    steps (terminating their process groups) and prints the partial table. A second one kills
    every process group still registered and exits 130 without waiting.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = {"count": 0}

    def handler(signum: int, frame: Any) -> None:
        seen["count"] += 1
        if seen["count"] == 1:
            raise KeyboardInterrupt
        cancellation.kill_now()
        os._exit(EXIT_INTERRUPTED)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
