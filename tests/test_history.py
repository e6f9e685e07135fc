"""Run history: the kind of a run, the comparison with recent runs, the bounded file, estimates."""
from __future__ import annotations

import json
import threading
from pathlib import Path

from kubernaut_e2e import history
from kubernaut_e2e.history import COLD, REBUILD, WARM, Entry


def _step(name: str, duration: float, note: str = "", status: str = "done") -> dict:
    return {"name": name, "status": status, "start": 0.0, "end": duration, "duration": duration, "note": note}


def _doc(cluster_note: str = "reused existing cluster", build_note: str = "reused: inputs unchanged",
         build: float = 0.1, cluster: float = 0.3, load: float = 0.2, status: str = "done") -> dict:
    steps = [_step("preflight", 0.2), _step("cluster", cluster, cluster_note),
             _step("build-gateway", build, build_note), _step("load-gateway", load, status=status)]
    return {"started_at": "t", "makespan": 0.2 + max(cluster, build) + load, "steps": steps}


def test_kind_of_run_from_the_step_notes():
    assert history.run_kind(_doc(cluster_note="created", build_note="")["steps"]) == COLD
    assert history.run_kind(_doc(build_note="")["steps"]) == REBUILD
    assert history.run_kind(_doc()["steps"]) == WARM
    # A build that failed built nothing to speak of: the run is not a rebuild.
    failed = _doc(build_note="")
    failed["steps"][2]["status"] = "failed"
    assert history.run_kind(failed["steps"]) == WARM


def test_comparison_names_the_step_that_got_slower_and_by_how_much():
    past = [Entry.of(_doc(build_note="", build=b)) for b in (10.0, 11.0, 12.0)]
    now = Entry.of(_doc(build_note="", build=11.0, load=6.0))
    result = history.compare(now, past)
    assert result.kind == REBUILD and result.runs == 3
    assert result.usual == 11.0 + 0.2 + 0.2
    assert result.slower == history.Slower("load-gateway", 6.0, 0.2)
    text = result.describe()
    assert "rebuild run in 17.2s; usual 11.4s (median of 3 recent rebuild runs): +5.8s (+51%)" in text
    assert "slower: load-gateway 6.0s, usually 0.2s (+5.8s)" in text


def test_noise_is_not_named_and_other_kinds_are_not_compared():
    past = [Entry.of(_doc(build_note="", build=60.0)), Entry.of(_doc())]  # a rebuild and a warm run
    now = Entry.of(_doc(build=0.1, load=0.5))  # warm, 0.3 s slower load: noise
    result = history.compare(now, past)
    assert result.runs == 1 and result.usual == _doc()["makespan"]
    assert result.slower is None
    assert result.describe().endswith("no step was notably slower")
    first = history.compare(Entry.of(_doc(cluster_note="created", build_note="")), past)
    assert first.runs == 0 and "the first cold run of these steps on record" in first.describe()


def test_failed_runs_are_kept_but_never_a_baseline():
    past = [Entry.of(_doc(status="failed")), Entry.of(_doc(load=0.4))]
    assert not past[0].ok and past[1].ok
    assert history.compare(Entry.of(_doc()), past).runs == 1
    assert history.estimates(past, ["load-gateway"]) == {"load-gateway": 0.4}


def test_estimates_are_medians_of_recent_runs_and_skip_unknown_steps():
    past = [Entry.of(_doc(build_note="", build=b)) for b in (100.0, 5.0, 7.0, 6.0)]
    est = history.estimates(past, ["build-gateway", "health"], baseline=3)
    assert est == {"build-gateway": 6.0}


def test_update_records_compares_and_keeps_only_the_last_runs(tmp_path: Path):
    first = history.update(tmp_path, _doc(build_note="", build=10.0), keep=5)
    assert first["kind"] == REBUILD and first["compared_with"] == 0
    for _ in range(6):
        later = history.update(tmp_path, _doc(build_note="", build=10.0), keep=5)
    assert later["compared_with"] == 5 and later["slower"] is None
    data = json.loads((tmp_path / history.FILE_NAME).read_text())
    assert len(data["runs"]) == 5


def test_record_default_bound_and_concurrent_writers(tmp_path: Path):
    path = tmp_path / history.FILE_NAME
    threads = [threading.Thread(target=lambda: [history.record(path, Entry.of(_doc())) for _ in range(10)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(history.load(path)) == 40  # no lost update, no torn file
    for _ in range(history.KEEP):
        history.record(path, Entry.of(_doc()))
    assert len(history.load(path)) == history.KEEP


def test_unreadable_history_is_empty_and_unwritable_history_does_not_fail_the_run(tmp_path: Path):
    (tmp_path / history.FILE_NAME).write_text("{not json")
    assert history.load(tmp_path / history.FILE_NAME) == []
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    result = history.update(blocked, _doc())
    assert result["text"].startswith("history not recorded:")
