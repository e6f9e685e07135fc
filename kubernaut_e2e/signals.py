"""SIGINT, SIGTERM and SIGHUP during a task: one owner, from the first command to the summary.

Python runs a signal handler in the main thread between any two bytecodes. A handler that
raises KeyboardInterrupt can therefore tear through a half-printed summary or a lock release,
and restoring the default handlers before the summary made a second Ctrl-C exit 1 with no
summary at all. So here a handler only records the signal (one byte into a pipe, which is safe
at any point) and a watcher thread does the work:

1st signal: `cancellation.interrupt(name)`: nothing new starts, every command's process group
    gets SIGTERM (SIGKILL after the grace), API calls return at once. The task then prints its
    partial summary, releases its lock and exits 130.
2nd signal: every process group gets SIGKILL now. The summary is still printed; should the
    task not have finished HURRY seconds later, it exits 130 with one line instead.
3rd signal: exit 130 at once.

SIGHUP (the terminal was closed) is an interrupt like the others: exit 130, nothing left
running. The handlers stay installed until the owner's block ends, after the summary.
"""
from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from kubernaut_e2e.errors import EXIT_INTERRUPTED
from kubernaut_e2e.runner import Cancellation

#: The signals a task owns: Ctrl-C, `kill`, and a closed terminal.
OWNED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Seconds a task may take to print its summary after a second signal.
HURRY = 3.0


def _say(text: str) -> None:
    """One line on stderr from any thread, bypassing Python's (possibly busy) buffered stream."""
    try:
        os.write(2, f"{text}\n".encode())
    except OSError:  # the terminal is gone (SIGHUP): nobody to tell
        pass


class SignalOwner:
    """What the handlers record; `signal_name` is the first signal's name ("" when none)."""

    def __init__(self, cancellation: Cancellation, hurry: float = HURRY) -> None:
        self.cancellation = cancellation
        self.hurry = hurry
        self.received: list[str] = []
        self.count = 0
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._watcher = threading.Thread(target=self._watch, name="signals", daemon=True)
        self._timer: threading.Timer | None = None

    @property
    def signal_name(self) -> str:
        return self.received[0] if self.received else ""

    def handler(self, signum: int, frame: object) -> None:
        self.count += 1  # the handler runs in the main thread: no lock needed
        try:
            os.write(self._write, bytes([signum]))
        except OSError:  # a full pipe already holds enough signals
            pass

    def _watch(self) -> None:
        while True:
            try:
                data = os.read(self._read, 1)
            except OSError:
                return
            if not data or data[0] == 0:  # closed, or told to stop
                return
            name = signal.Signals(data[0]).name
            self.received.append(name)
            if len(self.received) == 1:
                self.cancellation.interrupt(name)
            elif len(self.received) == 2:
                _say(f"{name} again: killing every command now; the summary follows")
                self.cancellation.kill_now()
                self._timer = threading.Timer(self.hurry, self._give_up)
                self._timer.daemon = True
                self._timer.start()
            else:
                self._give_up()

    def _give_up(self) -> None:
        self.cancellation.kill_now()
        _say(f"interrupted ({', '.join(self.received)}): exiting now, without the summary")
        os._exit(EXIT_INTERRUPTED)

    def start(self) -> None:
        self._watcher.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        try:
            os.write(self._write, b"\0")
        except OSError:
            pass
        self._watcher.join(timeout=1.0)
        os.close(self._write)
        os.close(self._read)


@contextmanager
def owned_signals(cancellation: Cancellation) -> Iterator[SignalOwner]:
    """Own SIGINT, SIGTERM and SIGHUP for the block: they interrupt `cancellation`.

    Whoever creates a task's top Cancellation owns the signals (up, clean, ci, test); callees
    get a child of it. Outside the main thread (handlers cannot be installed there) the block
    runs without owning anything. Leaving the block by an exception kills every process group
    still registered, so nothing this task started outlives it.
    """
    owner = SignalOwner(cancellation)
    if threading.current_thread() is not threading.main_thread():
        yield owner
        return
    owner.start()
    previous = {sig: signal.signal(sig, owner.handler) for sig in OWNED}
    try:
        yield owner
    except BaseException:
        cancellation.kill_now()
        raise
    finally:
        # After an interrupt the task is about to exit 130: a further signal in that last moment
        # must not turn it into a death by SIGTERM (exit -15) or a KeyboardInterrupt traceback.
        for sig, old in previous.items():
            signal.signal(sig, _exit_interrupted if owner.count else old)
        owner.stop()


def _exit_interrupted(signum: int, frame: object) -> None:
    raise SystemExit(EXIT_INTERRUPTED)
