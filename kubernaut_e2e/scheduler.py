"""Runs a step graph: each step on its own thread as soon as what it needs has finished.

There are no phase barriers, so an image build overlaps cluster creation. `jobs` caps how many
steps run at once (`jobs=1` is the sequential baseline); when more steps are ready than may
start, the one with the most work still behind it goes first. On the first failure nothing new
starts and the shared `Cancellation` stops the running steps' process groups, unless
`keep_going`, in which case only the failed step's dependents are skipped.
"""
from __future__ import annotations

import heapq
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from kubernaut_e2e.errors import Cancelled, E2EError
from kubernaut_e2e.graph import Graph, Step
from kubernaut_e2e.runner import Cancellation

T = TypeVar("T")

PENDING, RUNNING, DONE, FAILED, CANCELLED, SKIPPED, INTERRUPTED = (
    "pending", "running", "done", "failed", "cancelled", "skipped", "interrupted")


class GraphInterrupted(KeyboardInterrupt):
    """Ctrl-C/SIGTERM stopped the run; `records` holds the partial outcome."""

    def __init__(self, records: dict[str, StepRecord]) -> None:
        super().__init__("interrupted")
        self.records = records


@dataclass
class StepRecord:
    """What happened to one step; times are seconds since the run started."""

    name: str
    needs: tuple[str, ...]
    status: str = PENDING
    start: float | None = None
    end: float | None = None
    error: str | None = None
    note: str = ""  # e.g. "reused existing cluster"
    result: Any = field(default=None, repr=False)

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return self.end - self.start


@dataclass(frozen=True)
class Noted:
    """A step result that carries a one-line note for the summary (e.g. "reused")."""

    note: str
    value: Any = None


class Reporter(Protocol):
    def step_started(self, record: StepRecord) -> None: ...
    def step_finished(self, record: StepRecord) -> None: ...


class _Silent:
    def step_started(self, record: StepRecord) -> None:
        pass

    def step_finished(self, record: StepRecord) -> None:
        pass


def run_graph(
    graph: Graph,
    execute: Callable[[Step], object],
    *,
    jobs: int,
    keep_going: bool = False,
    cancellation: Cancellation | None = None,
    reporter: Reporter | None = None,
    weights: Mapping[str, float] | None = None,
) -> dict[str, StepRecord]:
    """Run every step of `graph` via `execute(step)`; return the records in graph order.

    Among the steps that are ready, the one with the longest remaining path (`weights`: each
    step's estimated seconds, e.g. from past runs; 1 each when missing) starts first; ties go
    to declaration order. Ready steps wait in a heap and each finished step only touches its
    own dependents, so dispatch costs O(N log N) over a run, not a rescan per event.

    A KeyboardInterrupt in the calling thread cancels the running steps, waits for them to
    wind down (their process groups are terminated), and raises GraphInterrupted with the
    partial records, so the caller can print them.
    """
    cancellation = cancellation or Cancellation()
    reporter = reporter or _Silent()
    records = {n: StepRecord(n, graph.steps[n].needs) for n in graph.order}
    ready = ReadyQueue(graph, weights)
    finished: queue.Queue[tuple[str, BaseException | None, object]] = queue.Queue()
    t0 = time.monotonic()
    running: set[str] = set()
    stopping = False

    def worker(step: Step) -> None:
        try:
            finished.put((step.name, None, execute(step)))
        except BaseException as exc:  # reported to the scheduler thread, never lost
            finished.put((step.name, exc, None))

    def launch_ready() -> None:
        while len(running) < jobs:
            name = ready.pop()
            if name is None:
                return
            rec = records[name]
            if rec.status != PENDING:
                continue
            rec.status, rec.start = RUNNING, time.monotonic() - t0
            running.add(name)
            reporter.step_started(rec)
            threading.Thread(target=worker, args=(graph.steps[name],),
                             name=f"step-{name}", daemon=True).start()

    def skip_dependents(name: str) -> None:
        for dependent in ready.dependents_of(name, lambda n: records[n].status == PENDING):
            rec = records[dependent]
            rec.status, rec.error = SKIPPED, "a step it needs did not finish"
            reporter.step_finished(rec)

    def stop_everything(reason: str) -> None:
        nonlocal stopping
        stopping = True
        cancellation.cancel(reason)
        for rec in records.values():
            if rec.status == PENDING:
                rec.status, rec.error = SKIPPED, "not started: " + reason
                reporter.step_finished(rec)

    interrupted = False
    give_up_at = 0.0
    while True:
        if not stopping:
            launch_ready()
        if not running:
            break
        try:
            # Polled, so an interrupt (cancellation.interrupt() from the signal owner) is seen
            # within 0.1 s without a KeyboardInterrupt tearing through this loop.
            item: tuple[str, BaseException | None, object] | None = finished.get(timeout=0.1)
        except queue.Empty:
            item = None
        except KeyboardInterrupt:
            interrupted = True
            stop_everything("interrupted")
            give_up_at = time.monotonic() + cancellation.grace + 1.0
            continue
        if cancellation.interrupted and not interrupted:
            interrupted = True
            stop_everything(cancellation.reason or "interrupted")
            give_up_at = time.monotonic() + cancellation.grace + 1.0
        if item is None:
            if interrupted and time.monotonic() > give_up_at:
                # A step that ignores the stop (stuck outside any command) is left behind, so
                # that an interrupted run still ends within seconds; its thread is a daemon.
                for left in sorted(running):
                    rec = records[left]
                    rec.status, rec.end = INTERRUPTED, time.monotonic() - t0
                    rec.error = f"{cancellation.reason}; did not stop within {cancellation.grace + 1.0:g}s"
                    reporter.step_finished(rec)
                running.clear()
                break
            continue
        name, exc, result = item
        running.discard(name)
        rec = records[name]
        rec.end = time.monotonic() - t0
        if exc is None:
            rec.status, rec.result = DONE, result
        elif isinstance(exc, Cancelled) or (cancellation.cancelled and stopping):
            rec.status = INTERRUPTED if interrupted else CANCELLED
            rec.error = cancellation.reason or str(exc)
        else:
            rec.status, rec.error = FAILED, _describe(exc)
            if not keep_going:
                stop_everything(f"step {name} failed")
        if rec.status == DONE and rec.note == "" and isinstance(result, Noted):
            rec.note = result.note
        reporter.step_finished(rec)
        if rec.status == DONE:
            ready.finished(name)
        else:
            skip_dependents(name)
    if interrupted:
        raise GraphInterrupted(records)
    return records


