"""The e2e tasks on the command line as a new user meets them: pipes, --help, short flags, dry runs
without tools, `--jobs 1`, and installing in a venv."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from kubernaut_e2e.scheduler import StepRecord
from tests.conftest import MIGRATION_LOG, ROOT, Project
from tests.kubeapi import JobSucceeds, Ready
from tests.test_kube import LFSTACK_LOG

TASKS = ("up", "clean", "plan", "diagnose", "toolchain", "test", "ci")
BOX = re.compile("[\u2500-\u257f]")  # box-drawing characters


def _invoke(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, **kw)


# --- pipes ----------------------------------------------------------------------------------------

def test_reader_that_goes_away_is_not_a_traceback(project: Project):
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "e2e.plan"], cwd=ROOT, env=project.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # type: ignore[union-attr]  # the reader is gone before anything is written
    err = proc.stderr.read().decode()  # type: ignore[union-attr]
    assert proc.wait(timeout=60) == 0
    assert err == ""
    shell = subprocess.run(["bash", "-c", f"{sys.executable} -m invoke e2e.plan | head -1; "
                                          "echo \"status=${PIPESTATUS[0]}\""],
                           cwd=ROOT, env=project.env, capture_output=True, text=True, timeout=60)
    assert shell.stderr == "" and shell.stdout.splitlines()[-1] == "status=0"


def test_pipe_safe_keeps_quiet_after_epipe():
    from kubernaut_e2e.console import PipeSafe

    r, w = os.pipe()
    os.close(r)
    stream = PipeSafe(open(w, "w", closefd=True))
    stream.write("x" * 100_000)
    stream.flush()
    stream.write("more\n")
    assert stream.closed_by_reader


def test_toolchain_into_a_pipe_is_plain_whole_lines(project: Project):
    text = _invoke("e2e.toolchain", env=project.env)
    doc = json.loads(_invoke("e2e.toolchain", "--json", env=project.env).stdout)
    assert not BOX.search(text.stdout), text.stdout
    lines = text.stdout.splitlines()
    for check in doc["checks"]:  # every check's detail and fix, whole, on its own check's line
        line = next(line for line in lines if f" {check['name']} " in line)
        assert check["detail"] in line
        assert check["fix"] in line


def test_diagnose_into_a_pipe_does_not_wrap(tmp_path: Path):
    logs = tmp_path / "artifact"
    logs.mkdir()
    (logs / "gateway.log").write_text(LFSTACK_LOG)
    env = {**os.environ, "INVOKE_E2E_STATE_DIR": str(tmp_path / "s")}
    text = _invoke("e2e.diagnose", "--logs", str(logs), env=env).stdout
    doc = json.loads(_invoke("e2e.diagnose", "--logs", str(logs), "--json", env=env).stdout)
    assert doc["findings"]
    for finding in doc["findings"]:
        meaning, fix = " ".join(finding["meaning"].split()), " ".join(finding["fix"].split())
        assert any(meaning in line for line in text.splitlines()), meaning
        assert any(fix in line for line in text.splitlines()), fix
    assert "\x1b[" not in text  # no colour codes into a pipe


def test_diagnose_json_without_a_cluster_still_prints_json(tmp_path: Path):
    env = {**os.environ, "INVOKE_E2E_STATE_DIR": str(tmp_path / "none"), "CI": "true"}
    result = _invoke("e2e.diagnose", "--json", env=env)
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 2 and "no cluster" in doc["error"] and doc["findings"] == []
    assert len(result.stderr.strip().splitlines()) == 1


class _SlowStream(io.StringIO):
    """A stream that yields the GIL inside every write, as a slow pipe does."""

    def write(self, text: str) -> int:
        done = 0
        for ch in text:
            done += super().write(ch)
            time.sleep(0)
        return done


def test_parallel_progress_lines_never_run_together():
    from kubernaut_e2e.console import LineWriter, PlainReporter

    stream = _SlowStream()
    lines = LineWriter(stream)
    reporter = PlainReporter(lines)

    def step(i: int) -> None:
        for n in range(40):
            if n % 2:
                reporter.step_finished(StepRecord(f"step{i}", (), "done", 0.0, 1.0, note=f"n{n}"))
            else:
                lines.write(f"echo from step{i} line {n}")

    threads = [threading.Thread(target=step, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = stream.getvalue().splitlines()
    assert len(out) == 6 * 40
    pattern = re.compile(r"^(\[\d\d:\d\d:\d\d\] step\d: done in 1\.0s \(n\d+\)|echo from step\d line \d+)$")
    assert all(pattern.match(line) for line in out), [line for line in out if not pattern.match(line)][:3]


# --- flags ----------------------------------------------------------------------------------------

def _flags(task: str) -> list[list[str]]:
    text = _invoke("--help", f"e2e.{task}").stdout
    options = text.split("Options:", 1)[1]
    return [re.findall(r"(--?[a-z][-a-z]*)", line.split("  ", 2)[1] if line.startswith("  ") else "")
            for line in options.splitlines() if line.startswith("  -")]


def test_each_short_flag_means_one_thing_in_every_task():
    meaning: dict[str, str] = {}
    for task in TASKS:
        for names in _flags(task):
            shorts = [n for n in names if not n.startswith("--")]
            longs = [n for n in names if n.startswith("--")]
            for short in shorts:
                assert meaning.setdefault(short, longs[0]) == longs[0], (task, short, meaning[short], longs[0])
    assert meaning.get("-c") == "--cluster-name" and meaning.get("-j") == "--jobs"


def test_numbers_are_typed_flags():
    for task in ("up", "ci"):
        text = _invoke("--help", f"e2e.{task}").stdout
        assert "--jobs=INT" in text, text


# --- no tools needed when nothing runs -------------------------------------------------------------

def _without_kind(project: Project, tmp_path: Path, keep_podman: bool) -> dict[str, str]:
    """PATH with python (and podman, if asked) but no kind."""
    bin_dir = tmp_path / "bin-no-kind"
    bin_dir.mkdir()
    for tool in ("podman",) if keep_podman else ():
        os.symlink(subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip(), bin_dir / tool)
    return {**project.env, "PATH": str(bin_dir)}


def test_dry_up_needs_no_tools_and_creates_nothing(project: Project, tmp_path: Path):
    env = _without_kind(project, tmp_path, keep_podman=False)
    result = subprocess.run([sys.executable, "-m", "invoke", "--dry", "e2e.up"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kind create cluster" in result.stdout and "podman build" in result.stdout
    assert "dry run: no command was run" in result.stdout
    assert not project.state.exists()


def test_clean_with_nothing_to_remove_needs_no_kind_and_creates_nothing(project: Project, tmp_path: Path):
    env = _without_kind(project, tmp_path, keep_podman=True)
    result = subprocess.run([sys.executable, "-m", "invoke", "e2e.clean"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing to remove" in result.stdout
    assert not project.state.exists()
    dry = subprocess.run([sys.executable, "-m", "invoke", "--dry", "e2e.clean"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert not project.state.exists()


def test_clean_without_kind_refuses_when_a_cluster_may_exist(project: Project, tmp_path: Path):
    assert project.run("e2e.up", "--only", "cluster").returncode == 0
    env = _without_kind(project, tmp_path, keep_podman=True)
    result = subprocess.run([sys.executable, "-m", "invoke", "e2e.clean"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "kind is not installed: cannot check or delete cluster" in result.stderr
    assert (project.state / "state").exists()


# --- --jobs 1 ---------------------------------------------------------------------------------------

def test_jobs_1_is_a_passing_run(project: Project, kubeapi):
    kubeapi.script("gateway", Ready(after=0.3))
    kubeapi.script_job("e2e-migrations", JobSucceeds(after=0.2, log=MIGRATION_LOG))
    env = {"KIND_STANDIN_API_SERVER": kubeapi.url}
    result = project.run("e2e.up", "--jobs", "1", extra_env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in project.timings()["checklist"]}
    assert checks["image builds ran in parallel"]["passed"]
    assert checks["image builds ran in parallel"]["detail"] == "not checked: --jobs 1 runs one step at a time"


# --- install -----------------------------------------------------------------------------------------

def test_ci_installs_into_a_venv_with_the_readme_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    block = re.search(r"## Tests.*?```sh\n(.*?)```", readme, re.S)
    assert block, "README has a Tests section with a command"
    command = block.group(1).strip()
    assert "venv" in command and "python3 -m pip install" not in command
    assert command in ci  # .ci/run runs the README's command, verbatim
    assert not re.search(r"^\s*python3 -m pip install", ci, re.M)  # never into the system interpreter
