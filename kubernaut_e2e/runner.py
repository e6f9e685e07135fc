"""The one way this project runs external commands.

Every `kind`, `podman` and `docker` call goes through a `Runner`, always as an argument list
(never a shell string), so no config value is ever interpreted by a shell. `LocalRunner` runs
each command in its own process group, which is what lets a failing or interrupted run stop a
whole `podman build` tree at once. A remote runner (a Fabric `Connection`, which is an Invoke
`Context`) can implement the same `run` signature with `shlex.join(argv)`.
"""
from __future__ import annotations

import os
import re
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

#: Seconds between SIGTERM and SIGKILL when stopping a process group. Short enough that an
#: interrupted run exits within 5 s even when a command ignores SIGTERM.
KILL_GRACE = 3.0


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
    """A command exited non-zero (or timed out); the message names it, why, and its log."""

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
        if not why:
            why = f"exited with code {result.returncode}"
            said = error_line(tail)
            if said:
                why += f": {said}"
        where = f" (log: {log})" if log else ""
        super().__init__(f"`{format_command(result.argv)}` {why}{where}")


#: Words that make a log line the one worth quoting when a command fails.
_ERROR_WORDS = re.compile(r"\b(error|fatal|failed|no space left on device|permission denied)\b",
                          re.IGNORECASE)


def error_line(tail: str, limit: int = 200) -> str:
    """The last line of a failed command's output that says what went wrong (or ""). Pure.

    "exited with code 125" alone hides "no space left on device"; the console shows this line.
    """
    for line in reversed(tail.splitlines()):
        text = " ".join(line.split())
        if text.startswith(("$ ", "# exit ")):
            continue
        if _ERROR_WORDS.search(text):
            return text if len(text) <= limit else text[: limit - 3] + "..."
    return ""


def format_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """A copy-pasteable rendering of a command, every value shell-quoted."""
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    return f"{prefix} {shlex.join(argv)}".strip()


class ProcessWatcher(Protocol):
    """Told about every process group a Cancellation starts tracking (e.g. the cluster lock)."""

    def group_started(self, pgid: int, argv: Sequence[str]) -> None: ...
    def group_ended(self, pgid: int) -> None: ...


