"""The scheduler with in-process step bodies: ordering, overlap, jobs, failure, keep-going."""
from __future__ import annotations

import sys
import threading
import time

import pytest

from kubernaut_e2e.graph import Graph, Step
from kubernaut_e2e.runner import Cancellation, LocalRunner
from kubernaut_e2e.scheduler import CANCELLED, DONE, FAILED, SKIPPED, parallel, run_graph
from kubernaut_e2e.timings import overlap


def _graph(spec: dict[str, tuple[str, ...]]) -> Graph:
    return Graph.of(Step(name, body=lambda ctx: None, needs=needs) for name, needs in spec.items())


class Recorder:
    """Step bodies that sleep and record start/end order."""

    def __init__(self, durations: dict[str, float], fail: set[str] = frozenset()) -> None:
        self.durations, self.fail = durations, fail
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def __call__(self, step: Step) -> str:
        with self.lock:
            self.events.append(("start", step.name))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.durations.get(step.name, 0.01))
            if step.name in self.fail:
                raise RuntimeError(f"{step.name} broke")
            return step.name.upper()
        finally:
            with self.lock:
                self.active -= 1
                self.events.append(("end", step.name))

    def index(self, kind: str, name: str) -> int:
        return self.events.index((kind, name))


DIAMOND = {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")}


def test_steps_start_only_after_what_they_need():
    rec = Recorder({})
    records = run_graph(_graph(DIAMOND), rec, jobs=4)
    assert all(r.status == DONE for r in records.values())
    assert rec.index("end", "a") < rec.index("start", "b")
    assert rec.index("end", "a") < rec.index("start", "c")
    assert rec.index("end", "b") < rec.index("start", "d")
    assert rec.index("end", "c") < rec.index("start", "d")
    assert records["d"].result == "D"


def test_independent_steps_overlap():
    rec = Recorder({"b": 0.4, "c": 0.4})
    records = run_graph(_graph(DIAMOND), rec, jobs=4)
    assert overlap(records["b"], records["c"]) > 0.2
    assert rec.max_active == 2


def test_no_phase_barrier_long_branch_does_not_hold_back_short_one():
    # cluster is slow; build -> save runs meanwhile and finishes before cluster does.
    spec = {"pre": (), "cluster": ("pre",), "build": ("pre",), "save": ("build",),
            "load": ("save", "cluster")}
    rec = Recorder({"cluster": 0.6, "build": 0.1, "save": 0.1})
    records = run_graph(_graph(spec), rec, jobs=4)
    assert records["save"].end < records["cluster"].end
    assert rec.index("end", "cluster") < rec.index("start", "load")


def test_jobs_one_serialises():
    rec = Recorder({"b": 0.1, "c": 0.1})
    records = run_graph(_graph(DIAMOND), rec, jobs=1)
    assert rec.max_active == 1
    assert overlap(records["b"], records["c"]) == 0.0
    assert all(r.status == DONE for r in records.values())


def test_jobs_caps_concurrency():
    spec = {f"s{i}": () for i in range(6)}
    rec = Recorder({f"s{i}": 0.15 for i in range(6)})
    run_graph(_graph(spec), rec, jobs=2)
    assert rec.max_active == 2


def test_failure_starts_nothing_new_and_stops_running_steps(tmp_path):
    # "slow" runs a real child process; when "bad" fails the child's group must be killed.
    cancellation = Cancellation(grace=2.0)
    runner = LocalRunner(cancellation)
    pid_file = tmp_path / "pid"
    spec = {"bad": (), "slow": (), "after_bad": ("bad",), "after_slow": ("slow",)}

    def execute(step: Step) -> None:
        if step.name == "bad":
            time.sleep(0.3)
            raise RuntimeError("boom")
        if step.name == "slow":
            runner.run([sys.executable, "-c",
                        f"import os,time; open({str(pid_file)!r},'w').write(str(os.getpid())); "
                        "time.sleep(30)"])
        return None

    started = time.monotonic()
    records = run_graph(_graph(spec), execute, jobs=4, cancellation=cancellation)
    assert time.monotonic() - started < 10
    assert records["bad"].status == FAILED and "boom" in records["bad"].error
    assert records["slow"].status == CANCELLED
    assert records["after_bad"].status == SKIPPED
    assert records["after_slow"].status == SKIPPED
    assert records["after_slow"].start is None
    pid = int(pid_file.read_text())
    # The child is gone (reaped by the runner): signalling it fails.
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)


def test_keep_going_lets_independent_branches_finish():
    spec = {"a": (), "bad": ("a",), "after_bad": ("bad",), "other": ("a",), "after_other": ("other",)}
    rec = Recorder({"other": 0.2}, fail={"bad"})
    records = run_graph(_graph(spec), rec, jobs=4, keep_going=True)
    assert records["bad"].status == FAILED
    assert records["after_bad"].status == SKIPPED
    assert records["other"].status == DONE
    assert records["after_other"].status == DONE


def test_without_keep_going_independent_branch_is_not_started():
    spec = {"bad": (), "slowroot": (), "after_slow": ("slowroot",)}
    rec = Recorder({"bad": 0.05, "slowroot": 0.3}, fail={"bad"})
    records = run_graph(_graph(spec), rec, jobs=4)
    assert records["after_slow"].status == SKIPPED
    assert ("start", "after_slow") not in rec.events


