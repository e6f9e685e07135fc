"""LocalRunner: argument lists (no shell), logs, dry mode, timeouts, process-group kills."""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from kubernaut_e2e.errors import Cancelled
from kubernaut_e2e.runner import Cancellation, CommandFailed, LocalRunner, format_command


def test_values_are_never_interpreted_by_a_shell(tmp_path: Path):
    marker = tmp_path / "pwned"
    runner = LocalRunner(Cancellation())
    hostile = f"x; touch {marker}; $(touch {marker})"
    result = runner.run([sys.executable, "-c", "import sys; print(sys.argv[1])", hostile], capture=True)
    assert result.stdout.strip() == hostile
    assert not marker.exists()


def test_output_goes_to_the_log_and_failure_names_it(tmp_path: Path):
    log = tmp_path / "step.log"
    runner = LocalRunner(Cancellation())
    with pytest.raises(CommandFailed) as info:
        runner.run([sys.executable, "-c", "import sys; print('out'); print('bad thing', file=sys.stderr); sys.exit(3)"],
                   log=log)
    text = log.read_text()
    assert "out" in text and "bad thing" in text and "# exit 3" in text
    assert str(log) in str(info.value) and "exited with code 3" in str(info.value)
    assert "bad thing" in info.value.tail


def test_captured_stdout_can_be_kept_out_of_the_log(tmp_path: Path):
    log = tmp_path / "step.log"
    result = LocalRunner(Cancellation()).run([sys.executable, "-c", "print('token: s3' + 'cret')"], log=log, capture=True,
                                             log_stdout=False)
    assert "s3cret" in result.stdout
    assert "s3cret" not in log.read_text()


def test_dry_run_echoes_quoted_and_runs_nothing(tmp_path: Path):
    lines: list[str] = []
    marker = tmp_path / "ran"
    result = LocalRunner(Cancellation(), dry=True, echo=lines.append).run(
        ["touch", str(marker)], env={"A": "b c"})
    assert result.dry and result.ok
    assert not marker.exists()
    assert lines == [format_command(["touch", str(marker)], {"A": "b c"})]
    assert lines[0].startswith("A='b c' touch ")


def test_timeout_kills_the_process_group(tmp_path: Path):
    pid_file = tmp_path / "grandchild"
    runner = LocalRunner(Cancellation(grace=1.0))
    script = (f"import subprocess,sys; p=subprocess.Popen(['sleep','60']); "
              f"open({str(pid_file)!r},'w').write(str(p.pid)); p.wait()")
    started = time.monotonic()
    with pytest.raises(CommandFailed, match="timed out after 0.5s"):
        runner.run([sys.executable, "-c", script], timeout=0.5)
    assert time.monotonic() - started < 5
    _assert_gone(int(pid_file.read_text()))


def test_cancel_stops_a_running_command_and_its_children(tmp_path: Path):
    pid_file = tmp_path / "grandchild"
    cancellation = Cancellation(grace=1.0)
    runner = LocalRunner(cancellation)
    script = (f"import subprocess; p=subprocess.Popen(['sleep','60']); "
              f"open({str(pid_file)!r},'w').write(str(p.pid)); p.wait()")
    threading.Timer(0.5, cancellation.cancel, args=("test",)).start()
    with pytest.raises(Cancelled):
        runner.run([sys.executable, "-c", script])
    _assert_gone(int(pid_file.read_text()))
    with pytest.raises(Cancelled):  # nothing new starts after cancel
        runner.run(["true"])


def _assert_gone(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # A killed but unreaped grandchild is a zombie: that counts as gone.
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z":
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still alive")


def test_disk_full_log_stops_the_command_at_once(tmp_path: Path, small_fs):
    log = small_fs(size="64k") / "step.log"
    runner = LocalRunner(Cancellation(grace=1.0))
    # 4 MB of output, then an hour of sleep: before, the pump thread died on ENOSPC and the
    # child blocked on a full pipe until the timeout.
    script = "import sys,time; sys.stdout.write(('x'*1023+'\\n')*4096); sys.stdout.flush(); time.sleep(3600)"
    started = time.monotonic()
    with pytest.raises(CommandFailed) as info:
        runner.run([sys.executable, "-c", script], log=log, timeout=60)
    assert time.monotonic() - started < 10
    assert f"was stopped: cannot write its log {log}: No space left on device" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_log_that_cannot_be_opened_starts_nothing(tmp_path: Path):
    marker = tmp_path / "ran"
    with pytest.raises(CommandFailed, match="was not started: cannot write its log"):
        LocalRunner(Cancellation()).run(["touch", str(marker)], log=Path("/dev/full"))
    assert not marker.exists()


def test_exit_0_after_a_cancel_is_not_success(tmp_path: Path):
    cancellation = Cancellation(grace=2.0)
    script = ("import signal,sys,time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
              "print('ready', flush=True); time.sleep(60)")
    threading.Timer(0.5, cancellation.cancel, args=("test",)).start()
    with pytest.raises(Cancelled):
        LocalRunner(cancellation).run([sys.executable, "-c", script])


def test_failure_message_quotes_the_error_line(tmp_path: Path):
    script = ("import sys; print('copying blob'); print('Error: writing blob: write /x/archive.tar: "
              "no space left on device', file=sys.stderr); sys.exit(125)")
    with pytest.raises(CommandFailed) as info:
        LocalRunner(Cancellation()).run([sys.executable, "-c", script], log=tmp_path / "save.log")
    assert "exited with code 125: Error: writing blob: write /x/archive.tar: no space left on device" in str(info.value)


def test_interrupt_reaches_children_and_watchers_see_each_group():
    seen: list[tuple[str, int]] = []

    class Watcher:
        def group_started(self, pgid: int, argv) -> None:  # type: ignore[no-untyped-def]
            seen.append(("started", pgid))

        def group_ended(self, pgid: int) -> None:
            seen.append(("ended", pgid))

    session = Cancellation(grace=1.0)
    session.add_watcher(Watcher())
    phase = session.child()
    phase.cancel("a step failed")  # fail-fast stays in the phase
    assert phase.cancelled and not session.cancelled
    other = session.child()
    result = LocalRunner(other).run(["true"])
    assert result.ok and [s for s, _ in seen] == ["started", "ended"]
    threading.Timer(0.3, session.interrupt, args=("SIGHUP",)).start()
    with pytest.raises(Cancelled):
        LocalRunner(other).run(["sleep", "30"])
    assert other.interrupted and other.signal == "SIGHUP" and session.child().interrupted
