"""RemoteRunner over a real sshd on loopback: argument lists, logs, masking, streaming, timeouts,
and that cancel, Ctrl-C and a lost connection leave no process of the command on the host."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kubernaut_e2e.errors import Cancelled
from kubernaut_e2e.redact import Redactor
from kubernaut_e2e.remote import WRAPPER, RemoteRunner, remote_command
from kubernaut_e2e.runner import Cancellation, CommandFailed
from tests.sshd import (  # noqa: F401
    SSHServer,
    process_group_alive,
    ssh_connection,
    sshd,
    start_sshd,
    wait_group_gone,
)


def _runner(connection, **kwargs) -> RemoteRunner:  # type: ignore[no-untyped-def]
    return RemoteRunner(connection, kwargs.pop("cancellation", None) or Cancellation(grace=1.0), **kwargs)


def test_the_command_line_is_the_wrapper_and_the_argv_as_separate_words():
    hostile = "x; rm -rf /tmp/nothing; $(id) `id` 'q' \"dq\""
    line = remote_command(["printf", "%s", hostile], cwd="/some dir", env={"A": "b c"}, grace=1.5)
    assert shlex.split(line) == ["sh", "-c", WRAPPER, "sh", "/some dir", "15", "1", "A=b c", "printf", "%s", hostile]
    with pytest.raises(ValueError, match="not an environment variable name"):
        remote_command(["true"], env={"A;B": "x"})


def test_values_are_never_interpreted_by_a_shell(ssh_connection, tmp_path: Path):
    marker = tmp_path / "pwned"
    hostile = f"x; touch {marker}; $(touch {marker}) `touch {marker}`"
    result = _runner(ssh_connection).run(["printf", "%s\n", hostile], capture=True, env={"V": f"$(touch {marker})"})
    assert result.stdout == hostile + "\n"
    assert not marker.exists()


def test_env_and_working_directory_apply_on_the_host(ssh_connection, tmp_path: Path):
    (tmp_path / "here").mkdir()
    result = _runner(ssh_connection, base_env={"BASE": "from-base"}).run(
        ["sh", "-c", 'pwd; echo "$BASE $EXTRA"'], capture=True, env={"EXTRA": "two words"}, cwd=tmp_path / "here")
    assert result.stdout.splitlines() == [str(tmp_path / "here"), "from-base two words"]


def test_output_goes_to_the_log_and_a_failure_names_it(ssh_connection, tmp_path: Path):
    log = tmp_path / "step.log"
    with pytest.raises(CommandFailed) as info:
        _runner(ssh_connection).run(["sh", "-c", "echo out; echo 'bad thing' >&2; exit 3"], log=log)
    text = log.read_text()
    assert "out" in text and "bad thing" in text and "# exit 3" in text
    assert "@kubernaut-e2e" not in text  # the wrapper's own line is not the command's output
    assert str(log) in str(info.value) and "exited with code 3" in str(info.value)
    assert "bad thing" in info.value.tail


def test_captured_stdout_is_returned_and_can_stay_out_of_the_log(ssh_connection, tmp_path: Path):
    log = tmp_path / "step.log"
    (tmp_path / "kubeconfig").write_text("token: s3cr3t-kubeconfig\n")
    result = _runner(ssh_connection).run(["sh", "-c", 'cat "$1"; echo warn >&2', "sh", str(tmp_path / "kubeconfig")],
                                         log=log, capture=True, log_stdout=False)
    assert result.stdout == "token: s3cr3t-kubeconfig\n"
    assert "s3cr3t-kubeconfig" not in log.read_text() and "warn" in log.read_text()


def test_secrets_are_masked_in_the_log_and_the_dry_echo(ssh_connection, tmp_path: Path):
    log = tmp_path / "step.log"
    redactor = Redactor(["hunter2-password"])
    _runner(ssh_connection, redactor=redactor).run(["sh", "-c", 'echo "pw=$PW"'], log=log,
                                                   env={"PW": "hunter2-password"})
    text = log.read_text()
    assert "hunter2-password" not in text
    assert "pw=***" in text and "PW=***" in text
    lines: list[str] = []
    dry = _runner(ssh_connection, redactor=redactor, dry=True, echo=lines.append)
    marker = tmp_path / "ran"
    assert dry.run(["touch", str(marker)], env={"PW": "hunter2-password"}).dry
    assert not marker.exists()
    assert lines and "hunter2-password" not in lines[0] and f"touch {marker}" in lines[0]


def test_lines_are_streamed_while_the_command_runs(ssh_connection):
    seen: list[tuple[float, str]] = []
    started = time.monotonic()
    _runner(ssh_connection).run(["sh", "-c", "echo first; sleep 1.5; echo second"],
                                on_line=lambda line: seen.append((time.monotonic(), line)))
    ended = time.monotonic()
    assert [line for _, line in seen] == ["first\n", "second\n"]
    assert seen[0][0] < ended - 1.0, "the first line arrived only when the command ended"
    assert seen[0][0] - started < ended - started


def test_a_missing_command_or_folder_is_said_plainly(ssh_connection, tmp_path: Path):
    runner = _runner(ssh_connection)
    with pytest.raises(CommandFailed, match="could not be started on .*: no-such-tool-xyz is not on the PATH"):
        runner.run(["no-such-tool-xyz", "--version"])
    with pytest.raises(CommandFailed, match=f"could not be started on .*: no folder {tmp_path / 'nope'}"):
        runner.run(["true"], cwd=tmp_path / "nope")


def _pgid_from_first_line(box: dict[str, int]):  # type: ignore[no-untyped-def]
    def on_line(line: str) -> None:
        if "pgid" not in box and line.strip().isdigit():
            box["pgid"] = int(line)
    return on_line


# The command prints its own pid (which the wrapper made its process group id), then starts a
# child that ignores TERM, and waits: only KILL of the whole group stops everything.
_STUBBORN = "echo $$; trap '' TERM; sh -c 'trap \"\" TERM; sleep 60' & sleep 60; wait"


def test_a_timeout_kills_the_remote_process_group(ssh_connection):
    box: dict[str, int] = {}
    started = time.monotonic()
    with pytest.raises(CommandFailed, match="timed out after 1s on"):
        _runner(ssh_connection).run(["sh", "-c", _STUBBORN], timeout=1, on_line=_pgid_from_first_line(box))
    assert time.monotonic() - started < 10
    assert wait_group_gone(box["pgid"]), f"process group {box['pgid']} still runs on the host"


def test_cancel_kills_the_remote_process_group_and_nothing_new_starts(ssh_connection):
    box: dict[str, int] = {}
    cancellation = Cancellation(grace=1.0)
    runner = _runner(ssh_connection, cancellation=cancellation)
    threading.Timer(1.0, cancellation.cancel, args=("test",)).start()
    with pytest.raises(Cancelled):
        runner.run(["sh", "-c", _STUBBORN], on_line=_pgid_from_first_line(box))
    assert wait_group_gone(box["pgid"]), f"process group {box['pgid']} still runs on the host"
    with pytest.raises(Cancelled):
        runner.run(["true"])


def test_ctrl_c_kills_the_remote_process_group(ssh_connection):
    box: dict[str, int] = {}
    runner = _runner(ssh_connection)
    timer = threading.Timer(1.0, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run(["sh", "-c", _STUBBORN], on_line=_pgid_from_first_line(box))
    finally:
        timer.cancel()
    assert wait_group_gone(box["pgid"]), f"process group {box['pgid']} still runs on the host"


_CLIENT = """
import sys
from pathlib import Path
from kubernaut_e2e.hosts import HostSpec
from kubernaut_e2e.remote import RemoteRunner, SSHOptions, open_connection
from kubernaut_e2e.runner import Cancellation
port, key, known = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
connection = open_connection(HostSpec("127.0.0.1", None, port),
                             SSHOptions(identity=key, known_hosts=known, ssh_config=False))
