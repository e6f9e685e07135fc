"""Failures, interrupts, locks and resume, with the real command paths (real podman, the
stand-in kind, and a fault wrapper in front of either)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PRELOAD_IMAGES, ROOT, Project
from tests.kindstate import clusters, read_calls, set_behaviour

FAULTS = ROOT / "tests" / "faults"


def _faulty(project: Project, spec: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PATH": f"{FAULTS}{os.pathsep}{project.env['PATH']}", "FAULT_SPEC": spec,
            "FAULT_PIDS": str(tmp_path / "pids"), **extra}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return any(_alive(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()
               and _pgid(int(p.name)) == pgid)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _no_leftover_processes(pid_file: Path) -> None:
    if not pid_file.exists():
        return
    deadline = time.monotonic() + 8
    for line in pid_file.read_text().splitlines():
        pid, pgid = (int(x) for x in line.split()[:2])
        while (_alive(pid) or _group_alive(pgid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), f"left running: {line}"
        assert not _group_alive(pgid), f"process group left running: {line}"


def _archives(project: Project) -> list[Path]:
    return list(project.state.glob("state/*/archives/*.tar"))


# --- fault-injection matrix --------------------------------------------------------------------

#: Our images and the stack's third-party images are both saved and loaded: a save or load fault
#: may hit either kind of step first.
_SAVES, _LOADS = ("save-", "preload-"), ("load-", "preload-")
MATRIX = [
    # (fault, mode, the step that must fail (name prefixes), what its message says)
    ("podman info", "exit", ("preflight",), "exited with code 3"),
    ("kind create", "kill", ("cluster",), "killed by SIGKILL"),
    ("kind create", "hang", ("cluster",), "timed out after 4s"),
    ("podman build", "exit", ("build-",), "exited with code 3"),
    ("podman build", "kill", ("build-",), "killed by SIGKILL"),
    ("podman build", "hang", ("build-",), "timed out after 4s"),
    ("podman save", "exit", _SAVES, "exited with code 3"),
    ("podman save", "hang", _SAVES, "timed out after 4s"),
    ("kind load", "exit", _LOADS, "exited with code 3"),
    ("kind load", "kill", _LOADS, "killed by SIGKILL"),
]


@pytest.mark.parametrize("fault, mode, step, says", MATRIX, ids=[f"{f}:{m}" for f, m, _, _ in MATRIX])
def test_each_command_failing(project: Project, tmp_path: Path, fault: str, mode: str, step: tuple[str, ...],
                              says: str):
    env = _faulty(project, f"{fault}:{mode}", tmp_path, INVOKE_E2E_COMMAND_TIMEOUT="4")
    started = time.monotonic()
    result = project.run("e2e.up", "--only", "images", extra_env=env, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert time.monotonic() - started < 60
    steps = {s["name"]: s for s in project.timings()["steps"]}
    failed = [s for s in steps.values() if s["status"] == "failed"]
    assert failed and failed[0]["name"].startswith(step), steps
    name = failed[0]["name"]
    assert says in failed[0]["error"]
    assert f"FAILED {name}" in result.stdout and f"{name}.log" in result.stdout
    # What is left behind: no archive, no process, no half-written kubeconfig, lock released.
    assert not _archives(project)
    _no_leftover_processes(tmp_path / "pids")
    assert "gateway" not in "".join(p.name for p in project.state.glob("locks/*.lock") if p.read_text())


def test_kind_that_does_not_answer_stops_up_in_preflight(project: Project, tmp_path: Path):
    result = project.run("e2e.up", "--only", "images", extra_env=_faulty(project, "kind get:exit", tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == "e2e.up: preflight: kind does not answer: `kind get clusters` exited with code 3"
    assert not (project.state / "runs").exists()


# --- interrupts ------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_mid_build_stops_everything(project: Project, tmp_path: Path, sig: int):
    env = {**project.env, **_faulty(project, "podman build:hang", tmp_path)}
    set_behaviour(project.kind_state, delay={"create cluster": 60})
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "e2e.up", "--only", "images"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    pids = tmp_path / "pids"
    while time.monotonic() < deadline and "build" not in (pids.read_text() if pids.exists() else ""):
        time.sleep(0.1)
    time.sleep(0.5)  # the builds and the cluster creation are running now
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == 130, out + err
    assert took < 8, took  # 5 s grace at most, plus reporting
    assert "interrupted" in out
    steps = {s["name"]: s for s in project.timings()["steps"]}
    assert {s["status"] for n, s in steps.items() if n.startswith("build-")} == {"interrupted"}
    assert steps["cluster"]["status"] == "interrupted"
    assert project.timings()["interrupted"] is True
    _no_leftover_processes(pids)
    killed_kind = [c for c in read_calls(project.kind_state, include_started=True) if c.get("event") == "start"
                   and c["argv"][:2] == ["create", "cluster"]]
    assert killed_kind and not _alive(killed_kind[0]["pid"])
    assert not _archives(project)
    # The lock was released: another run can take it at once.
    again = project.run("e2e.up", "--only", "preflight")
    assert again.returncode == 0, again.stdout + again.stderr


def test_second_interrupt_exits_at_once_and_kills_stubborn_children(project: Project, tmp_path: Path):
    env = {**project.env, **_faulty(project, "podman build:stubborn", tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "e2e.up", "--only", "images"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids = tmp_path / "pids"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "build" not in (pids.read_text() if pids.exists() else ""):
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)  # the builds ignore SIGTERM: the first stop would wait the grace
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert time.monotonic() - sent < 2.5
    _no_leftover_processes(pids)


# --- lock -------------------------------------------------------------------------------------

def test_second_concurrent_up_refuses_with_the_holders_pid(project: Project):
    set_behaviour(project.kind_state, delay={"create cluster": 6})
    first = subprocess.Popen([sys.executable, "-m", "invoke", "e2e.up", "--only", "cluster"], cwd=ROOT,
                             env=project.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        second = project.run("e2e.up", "--only", "cluster")
        assert second.returncode == 2
        assert f"locked by PID {first.pid}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        clean = project.run("e2e.clean")
        assert clean.returncode == 2 and f"PID {first.pid}" in clean.stderr
    finally:
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, out + err


def test_stale_lock_is_taken_over_with_a_warning(project: Project):
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = project.state / "locks" / f"{project.env['INVOKE_E2E_CLUSTER_NAME']}.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(f"{dead.pid} e2e.up\n")
    result = project.run("e2e.up", "--only", "cluster")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"took over the lock of PID {dead.pid}" in result.stdout


# --- resume -----------------------------------------------------------------------------------

def test_rerun_after_failed_load_resumes_without_rebuilding(project: Project):
    # The cluster takes a while, so the builds are done when the first load fails.
    set_behaviour(project.kind_state, delay={"create cluster": 4.0}, fail={"load image-archive": {
        "exit": 1, "message": "ERROR: failed to load image: transient", "times": 1}})
    first = project.run("e2e.up", "--only", "images")
    assert first.returncode == 1
    first_notes = {s["name"]: s["status"] for s in project.timings()["steps"]}
    assert first_notes["build-gateway"] == first_notes["build-datastorage"] == "done", first_notes
    second = project.run("e2e.up", "--only", "images")
    first_end = max(c["end"] for c in project.kind_calls())
    assert second.returncode == 0, second.stdout + second.stderr
    steps = {s["name"]: s for s in project.timings()["steps"]}
    assert steps["cluster"]["note"] == "reused existing cluster"
    assert steps["build-gateway"]["note"] == "reused: inputs unchanged"
    assert steps["build-datastorage"]["note"] == "reused: inputs unchanged"
    run_dir = project.last_run_dir()
    assert "$ podman build" not in (run_dir / "build-gateway.log").read_text()
    cluster = project.env["INVOKE_E2E_CLUSTER_NAME"]
    assert sorted(clusters(project.kind_state)[cluster]["images"]) == sorted([*project.images.values(),
                                                                               *PRELOAD_IMAGES])
    # A third run also skips the saves and loads: the node already has these exact images.
    third = project.run("e2e.up", "--only", "images")
    assert third.returncode == 0
    notes = {s["name"]: s["note"] for s in project.timings()["steps"]}
    assert notes["save-gateway"] == "reused: the cluster has this image"
    assert notes["load-gateway"] == "reused: already in the cluster"
    assert notes["preload-redis"] == "reused: already in the cluster"
    assert "reused" in third.stdout
    assert not [c for c in project.kind_calls() if c["start"] > first_end and c["argv"][0] == "load"][3:]


def test_save_skipped_for_the_old_cluster_is_done_for_a_new_one(project: Project):
    # The cluster is recreated while the save step still sees the old cluster's record: the
    # load step must notice the archive is missing and save the image itself.
    assert project.run("e2e.up", "--only", "images").returncode == 0
    set_behaviour(project.kind_state, delay={"create cluster": 2.0})
    again = project.run("e2e.up", "--only", "images", "--recreate")
    assert again.returncode == 0, again.stdout + again.stderr
    cluster = project.env["INVOKE_E2E_CLUSTER_NAME"]
    assert sorted(clusters(project.kind_state)[cluster]["images"]) == sorted([*project.images.values(),
                                                                               *PRELOAD_IMAGES])


def test_changed_source_is_rebuilt(project: Project):
    assert project.run("e2e.up", "--only", "images").returncode == 0
    (project.source / "cmd" / "gateway" / "main.go").write_text("package main\n\nfunc main() { println(1) }\n")
    assert project.run("e2e.up", "--only", "images").returncode == 0
    notes = {s["name"]: s["note"] for s in project.timings()["steps"]}
    assert notes["build-gateway"] == "" and notes["load-gateway"] == ""


def test_clean_on_failure_removes_the_cluster(project: Project):
    set_behaviour(project.kind_state, fail={"load image-archive": {"exit": 1, "message": "ERROR: boom"}})
    result = project.run("e2e.up", "--only", "images", "--clean-on-failure")
    assert result.returncode == 1
    assert project.env["INVOKE_E2E_CLUSTER_NAME"] not in clusters(project.kind_state)
    assert "kept for diagnosis" not in result.stdout


def test_failed_command_log_is_matched_against_the_knowledge_base(project: Project, tmp_path: Path):
    # A wrapper `podman` whose build prints what a corrupt store prints.
    fake = tmp_path / "fakebin"
    fake.mkdir()
    real = subprocess.run(["which", "podman"], capture_output=True, text=True, env=project.env).stdout.strip()
    (fake / "podman").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = build ]; then\n'
        '  echo \'Error: locating item named "manifest" for image with ID '
        '"7df2c8a0bc6a68c74cba0034eea6cfda89adc8b013969c22ebbf3d90734591ca" (consider removing the image '
        "to resolve the issue): file does not exist' >&2\n"
        "  exit 125\nfi\n"
        f'exec {real} "$@"\n')
    (fake / "podman").chmod(0o755)
    result = project.run("e2e.up", "--only", "images", extra_env={"PATH": f"{fake}{os.pathsep}{project.env['PATH']}"})
    assert result.returncode == 1
    assert "diagnosis: The local image store holds a half-written image" in result.stdout
    assert "podman rmi -f" in result.stdout


# --- smaller faults: a lying save, a create without kubeconfig, full disks ----------------------

def test_save_that_exits_0_on_sigterm_is_not_done(project: Project, tmp_path: Path):
    # podman 4.3's save exits 0 when terminated, leaving a truncated archive.
    env = {**project.env, **_faulty(project, "podman save:termok", tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "e2e.up", "--only", "images"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids = tmp_path / "pids"
    deadline = time.monotonic() + 60
    # Both saves running means both (real) builds are done: killing podman 4.3 mid-build can
    # leave a half-written image in the session's store, which would break later tests.
    while time.monotonic() < deadline and (pids.read_text() if pids.exists() else "").count("podman save") < 2:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    steps = {s["name"]: s for s in project.timings()["steps"]}
    saves = [s for n, s in steps.items() if n.startswith("save-") and s["start"] is not None]
    assert saves and all(s["status"] == "interrupted" for s in saves), saves
    assert all(steps[n]["status"] != "done" for n in steps if n.startswith("load-"))
    assert not _archives(project)


def test_kind_create_that_writes_no_kubeconfig_is_a_clear_failure(project: Project, tmp_path: Path):
    result = project.run("e2e.up", "--only", "cluster", extra_env=_faulty(project, "kind create:noop", tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    steps = {s["name"]: s for s in project.timings()["steps"]}
    assert steps["cluster"]["status"] == "failed"
    assert "`kind create cluster` exited 0 but wrote no kubeconfig" in steps["cluster"]["error"]
    assert "FileNotFoundError" not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_disk_full_while_a_command_writes_its_log(project: Project, tmp_path: Path, small_fs):
    state = small_fs(size="1m")
    env = {**_faulty(project, "podman build:chatty", tmp_path), "INVOKE_E2E_STATE_DIR": str(state),
           "INVOKE_E2E_COMMAND_TIMEOUT": "120"}
    started = time.monotonic()
    # Only the builds (and preflight): a cluster step writing its files to the same full disk
    # could hit ENOSPC first on a loaded machine, and then the builds are cancelled instead.
    result = project.run("e2e.up", "--only", "build-gateway", "--only", "build-datastorage", extra_env=env,
                         timeout=180)
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert took < 60, took  # promptly: not when command_timeout (120 s) runs out
    assert "Traceback" not in result.stdout + result.stderr
    assert "cannot write its log" in result.stdout and "No space left on device" in result.stdout
    assert "Step timings" in result.stdout  # the summary still reached the console
    assert "could not write" in result.stdout and "timings.json" in result.stdout
    _no_leftover_processes(tmp_path / "pids")


def test_no_space_during_save_is_named_on_the_console(project: Project, tmp_path: Path, small_fs):
    state = small_fs(size="256k")  # logs fit; an image archive (a static binary) does not
    result = project.run("e2e.up", "--only", "images", extra_env={"INVOKE_E2E_STATE_DIR": str(state)})
    assert result.returncode == 1, result.stdout + result.stderr
    # Whichever archive fills the disk first fails: a built image's (save-*) or a service image's
    # (preload-*, which saves too); the others are cancelled.
    failed = [line for line in result.stdout.splitlines()
              if ": FAILED" in line and ("] save-" in line or "] preload-" in line)]
    assert failed, result.stdout
    assert "no space left on device" in failed[0].lower(), failed[0]
    assert "Traceback" not in result.stdout + result.stderr
