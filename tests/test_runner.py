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