def test_parallel_returns_results_in_order():
    def make(v: int, delay: float):
        def call() -> int:
            time.sleep(delay)
            return v
        return call

    started = time.monotonic()
    assert parallel(make(1, 0.3), make(2, 0.1), make(3, 0.2)) == [1, 2, 3]
    assert time.monotonic() - started < 0.55  # concurrent, not 0.6 s in a row


def test_parallel_raises_first_error_and_cancels_the_rest():
    cancellation = Cancellation(grace=1.0)
    runner = LocalRunner(cancellation)

    def long_command() -> None:
        runner.run(["sleep", "30"])

    def broken() -> None:
        time.sleep(0.2)
        raise ValueError("broken call")

    started = time.monotonic()
    with pytest.raises(ValueError, match="broken call"):
        parallel(long_command, broken, cancellation=cancellation)
    assert time.monotonic() - started < 5
    assert cancellation.cancelled


def test_keyboard_interrupt_in_scheduler_thread_cancels_and_reraises():
    # Simulated by a step that interrupts the main thread (as Ctrl-C would).
    import _thread

    cancellation = Cancellation(grace=1.0)
    runner = LocalRunner(cancellation)

    def execute(step: Step) -> None:
        if step.name == "interrupt":
            time.sleep(0.2)
            _thread.interrupt_main()
        else:
            runner.run(["sleep", "30"])

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_graph(_graph({"interrupt": (), "sleeper": ()}), execute, jobs=2, cancellation=cancellation)
    assert cancellation.cancelled
    assert time.monotonic() - started < 5


# --- dispatch order: longest remaining path first -------------------------------------------

def _starts(rec: Recorder) -> list[str]:
    return [name for kind, name in rec.events if kind == "start"]


def test_longest_remaining_path_starts_first_whatever_the_declaration_order():
    # Declared first: three one-step leaves. Declared last: the head of a chain of three.
    # Declaration order would run the leaves first and leave the chain as a tail.
    spec = {"leaf1": (), "leaf2": (), "leaf3": (), "head": (), "mid": ("head",), "tail": ("mid",)}
    rec = Recorder({})
    records = run_graph(_graph(spec), rec, jobs=1)
    assert all(r.status == DONE for r in records.values())
    assert _starts(rec)[0] == "head"
    # After head, mid (remaining path 2) beats the leaves (1 each).
    assert _starts(rec)[1] == "mid"


def test_weights_from_history_rank_ready_steps():
    # Without weights the two roots tie and declaration order wins; "slow" is known to take longer.
    spec = {"quick": (), "slow": ()}
    rec = Recorder({})
    run_graph(_graph(spec), rec, jobs=1)
    assert _starts(rec) == ["quick", "slow"]
    rec = Recorder({})
    run_graph(_graph(spec), rec, jobs=1, weights={"quick": 0.5, "slow": 30.0})
    assert _starts(rec) == ["slow", "quick"]


def test_priority_is_the_weighted_longest_path_to_the_end():
    g = _graph({"a": (), "b": ("a",), "c": ("a",), "d": ("b",)})
    path = g.remaining_path({"a": 1.0, "b": 2.0, "c": 10.0, "d": 3.0})
    assert path == {"d": 3.0, "c": 10.0, "b": 5.0, "a": 11.0}
    assert g.remaining_path() == {"d": 1.0, "c": 1.0, "b": 2.0, "a": 3.0}


def test_critical_path_dispatch_shortens_a_run_that_declaration_order_makes_long():
    # jobs=2: declaration order starts x1, x2 (short, independent) before the long chain's head,
    # so the chain starts late. Priority starts the head at once. Ordering, not timing, asserted.
    spec = {"x1": (), "x2": (), "x3": (), "head": (), "body": ("head",), "end": ("body",)}
    rec = Recorder({n: 0.02 for n in spec})
    run_graph(_graph(spec), rec, jobs=2)
    assert "head" in _starts(rec)[:2]
    assert rec.index("start", "body") < max(rec.index("start", x) for x in ("x1", "x2", "x3"))


class _CountingOrder(tuple):
    """graph.order that counts how many names are read from it."""

    reads = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        for item in super().__iter__():
            type(self).reads += 1
            yield item

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        type(self).reads += 1
        return super().__getitem__(index)


class _CountingSteps(dict):
    reads = 0

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        type(self).reads += 1
        return super().__getitem__(key)


def test_a_large_graph_is_dispatched_without_rescanning_it_per_event():
    import random

    rnd = random.Random(13)
    n = 3000
    names = [f"s{i}" for i in range(n)]
    spec = {name: tuple(rnd.sample(names[:i], min(i, rnd.randint(0, 3)))) for i, name in enumerate(names)}
    base = _graph(spec)
    edges = sum(len(s.needs) for s in base.steps.values())
    graph = Graph(_CountingSteps(base.steps), _CountingOrder(base.order))
    _CountingOrder.reads = _CountingSteps.reads = 0
    started = time.monotonic()
    records = run_graph(graph, lambda step: None, jobs=8)
    elapsed = time.monotonic() - started
    assert all(r.status == DONE for r in records.values())
    # Linear in steps + needs; a per-event rescan of graph.order would read ~n*n/2 = 4.5 million.
    assert _CountingOrder.reads + _CountingSteps.reads <= 20 * (n + edges)
    assert elapsed < 60  # generous: thousands of threads on a shared 2-core machine
