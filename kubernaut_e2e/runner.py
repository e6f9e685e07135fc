"""The one way this project runs external commands.

Every `kind`, `podman` and `docker` call goes through a `Runner`, always as an argument list
(never a shell string), so no config value is ever interpreted by a shell. `LocalRunner` runs
each command in its own process group, which is what lets a failing or interrupted run stop a
whole `podman build` tree at once. A remote runner (a Fabric `Connection`, which is an Invoke
`Context`) can implement the same `run` signature with `shlex.join(argv)`.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kubernaut_e2e.errors import Cancelled, E2EError
from kubernaut_e2e.redact import Redactor

#: Seconds between SIGTERM and SIGKILL when stopping a process group.
KILL_GRACE = 5.0


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    duration: float
    dry: bool = False  # True when nothing ran (Invoke's --dry): stdout tells nothing

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class CommandFailed(E2EError):
    """A command exited non-zero (or timed out); the message names it and its log."""

    def __init__(self, result: CommandResult, log: Path | None, tail: str, why: str = "") -> None:
        self.result = result
        self.log = log
        self.tail = tail
        if not why and result.returncode < 0:
            try:
                name = signal.Signals(-result.returncode).name
            except ValueError:
                name = f"signal {-result.returncode}"
            why = f"was killed by {name}"
        why = why or f"exited with code {result.returncode}"
        where = f" (log: {log})" if log else ""
        super().__init__(f"`{format_command(result.argv)}` {why}{where}")


def format_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """A copy-pasteable rendering of a command, every value shell-quoted."""
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    return f"{prefix} {shlex.join(argv)}".strip()


class Cancellation:
    """A run-wide stop signal that also terminates every registered process group.

    Steps are threads and cannot be killed, so they stop cooperatively: `cancelled` is checked
    before each command, and commands already running are stopped by killing their groups.
    """

    def __init__(self, grace: float = KILL_GRACE) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self.grace = grace
        self.reason = ""

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True when cancelled meanwhile."""
        return self._event.wait(timeout)

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled(f"stopped: {self.reason}" if self.reason else "stopped")

    def register(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.add(proc)
            cancelled = self._event.is_set()
        if cancelled:  # raced with cancel(): make sure this one dies too
            self._terminate([proc])

    def unregister(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.discard(proc)

    def cancel(self, reason: str = "") -> None:
        with self._lock:
            if not self._event.is_set():
                self.reason = reason
            self._event.set()
            procs = list(self._procs)
        self._terminate(procs)

    def kill_now(self) -> None:
        """SIGKILL every registered process group at once (a second Ctrl-C)."""
        self._event.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            _signal_group(proc, signal.SIGKILL)

    def _terminate(self, procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        if procs:
            threading.Thread(target=self._kill_after_grace, args=(procs,), daemon=True).start()

    def _kill_after_grace(self, procs: list[subprocess.Popen[bytes]]) -> None:
        deadline = time.monotonic() + self.grace
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The leader may be gone while children of the group live on: kill the group anyway.
            _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Runner(Protocol):
    def run(
        self,
        argv: Sequence[str],
        *,
        log: Path | None = None,
        env: Mapping[str, str] | None = None,
        capture: bool = False,
        check: bool = True,
        timeout: float | None = None,
        log_stdout: bool = True,
        cwd: Path | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> CommandResult: ...


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - 16384))
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


class LocalRunner:
    """Runs commands on this machine; honours Invoke's `--dry` by echoing instead of running."""

    def __init__(
        self,
        cancellation: Cancellation,
        *,
        dry: bool = False,
        echo: Callable[[str], None] = print,
        base_env: Mapping[str, str] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.cancellation = cancellation
        self.dry = dry
        self.echo = echo
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.redactor = redactor or Redactor()

    def run(
        self,
        argv: Sequence[str],
        *,
        log: Path | None = None,
        env: Mapping[str, str] | None = None,
        capture: bool = False,
        check: bool = True,
        timeout: float | None = None,
        log_stdout: bool = True,
        cwd: Path | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> CommandResult:
        """Run `argv`; stderr (and stdout unless `capture`) go to `log`, secrets masked.

        `on_line` is called with each output line as it arrives (for live progress).

        `capture` returns stdout for parsing; it is copied to the log unless `log_stdout` is
        False (for output that holds credentials, like a kubeconfig).
        """
        argv = tuple(str(a) for a in argv)
        shown = self.redactor.redact(format_command(argv, env))
        if self.dry:
            self.echo(shown)
            return CommandResult(argv, 0, "", 0.0, dry=True)
        self.cancellation.check()
        started = time.monotonic()
        sink = _LogSink(log, self.redactor)
        sink.write(f"$ {shown}\n")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE if capture else subprocess.STDOUT,
                env={**self.base_env, **(env or {})},
                cwd=cwd,
                start_new_session=True,  # own process group: killpg stops the whole tree
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            sink.close()
            raise CommandFailed(CommandResult(argv, 127, "", 0.0), log, "",
                                f"could not be started: {exc.strerror}") from None
        self.cancellation.register(proc)
        captured: list[str] = []
        # Output is copied line by line (not left to the child to write) so it can be masked,
        # and so the log fills while the command runs.
        readers = [threading.Thread(target=_pump, args=(proc.stdout, sink, captured if capture else None,
                                                         log_stdout or not capture, on_line), daemon=True)]
        if capture:
            readers.append(threading.Thread(target=_pump, args=(proc.stderr, sink, None, True, None),
                                            daemon=True))
        for reader in readers:
            reader.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=self.cancellation.grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        finally:
            self.cancellation.unregister(proc)
        for reader in readers:
            reader.join(timeout=self.cancellation.grace)
        sink.write(f"# exit {proc.returncode} after {time.monotonic() - started:.1f}s\n")
        sink.close()
        result = CommandResult(argv, proc.returncode, "".join(captured), time.monotonic() - started)
        if self.cancellation.cancelled and not result.ok:
            self.cancellation.check()
        if timed_out:
            raise CommandFailed(result, log, _tail(log), f"timed out after {timeout:g}s")
        if check and not result.ok:
            raise CommandFailed(result, log, _tail(log))
        return result


class _LogSink:
    """A step log that several reader threads append whole, masked lines to."""

    def __init__(self, path: Path | None, redactor: Redactor) -> None:
        self._fh = path.open("a", encoding="utf-8") if path else None
        self._lock = threading.Lock()
        self._redactor = redactor

    def write(self, text: str) -> None:
        if self._fh is not None:
            with self._lock:
                self._fh.write(self._redactor.redact(text))
                self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _pump(stream: Any, sink: _LogSink, captured: list[str] | None, to_log: bool,
          on_line: Callable[[str], None] | None) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace")
        if captured is not None:
            captured.append(line)
        if to_log:
            sink.write(line)
        if on_line is not None:
            on_line(line)
    stream.close()