RemoteRunner(connection, Cancellation(grace=1.0)).run(
    ["sh", "-c", sys.argv[4]], on_line=lambda line: print(line, end="", flush=True))
"""


def test_a_lost_connection_kills_the_remote_process_group(sshd: SSHServer):
    # The client dies without a word (like a second Ctrl-C's immediate exit, or a network drop):
    # the watchdog beside the command sees the channel close and stops the group.
    client = subprocess.Popen([sys.executable, "-c", _CLIENT, str(sshd.port), str(sshd.client_key),
                               str(sshd.known_hosts), _STUBBORN], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
    try:
        pgid = int(client.stdout.readline())  # type: ignore[union-attr]
        assert process_group_alive(pgid)
    finally:
        client.kill()
        client.wait()
    assert wait_group_gone(pgid), f"process group {pgid} survived its client"


def test_a_log_that_cannot_be_opened_starts_nothing_on_the_host(ssh_connection, small_fs, tmp_path: Path):
    marker = tmp_path / "ran"
    log = small_fs(read_only=True) / "step.log"
    with pytest.raises(CommandFailed, match=f"was not started: cannot write its log {log}: Read-only file system"):
        _runner(ssh_connection).run(["touch", str(marker)], log=log)
    assert not marker.exists()


def test_a_log_that_fills_the_disk_stops_the_remote_process_group(ssh_connection, small_fs):
    # Like LocalRunner: the command is stopped at once, not left to run (here 60 s) unlogged.
    box: dict[str, int] = {}
    log = small_fs(size="64k") / "step.log"
    chatty = "echo $$; i=0; while [ $i -lt 4000 ]; do echo line $i of output; i=$((i+1)); done; " + _STUBBORN
    started = time.monotonic()
    with pytest.raises(CommandFailed, match="was stopped: cannot write its log .*: No space left on device"):
        _runner(ssh_connection).run(["sh", "-c", chatty], log=log, on_line=_pgid_from_first_line(box))
    assert time.monotonic() - started < 15
    assert wait_group_gone(box["pgid"]), f"process group {box['pgid']} still runs on the host"


def test_steps_in_parallel_threads_share_one_connection(ssh_connection):
    # The scheduler runs steps in threads: their commands overlap on the one SSH connection.
    runner = _runner(ssh_connection)
    spans: dict[int, tuple[float, float, str]] = {}

    def step(i: int) -> None:
        started = time.monotonic()
        out = runner.run(["sh", "-c", f"sleep 1; echo step-{i}"], capture=True).stdout
        spans[i] = (started, time.monotonic(), out)

    threads = [threading.Thread(target=step, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert {i: out for i, (_, _, out) in spans.items()} == {i: f"step-{i}\n" for i in range(4)}
    assert max(s for s, _, _ in spans.values()) < min(e for _, e, _ in spans.values()), "the commands did not overlap"


def test_a_host_that_went_away_is_a_command_failure_naming_it(tmp_path: Path):
    # Fabric reopens a closed connection by itself; when the host is gone too, the step fails.
    with start_sshd(tmp_path / "sshd") as server:
        connection = server.connect()
        runner = _runner(connection)
        assert runner.run(["true"]).ok
    connection.close()
    with pytest.raises(CommandFailed, match=r"`true` could not be started on root@127\.0\.0\.1:\d+: "):
        runner.run(["true"], log=tmp_path / "step.log")
