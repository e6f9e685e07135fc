"""Running the project's commands on a remote host over SSH (a Fabric `Connection`).

`RemoteRunner` is runner.py's `Runner` for another machine, with the same contract as
`LocalRunner`: an argument list (quoted for the remote shell with `shlex.join`, never a config
value pasted into a shell string), the same timeouts, the step log with secrets masked,
`on_line` for live progress, Invoke's `--dry`, and cancellation. Locally a command runs in its
own process group so one `killpg` stops its whole tree; here the command is started in its own
session on the host (`setsid`), reports its process group id first, and cancel, a timeout or
Ctrl-C sends TERM and then KILL to that group over the connection. If the connection itself is
lost (a second Ctrl-C exits at once, a network drop), a watchdog next to the command sees its
stdin close and kills the group, so nothing started by a run is left running on the host.

`open_connection` connects the way CI needs: keys or ssh-agent only, never a password prompt,
a bounded connect time, known_hosts honoured, and every failure one line (exit 2).
Fabric and paramiko are imported inside functions: `invoke --list` must not load them.
"""
from __future__ import annotations

import re
import select
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, BinaryIO

from kubernaut_e2e.errors import UsageError
from kubernaut_e2e.redact import Redactor
from kubernaut_e2e.runner import (
    KILL_GRACE,
    Cancellation,
    CommandFailed,
    CommandResult,
    _open_log,
    _raise_if_log_failed,
    _tail,
    format_command,
)

if TYPE_CHECKING:
    from fabric import Connection
    from kubernaut_e2e.hosts import HostSpec

#: ~/.ssh/known_hosts, read (never written): a host whose key differs from it is refused.
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")

#: The first line the wrapper prints, before any output of the command.
_MARK = "@kubernaut-e2e "
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: The remote side of every command, POSIX sh, given as `sh -c WRAPPER sh CWD TENTHS NENV
#: [NAME=VALUE...] ARGV...` (all quoted by shlex.join; TENTHS is the grace in 0.1 s). It checks
#: the folder and the command, starts the command in a session of its own (a background job is
#: not a group leader, so `setsid` does not fork and the printed $$ is the command's pid, session
#: and group id), and leaves a watchdog reading the SSH channel's stdin: when that closes while the command still
#: runs (the client is gone), the watchdog sends TERM, waits up to the grace, sends KILL.
WRAPPER = r"""
d=$1 g=$2 n=$3
shift 3
while [ "$n" -gt 0 ]; do export "$1"; shift; n=$((n - 1)); done
if [ -n "$d" ] && ! cd "$d" 2>/dev/null; then echo "@kubernaut-e2e nocwd"; exit 127; fi
if ! command -v "$1" >/dev/null 2>&1; then echo "@kubernaut-e2e missing"; exit 127; fi
exec 3<&0
setsid sh -c 'echo "@kubernaut-e2e pgid $$"; exec "$@"' sh "$@" </dev/null 3<&- &
p=$!
(
  while read -r _ <&3; do :; done
  if kill -0 "$p" 2>/dev/null; then
    kill -s TERM -- "-$p" 2>/dev/null
    i=0
    while [ "$i" -lt "$g" ] && kill -0 -- "-$p" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    kill -s KILL -- "-$p" 2>/dev/null
  fi
) >/dev/null 2>&1 &
exec 3<&-
wait "$p"
"""

#: Stops process group $1: TERM, up to $2 tenths of a second for it to go, then KILL.
STOP_GROUP = r"""
kill -s TERM -- "-$1" 2>/dev/null
i=0
while [ "$i" -lt "$2" ] && kill -0 -- "-$1" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
kill -s KILL -- "-$1" 2>/dev/null
exit 0
"""


@dataclass(frozen=True)
class SSHOptions:
    """How hosts are reached. There is never a password prompt: keys and ssh-agent only."""

    identity: Path | None = None  # a private key to try first (like ssh -i); agent and ~/.ssh/id_* too
    known_hosts: Path | None = DEFAULT_KNOWN_HOSTS  # None: host keys are not checked
    strict_host_keys: bool = False  # True: refuse hosts missing from known_hosts (else accepted, not saved)
    connect_timeout: float = 10.0  # seconds for TCP connect, SSH banner and authentication each
    ssh_config: bool = True  # read ~/.ssh/config (Host aliases, User, Port, IdentityFile)