class ReadyQueue:
    """The steps whose needs have all finished, longest remaining path first.

    Pure bookkeeping, no threads: a heap keyed by (-remaining path, declaration position) and a
    count of unfinished needs per step. Each step is pushed and popped once and each need is
    counted down once, so a whole run costs O(N log N + E).
    """

    def __init__(self, graph: Graph, weights: Mapping[str, float] | None = None) -> None:
        self.priority = graph.remaining_path(weights)
        self._children = graph.children()
        self._position = {name: i for i, name in enumerate(graph.order)}
        self._waiting = {name: len(set(graph.steps[name].needs)) for name in graph.order}
        self._heap: list[tuple[float, int, str]] = []
        for name, count in self._waiting.items():
            if count == 0:
                self._push(name)

    def _push(self, name: str) -> None:
        heapq.heappush(self._heap, (-self.priority[name], self._position[name], name))

    def pop(self) -> str | None:
        """The ready step to start next, or None when none is ready."""
        return heapq.heappop(self._heap)[2] if self._heap else None

    def finished(self, name: str) -> None:
        """`name` is done: its dependents with nothing else to wait for become ready."""
        for child in self._children[name]:
            self._waiting[child] -= 1
            if self._waiting[child] == 0:
                self._push(child)

    def dependents_of(self, name: str, pending: Callable[[str], bool]) -> list[str]:
        """The pending steps that need `name`, directly or not, in graph order (to skip them).

        The walk stops at steps that are not pending: those were skipped earlier together
        with everything after them, so each step is walked through at most once per run.
        """
        seen: set[str] = set()
        todo = [child for child in self._children[name] if pending(child)]
        while todo:
            child = todo.pop()
            if child not in seen:
                seen.add(child)
                todo.extend(kid for kid in self._children[child] if pending(kid))
        return sorted(seen, key=self._position.__getitem__)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, E2EError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def parallel(*calls: Callable[[], T], cancellation: Cancellation | None = None) -> list[T]:
    """Run callables concurrently; return their results in order, or raise like one call.

    When one raises, `cancellation` (if given) is cancelled so the others' commands stop; all
    are joined before the first exception (in argument order) is re-raised.
    """
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException | None] = [None] * len(calls)

    def run(i: int, call: Callable[[], T]) -> None:
        try:
            results[i] = call()
        except BaseException as exc:
            errors[i] = exc
            if cancellation is not None:
                cancellation.cancel(f"{getattr(call, '__name__', 'a parallel call')} failed")

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first = next((e for e in errors if e is not None and not isinstance(e, Cancelled)), None)
    first = first or next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return results


def records_ok(records: Sequence[StepRecord] | dict[str, StepRecord]) -> bool:
    values = records.values() if isinstance(records, dict) else records
    return all(r.status == DONE for r in values)
