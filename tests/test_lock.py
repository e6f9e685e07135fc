"""The cluster lock: who holds it, the process groups of its commands, a dead run's leftovers."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from kubernaut_e2e.errors import UsageError
from kubernaut_e2e.lock import ClusterLock


def test_records_holder_images_and_running_groups(tmp_path: Path):
    from kubernaut_e2e.lock import LockRecord, live_runs

    lock = ClusterLock(tmp_path, "a", "up").acquire()
    lock.record_images(["localhost/x:1", "localhost/y:1"])
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        lock.group_started(child.pid, ["kind", "create", "cluster", "--name", "a"])
        record = LockRecord.parse((tmp_path / "a.lock").read_text())
        assert record.pid == os.getpid() and record.what == "e2e.up"
        assert record.images == ("localhost/x:1", "localhost/y:1")
        assert record.live_groups() == [(child.pid, "kind create cluster --name")]
        assert live_runs(tmp_path) == {"a": record}
        lock.group_ended(child.pid)
        assert LockRecord.parse((tmp_path / "a.lock").read_text()).groups == ()
    finally:
        child.kill()
        child.wait()
        lock.release()
    assert live_runs(tmp_path) == {}
    assert (tmp_path / "a.lock").read_text() == ""


def test_a_dead_runs_live_group_blocks_the_next_run(tmp_path: Path):
    from kubernaut_e2e.lock import group_alive

    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "a.lock").write_text(f"{dead.pid} e2e.up\ngroup {child.pid} - kind create cluster\n")
    try:
        with pytest.raises(UsageError) as info:
            ClusterLock(tmp_path, "a", "up").acquire()
        assert f"process group {child.pid} (`kind create cluster`)" in str(info.value)
        assert f"kill -- -{child.pid}" in str(info.value)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert not group_alive(child.pid)
    lock = ClusterLock(tmp_path, "a", "up").acquire()  # the group is gone: taken over
    assert lock.stale_pid == dead.pid
    lock.release()


def test_a_reused_pid_is_not_mistaken_for_the_dead_runs_group(tmp_path: Path):
    from kubernaut_e2e.lock import group_alive

    # A group whose leader surely runs: the test process's own group may have lost its leader
    # (a CI job's shell that started pytest in the background), and then no start time is known.
    leader = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert group_alive(leader.pid)
        assert not group_alive(leader.pid, start_time="1")  # recorded with another start time: a reused id
    finally:
        leader.kill()
        leader.wait()