class Cancellation:
    """A run-wide stop signal that also terminates every registered process group.

    Steps are threads and cannot be killed, so they stop cooperatively: `cancelled` is checked
    before each command (and between API retries), and commands already running are stopped by
    killing their groups.

    `cancel()` is fail-fast ("step X failed"); `interrupt()` is the user's signal. A `child()`
    (one per phase: the step graph, a clean) has its own fail-fast, but an interrupt or a
    `kill_now()` of the parent reaches every child, so one signal stops whatever runs.
    """

    def __init__(self, grace: float = KILL_GRACE, *, parent: Cancellation | None = None) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._children: list[Cancellation] = []
        self._watchers: list[ProcessWatcher] = []
        self._parent = parent
        self.grace = grace
        self.reason = ""
        self.signal = ""  # the signal's name once interrupted (SIGINT, SIGTERM, SIGHUP)

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def interrupted(self) -> bool:
        return bool(self.signal)

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True when cancelled meanwhile."""
        return self._event.wait(timeout)

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled(f"stopped: {self.reason}" if self.reason else "stopped")

    def child(self) -> Cancellation:
        """A Cancellation for one phase: its failures stay in it, interrupts reach it."""
        child = Cancellation(self.grace, parent=self)
        with self._lock:
            self._children.append(child)
            signal_name = self.signal
        if signal_name:
            child.interrupt(signal_name)
        return child

    def add_watcher(self, watcher: ProcessWatcher) -> None:
        with self._lock:
            self._watchers.append(watcher)

    def _all_watchers(self) -> list[ProcessWatcher]:
        with self._lock:
            own = list(self._watchers)
        return own + (self._parent._all_watchers() if self._parent else [])

    def register(self, proc: subprocess.Popen[bytes], argv: Sequence[str] = ()) -> None:
        with self._lock:
            self._procs.add(proc)
            cancelled = self._event.is_set()
        for watcher in self._all_watchers():
            watcher.group_started(proc.pid, argv)
        if cancelled:  # raced with cancel(): make sure this one dies too
            self._terminate([proc])

    def unregister(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.discard(proc)
        for watcher in self._all_watchers():
            watcher.group_ended(proc.pid)

    def cancel(self, reason: str = "") -> None:
        with self._lock:
            if not self._event.is_set():
                self.reason = reason
            self._event.set()
            procs = list(self._procs)
        self._terminate(procs)

    def interrupt(self, signal_name: str) -> None:
        """The user's signal: cancel this and every child, terminating all their groups."""
        with self._lock:
            if not self.signal:
                self.signal = signal_name
            children = list(self._children)
        self.cancel(f"interrupted by {signal_name}")
        for child in children:
            child.interrupt(signal_name)

    def kill_now(self) -> None:
        """SIGKILL every registered process group at once (a second signal), children's too."""
        self._event.set()
        with self._lock:
            procs = list(self._procs)
            children = list(self._children)
        for proc in procs:
            _signal_group(proc, signal.SIGKILL)
        for child in children:
            child.kill_now()

    def terminate(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop one command's group (SIGTERM, SIGKILL after the grace)."""
        self._terminate([proc])

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
        sink = _open_log(log, self.redactor, argv, shown)
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
        self.cancellation.register(proc, argv)
        # A log that cannot be written (disk full) stops the command at once: otherwise it would
        # block on a pipe nobody drains until command_timeout.
        sink.on_error = lambda: self.cancellation.terminate(proc)
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
        _raise_if_log_failed(sink, result, log)
        # A command stopped by a cancel may still exit 0 (podman 4.3's save does, leaving a
        # truncated archive): once the run is cancelled, no result of it counts as done.
        self.cancellation.check()
        if timed_out:
            raise CommandFailed(result, log, _tail(log), f"timed out after {timeout:g}s")
        if check and not result.ok:
            raise CommandFailed(result, log, _tail(log))
        return result


def _open_log(log: Path | None, redactor: Redactor, argv: tuple[str, ...], shown: str) -> _LogSink:
    """The step's log, opened and headed with the command line before the command starts.

    A log that cannot be written (disk full, read-only) is a CommandFailed, and nothing starts:
    every runner, local or on a host, says the same thing.
    """
    try:
        sink = _LogSink(log, redactor)
        sink.write(f"$ {shown}\n")
    except OSError as exc:
        raise CommandFailed(CommandResult(argv, 127, "", 0.0), None, "",
                            f"was not started: cannot write its log {log}: {_os_error(exc)}") from None
    return sink


def _raise_if_log_failed(sink: _LogSink, result: CommandResult, log: Path | None) -> None:
    """A command whose log failed while it ran was stopped for it (see `_LogSink.on_error`)."""
    if sink.error is not None:
        raise CommandFailed(result, log, "", f"was stopped: cannot write its log {log}: {_os_error(sink.error)}")


def _os_error(exc: OSError) -> str:
    """`No space left on device`, not `[Errno 28] No space left on device: '/x'`."""
    return exc.strerror or str(exc)


class _LogSink:
    """A step log that several reader threads append whole, masked lines to.

    A failed write (disk full, file system gone read-only) is kept in `error`, calls `on_error`
    once, and turns later writes into no-ops: the readers keep draining the pipes.
    """

    def __init__(self, path: Path | None, redactor: Redactor) -> None:
        self._fh = path.open("a", encoding="utf-8") if path else None
        self._lock = threading.Lock()
        self._redactor = redactor
        self.error: OSError | None = None
        self.on_error: Callable[[], None] | None = None

    def write(self, text: str) -> None:
        if self._fh is None:
            return
        with self._lock:
            if self._fh is None or self.error is not None:
                return
            try:
                self._fh.write(self._redactor.redact(text))
                self._fh.flush()
            except OSError as exc:
                self.error = exc
                first = True
            else:
                first = False
        if first:
            if self.on_error is None:
                raise self.error
            self.on_error()

    def close(self) -> None:
        with self._lock:
            fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.close()
            except OSError as exc:  # the last buffered bytes did not fit either
                self.error = self.error or exc


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