def remote_command(argv: Sequence[str], *, cwd: str | PurePath | None = None,
                   env: Mapping[str, str] | None = None, grace: float = KILL_GRACE) -> str:
    """The command line sent to the host's shell for `argv`. Pure.

    Every value is a separate, shell-quoted word of the wrapper's argument list; nothing from
    `argv`, `cwd` or `env` is ever parsed by a shell as code.
    """
    pairs = [f"{key}={value}" for key, value in (env or {}).items()]
    for key in (env or {}):
        if not _ENV_NAME.match(key):
            raise ValueError(f"not an environment variable name: {key!r}")
    if not argv:
        raise ValueError("empty command")
    return shlex.join(["sh", "-c", WRAPPER, "sh", str(cwd or ""), str(_tenths(grace)), str(len(pairs)), *pairs,
                       *(str(a) for a in argv)])


def _tenths(seconds: float) -> int:
    return max(1, round(seconds * 10))


def open_connection(spec: HostSpec, options: SSHOptions) -> Connection:
    """An open Fabric Connection to `spec`, or UsageError with one line saying why not."""
    import socket

    import paramiko
    from fabric import Config, Connection

    # An explicit (empty) SSHConfig keeps Fabric from reading ~/.ssh/config and /etc/ssh/ssh_config.
    config = Config() if options.ssh_config else Config(ssh_config=paramiko.SSHConfig())
    connect_kwargs: dict[str, Any] = {
        "allow_agent": True,
        "look_for_keys": True,
        "banner_timeout": options.connect_timeout,
        "auth_timeout": options.connect_timeout,
    }
    if options.identity is not None:
        connect_kwargs["key_filename"] = str(options.identity.expanduser())
    connection = Connection(spec.host, user=spec.user, port=spec.port, config=config,
                            connect_timeout=max(1, round(options.connect_timeout)),
                            connect_kwargs=connect_kwargs)
    known = options.known_hosts.expanduser() if options.known_hosts else None
    if known is not None and known.is_file():
        connection.client.load_system_host_keys(str(known))  # read-only: never written back
    if options.strict_host_keys:
        connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    where = f"{connection.host}:{connection.port}"
    label = f"host {spec.label}"
    try:
        connection.open()
    except paramiko.BadHostKeyException:
        raise UsageError(f"{label}: its host key does not match {known} (if the host was reinstalled, "
                         f"remove its line with `ssh-keygen -R '[{connection.host}]:{connection.port}'`)"
                         ) from None
    except paramiko.AuthenticationException:
        raise UsageError(f"{label}: authentication failed for user {connection.user!r} with keys and "
                         "ssh-agent (passwords are never tried): add your public key to the host's "
                         "~/.ssh/authorized_keys or load your key into ssh-agent") from None
    except paramiko.SSHException as exc:
        if "not found in known_hosts" in str(exc):
            raise UsageError(f"{label}: not in {known} and strict host key checking is on "
                             f"(connect once with ssh to add it)") from None
        if "banner" in str(exc) or "No existing session" in str(exc):  # the handshake never came
            raise UsageError(f"{label}: no SSH answer from {where} within {options.connect_timeout:g}s "
                             "(is that an SSH server?)") from None
        raise UsageError(f"{label}: SSH handshake with {where} failed: {exc}") from None
    except socket.gaierror:
        raise UsageError(f"{label}: cannot resolve host name {connection.host!r}") from None
    except TimeoutError:  # socket.timeout is TimeoutError
        raise UsageError(f"{label}: no answer from {where} within {options.connect_timeout:g}s") from None
    except paramiko.ssh_exception.NoValidConnectionsError:
        raise UsageError(f"{label}: cannot connect to {where}: connection refused (is sshd running there, "
                         "on that port?)") from None
    except OSError as exc:
        raise UsageError(f"{label}: cannot connect to {where}: {exc.strerror or exc}") from None
    return connection


@dataclass(frozen=True)
class Exchange:
    """The outcome of `run_simple`: exit status, decoded output, and the stdin bytes sent."""

    returncode: int
    stdout: str
    stderr: str
    bytes_sent: int


