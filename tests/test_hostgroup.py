"""Several hosts, one task: one exit status, whole prefixed lines, one summary table per host.
(The task on real hosts over SSH is tests/test_cli_remote.py.)"""
from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from kubernaut_e2e.config import load_config
from kubernaut_e2e.hostgroup import HostOutcome, HostStream, overall_code, print_summaries
from tests.conftest import FAST_STACK


@pytest.mark.parametrize("codes, expected", [
    ([0, 0], 0),
    ([0, 1], 1),
    ([2, 0], 2),  # the only failing status is the status
    ([1, 2], 1),  # different failures: "failed"
    ([0, 130], 130),
    ([1, 130, 2], 130),
])
def test_one_exit_status_for_all_hosts(codes: list[int], expected: int):
    assert overall_code(codes) == expected


def test_host_streams_write_whole_prefixed_lines_that_never_mix():
    out = io.StringIO()
    lock = threading.Lock()
    a, b = HostStream(out, "ci@a", lock), HostStream(out, "ci@b:2222", lock)
    a.write("step one: sta")
    b.write("other host\n")
    a.write("rted\nsecond\nhalf")
    a.close_lines()
    assert out.getvalue() == "[ci@b:2222] other host\n[ci@a] step one: started\n[ci@a] second\n[ci@a] half\n"
    assert not a.isatty()  # a shared screen gets plain lines, never a live table


def test_every_host_gets_a_table_with_its_run(tmp_path: Path):
    cfg = load_config({"stack": str(FAST_STACK), "state_dir": str(tmp_path / "state"), "cluster_name": "c1"})
    run = cfg.runs_dir / "20261129-101010-1"
    run.mkdir(parents=True)
    (run / "timings.json").write_text(json.dumps({
        "makespan": 12.5, "steps": [{"name": "a", "status": "done"}, {"name": "b", "status": "failed"}],
        "checklist": [{"name": "x", "passed": True}, {"name": "y", "passed": False}]}))
    cfg.kubeconfig.parent.mkdir(parents=True)
    cfg.kubeconfig.write_text("kind: Config\n")
    out = io.StringIO()
    print_summaries([HostOutcome("ci@a", 0, "", cfg), HostOutcome("ci@b", 2, "host ci@b: cannot connect", None)],
                    out, task="up", since=0.0)
    text = out.getvalue()
    first, second = text.split("up on host ci@a")[1].split("up on host ci@b")
    assert "result         passed (exit 0)" in first
    assert "steps          1 done, 1 failed" in first and "makespan       12.5s" in first
    assert "checklist      1/2 passed" in first and f"run directory  {run}" in first
    assert f"kubeconfig     {cfg.kubeconfig}" in first and "e2e.tunnel --host ci@a" in first
    assert "result  FAILED (exit 2)" in second and "error   host ci@b: cannot connect" in second
    assert text.rstrip().endswith("1/2 host(s) passed; exit 2")
