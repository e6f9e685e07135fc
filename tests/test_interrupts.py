"""Signals and dead runs, end to end: a signal during an API call, during `clean`, a second signal
0.1 s after the first, SIGHUP, SIGKILL then a re-run. Each checks the exit code, the time to exit
(5 s at most), that no child process is left (by process group), that the lock is released and
that the (partial) summary was printed."""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, Project
from tests.faultproxy import FaultProxy
from tests.kindstate import clusters, read_calls, set_behaviour
from tests.test_robustness import _alive, _faulty, _group_alive, _no_leftover_processes

BUDGET = 5.0  # seconds from the signal to the exit


@pytest.fixture
def launch(project: Project, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Start `invoke ARGS` in the background (fault wrappers on PATH); kill leftovers afterwards."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, spec: str = "", **extra: str) -> subprocess.Popen[str]:
        env = {**project.env, **_faulty(project, spec, tmp_path), **extra}
        proc = subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    pids = tmp_path / "pids"
    for line in pids.read_text().splitlines() if pids.exists() else []:
        try:
            os.killpg(int(line.split()[1]), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_for(predicate, timeout: float = 30, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _pids_say(tmp_path: Path, text: str) -> bool:
    pids = tmp_path / "pids"
    return pids.exists() and text in pids.read_text()


def _signal_and_wait(proc: subprocess.Popen[str], *sigs: int, gap: float = 0.1) -> tuple[str, str, float]:
    sent = time.monotonic()
    for i, sig in enumerate(sigs):
        if i:
            time.sleep(gap)
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running 60 s after the signal:\n{out}\n{err}")
    return out, err, time.monotonic() - sent


def _lock_free(project: Project) -> bool:
    path = project.state / "locks" / f"{project.env['INVOKE_E2E_CLUSTER_NAME']}.lock"
    if not path.exists():
        return True
    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fh, fcntl.LOCK_UN)
    return path.read_text() == ""


def _interrupted_cleanly(project: Project, tmp_path: Path, proc: subprocess.Popen[str], out: str, err: str,
                         took: float, signal_name: str) -> None:
    assert proc.returncode == 130, out + err
    assert took <= BUDGET, took
    assert "Traceback" not in out + err
    assert "Step timings" in out and "run directory:" in out  # the partial summary
    assert f"interrupted ({signal_name})" in out
    _no_leftover_processes(tmp_path / "pids")
    assert _lock_free(project)
    assert project.timings()["interrupted"] is True


def test_sigint_during_a_kubernetes_api_call(project: Project, kubeapi, launch, tmp_path: Path):
    proxy = FaultProxy(kubeapi.url).start()
    try:
        proxy.hang()  # the API server accepts the request and never answers
        proc = launch("e2e.up", "--only", "namespace", KIND_STANDIN_API_SERVER=proxy.url)
        _wait_for(lambda: proxy.requests, what="the namespace step's API call")
        time.sleep(0.3)
        out, err, took = _signal_and_wait(proc, signal.SIGINT)
    finally:
        proxy.stop()
    _interrupted_cleanly(project, tmp_path, proc, out, err, took, "SIGINT")
    steps = {s["name"]: s for s in project.timings()["steps"]}
    assert steps["namespace"]["status"] == "interrupted"


def test_sighup_stops_builds_and_cluster_creation(project: Project, launch, tmp_path: Path):
    set_behaviour(project.kind_state, delay={"create cluster": 60})
    proc = launch("e2e.up", "--only", "images", spec="podman build:hang")
    _wait_for(lambda: _pids_say(tmp_path, "podman build") and _pids_say(tmp_path, "kind create"),
              what="the builds and kind create")
    time.sleep(0.5)
    out, err, took = _signal_and_wait(proc, signal.SIGHUP)
    _interrupted_cleanly(project, tmp_path, proc, out, err, took, "SIGHUP")
    create = [c for c in read_calls(project.kind_state, include_started=True)
              if c.get("event") == "start" and c["argv"][:2] == ["create", "cluster"]]
    assert create and not _alive(create[0]["pid"])
    assert not list(project.state.glob("state/*/archives/*.tar"))


def test_second_signal_after_0_1s_still_prints_the_summary(project: Project, launch, tmp_path: Path):
    # The builds ignore SIGTERM: only the second signal's SIGKILL ends them.
    proc = launch("e2e.up", "--only", "images", spec="podman build:stubborn")
    _wait_for(lambda: _pids_say(tmp_path, "podman build"), what="the builds")
    time.sleep(0.5)
    out, err, took = _signal_and_wait(proc, signal.SIGINT, signal.SIGINT, gap=0.1)
    _interrupted_cleanly(project, tmp_path, proc, out, err, took, "SIGINT")
    assert "killing every command now" in err


def test_sigterm_while_the_summary_is_being_written(project: Project, launch, tmp_path: Path):
    # A signal after the graph (timings written, summary printing) is not a traceback or exit 1.
    set_behaviour(project.kind_state, delay={"create cluster": 2})
    proc = launch("e2e.up", "--only", "cluster", spec="")
    _wait_for(lambda: any(c["argv"][:2] == ["create", "cluster"] for c in read_calls(project.kind_state)),
              what="kind create to finish")
    out, err, took = _signal_and_wait(proc, signal.SIGTERM, signal.SIGTERM, gap=0.1)
    assert proc.returncode in (0, 130), out + err
    assert took <= BUDGET and "Traceback" not in out + err
    assert "run directory:" in out
    assert _lock_free(project)


def test_sigint_during_clean_stops_kind_delete(project: Project, launch, tmp_path: Path):
    assert project.run("e2e.up", "--only", "cluster").returncode == 0
    proc = launch("e2e.clean", spec="kind delete:hang")
    _wait_for(lambda: _pids_say(tmp_path, "kind delete"), what="kind delete")
    time.sleep(0.3)
    out, err, took = _signal_and_wait(proc, signal.SIGINT)
    assert proc.returncode == 130, out + err
    assert took <= BUDGET, took
    assert "e2e.clean: interrupted (SIGINT): clean was stopped" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err
    _no_leftover_processes(tmp_path / "pids")
    assert _lock_free(project)


def test_hanging_kind_delete_times_out(project: Project, launch, tmp_path: Path):
    assert project.run("e2e.up", "--only", "cluster").returncode == 0
    proc = launch("e2e.clean", spec="kind delete:hang", INVOKE_E2E_COMMAND_TIMEOUT="2")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert "timed out after 2s" in err and len(err.strip().splitlines()) == 1
    _no_leftover_processes(tmp_path / "pids")
    assert _lock_free(project)


def test_rerun_after_sigkill_does_not_overlap_the_dead_runs_commands(project: Project, launch, tmp_path: Path):
    set_behaviour(project.kind_state, delay={"create cluster": 60})
    first = launch("e2e.up", "--only", "cluster")
    _wait_for(lambda: _pids_say(tmp_path, "kind create"), what="kind create")
    time.sleep(0.3)
    first.kill()  # SIGKILL: no handler runs, the kernel drops the flock, kind create lives on
    first.communicate()
    pgid = next(int(line.split()[1]) for line in (tmp_path / "pids").read_text().splitlines()
                if "kind create" in line)
    assert _group_alive(pgid)
    again = project.run("e2e.up", "--only", "cluster", extra_env=_faulty(project, "", tmp_path))
    assert again.returncode == 2, again.stdout + again.stderr
    assert f"process group {pgid} (`kind create cluster" in again.stderr
    assert f"kill -- -{pgid}" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    creates = [c for c in read_calls(project.kind_state, include_started=True)
               if c.get("event") == "start" and c["argv"][:2] == ["create", "cluster"]]
    assert len(creates) == 1  # no second create next to the first
    os.killpg(pgid, signal.SIGKILL)
    _wait_for(lambda: not _group_alive(pgid), what="the dead run's kind create to end")
    set_behaviour(project.kind_state)
    third = project.run("e2e.up", "--only", "cluster")
    assert third.returncode == 0, third.stdout + third.stderr
    assert f"took over the lock of PID {first.pid}" in third.stdout
    assert project.env["INVOKE_E2E_CLUSTER_NAME"] in clusters(project.kind_state)


def test_sigint_during_diagnose_api_call(project: Project, kubeapi, launch, tmp_path: Path):
    from tests.faultproxy import proxied_kubeconfig

    proxy = FaultProxy(kubeapi.url).start()
    try:
        proxied_kubeconfig(kubeapi, project.state / "state" / project.env["INVOKE_E2E_CLUSTER_NAME"] / "kubeconfig",
                           proxy)
        proxy.hang()
        proc = launch("e2e.diagnose", "--json")
        _wait_for(lambda: proxy.requests, what="diagnose's first API call")
        out, err, took = _signal_and_wait(proc, signal.SIGINT)
    finally:
        proxy.stop()
    assert proc.returncode == 130, out + err
    assert took <= BUDGET, took
    assert "e2e.diagnose: interrupted (SIGINT)" in err and "Traceback" not in err
    assert '"exit_code": 130' in out  # --json: the error, as JSON