def run_simple(connection: Connection, argv: Sequence[str], *, input: Iterable[bytes] = (),
               timeout: float | None = None, cancellation: Cancellation | None = None,
               stdout_to: BinaryIO | None = None) -> Exchange:
    """Run a short command of this project's own (no log, no wrapper), streaming `input` to it.

    For the small helpers around the real work (the preflight probe, the source sync's `tar`):
    stdin is closed after `input`, so the command ends when it has read everything. A timeout
    or cancellation closes the channel, which ends such commands (they see EOF or SIGPIPE).
    `stdout_to` gets the command's stdout as bytes (a `tar` stream) instead of the Exchange.
    """
    channel = connection.create_session()
    deadline = None if timeout is None else time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    sent = 0

    def pump(block: float) -> None:
        if channel.recv_ready():
            data = channel.recv(65536)
            if stdout_to is not None:
                stdout_to.write(data)
            else:
                out.extend(data)
        elif channel.recv_stderr_ready():
            err.extend(channel.recv_stderr(65536))
        else:
            select.select([channel], [], [], block)

    def stop_if_due() -> None:
        if cancellation is not None and cancellation.cancelled:
            channel.close()
            cancellation.check()
        if deadline is not None and time.monotonic() > deadline:
            channel.close()
            raise TimeoutError(f"`{shlex.join(argv)}` on {connection.host} timed out after {timeout:g}s")

    try:
        channel.exec_command(shlex.join(argv))
        ended = False  # the command stopped reading (it failed early): its status says why
        for chunk in input:
            view = memoryview(chunk)
            while view and not ended:
                stop_if_due()
                if channel.send_ready():
                    n = channel.send(view[:65536])
                    view = view[n:]
                    sent += n
                else:
                    pump(0.05)
                ended = channel.exit_status_ready() or channel.closed
            if ended:
                break
        channel.shutdown_write()
        while not (channel.exit_status_ready() and channel.eof_received
                   and not channel.recv_ready() and not channel.recv_stderr_ready()):
            stop_if_due()
            if channel.closed and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            pump(0.1)
        code = channel.recv_exit_status() if channel.exit_status_ready() else -1
    finally:
        channel.close()
    return Exchange(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), sent)


class _Lines:
    """Splits a byte stream into decoded lines (keeping the newline), holding back the partial tail."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        return [line.decode("utf-8", "replace") + "\n" for line in lines]

    def rest(self) -> list[str]:
        rest, self._buf = self._buf, b""
        return [rest.decode("utf-8", "replace")] if rest else []


class RemoteRunner:
    """Runs commands on a host over an open Fabric Connection; the `Runner` contract of runner.py.

    `base_env` is added to every command's environment on the host (the local environment is
    never sent: the host's own PATH and settings apply). Paths given as `cwd` are paths on the
    host (relative: to the remote user's home).
    """

    def __init__(
        self,
        connection: Connection,
        cancellation: Cancellation,
        *,
        dry: bool = False,
        echo: Callable[[str], None] = print,
        base_env: Mapping[str, str] | None = None,
        redactor: Redactor | None = None,
        label: str | None = None,
    ) -> None:
        self.connection = connection
        self.cancellation = cancellation
        self.dry = dry
        self.echo = echo
        self.base_env = dict(base_env or {})
        self.redactor = redactor or Redactor()
        self.label = label or f"{connection.user}@{connection.host}:{connection.port}"

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
        """Run `argv` on the host; the same contract as `LocalRunner.run`.

        stderr (and stdout unless `capture`) go to the local `log`, secrets masked; `on_line`
        gets each output line as it arrives; `capture` returns stdout, kept out of the log
        when `log_stdout` is False.
        """
        argv = tuple(str(a) for a in argv)
        full_env = {**self.base_env, **(env or {})}
        shown = self.redactor.redact(f"[{self.label}] {format_command(argv, env)}")
        if self.dry:
            self.echo(shown)
            return CommandResult(argv, 0, "", 0.0, dry=True)
        self.cancellation.check()
        grace = self.cancellation.grace
        command = remote_command(argv, cwd=cwd, env=full_env, grace=grace)
        started = time.monotonic()
        sink = _open_log(log, self.redactor, argv, shown)
        # A log write that fails (disk full) is kept in sink.error; the loop below then stops the
        # command, as LocalRunner does, instead of letting it run on unlogged.
        sink.on_error = lambda: None
        captured: list[str] = []
        out_lines, err_lines = _Lines(), _Lines()
        state: dict[str, Any] = {"pgid": None, "marked": False, "status": ""}

        def emit(line: str, *, stdout: bool) -> None:
            if stdout and not state["marked"]:
                if line.startswith(_MARK):
                    state["marked"] = True
                    word, _, value = line[len(_MARK):].strip().partition(" ")
                    state["status"] = word
                    if word == "pgid" and value.isdigit():
                        state["pgid"] = int(value)
                    return
            if stdout and capture:
                captured.append(line)
            if not stdout or log_stdout or not capture:
                sink.write(line)
            if on_line is not None and (stdout or not capture):
                on_line(line)

        try:
            channel = self.connection.create_session()
            channel.set_combine_stderr(not capture)
            channel.exec_command(command)
        except Exception as exc:  # noqa: BLE001 - the connection is gone (paramiko or socket errors)
            sink.close()
            raise CommandFailed(CommandResult(argv, 255, "", 0.0), log, "",
                                f"could not be started on {self.label}: {exc or type(exc).__name__}") from None
        stopping: tuple[str, float] | None = None  # (why, when KILL is due)
        killed = False
        timed_out = False
        try:
            deadline = None if timeout is None else started + timeout
            while True:
                if channel.recv_ready():
                    for line in out_lines.feed(channel.recv(65536)):
                        emit(line, stdout=True)
                    continue
                if channel.recv_stderr_ready():
                    for line in err_lines.feed(channel.recv_stderr(65536)):
                        emit(line, stdout=False)
                    continue
                if channel.exit_status_ready() and (channel.eof_received or channel.closed):
                    break
                now = time.monotonic()
                if channel.exit_status_ready() and stopping is None:
                    # Exited, but something it started still holds its output open: wait a bit.
                    stopping = ("drain", now + grace)
                if stopping is None and (self.cancellation.cancelled or sink.error is not None):
                    stopping = ("cancel", now + grace)
                    self._signal(state["pgid"], "TERM")
                if stopping is None and deadline is not None and now > deadline:
                    timed_out = True
                    stopping = ("timeout", now + grace)
                    self._signal(state["pgid"], "TERM")
                if stopping is not None and now > stopping[1]:
                    if stopping[0] == "drain" or killed:
                        break
                    self._signal(state["pgid"], "KILL")
                    killed = True
                    stopping = (stopping[0], now + grace)
                if channel.closed:
                    break
                select.select([channel], [], [], 0.1)
        except BaseException as exc:
            # Ctrl-C in this thread, or the connection failed: stop the command on the host.
            self._stop_group(state["pgid"], grace)
            channel.close()
            sink.write(f"# stopped after {time.monotonic() - started:.1f}s on {self.label}: {type(exc).__name__}\n")
            sink.close()
            if isinstance(exc, Exception):
                raise CommandFailed(CommandResult(argv, 255, "", time.monotonic() - started), log, _tail(log),
                                    f"lost the connection to {self.label}: {exc or type(exc).__name__}") from None
            raise
        for line in out_lines.rest():
            emit(line, stdout=True)
        for line in err_lines.rest():
            emit(line, stdout=False)
        code = channel.recv_exit_status() if channel.exit_status_ready() else -1
        channel.close()
        duration = time.monotonic() - started
        sink.write(f"# exit {code} after {duration:.1f}s on {self.label}\n")
        sink.close()
        result = CommandResult(argv, code, "".join(captured), duration)
        _raise_if_log_failed(sink, result, log)
        if state["status"] in ("missing", "nocwd"):
            what = (f"{argv[0]} is not on the PATH there" if state["status"] == "missing"
                    else f"no folder {cwd} there")
            raise CommandFailed(CommandResult(argv, 127, "", duration), log, "",
                                f"could not be started on {self.label}: {what}")
        if self.cancellation.cancelled and not result.ok:
            self.cancellation.check()
        if timed_out:
            raise CommandFailed(result, log, _tail(log), f"timed out after {timeout:g}s on {self.label}")
        if code == -1:
            raise CommandFailed(result, log, _tail(log), f"lost the connection to {self.label}")
        if check and not result.ok:
            raise CommandFailed(result, log, _tail(log))
        return result

    def _signal(self, pgid: int | None, sig: str) -> None:
        """Send `sig` to the remote process group; best effort (the watchdog covers a dead link)."""
        if pgid is None:
            return
        try:
            channel = self.connection.create_session()
            channel.exec_command(shlex.join(["kill", "-s", sig, "--", f"-{pgid}"]))
            channel.recv_exit_status()
            channel.close()
        except Exception:  # noqa: BLE001 - the connection may be gone: the watchdog then acts
            pass

    def _stop_group(self, pgid: int | None, grace: float) -> None:
        """TERM, then KILL after the grace, done by the host: this call does not wait for it."""
        if pgid is None:
            return
        try:
            channel = self.connection.create_session()
            channel.exec_command(shlex.join(["sh", "-c", STOP_GROUP, "sh", str(pgid), str(_tenths(grace))]))
        except Exception:  # noqa: BLE001 - the connection may be gone: the watchdog then acts
            pass
