"""Everything the user sees while a run goes on and at its end; no logic lives here.

With a terminal: a rich live view, one row per step, where a running step shows its progress
(`podman build`'s STEP n/m, kind's phase) and its latest output line. Without one (pipes,
CI=true): plain timestamped lines, each written whole under a lock so parallel steps never
interleave mid-line, plus one line every HEARTBEAT_SECONDS per step that has been running that
long, so a 10-minute build is not ten silent minutes in a CI log.
"""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from kubernaut_e2e import kind, podman, timeline
from kubernaut_e2e.scheduler import CANCELLED, DONE, FAILED, INTERRUPTED, RUNNING, SKIPPED, StepRecord
from kubernaut_e2e.timings import summarise

_MARK = {DONE: "done", FAILED: "FAILED", CANCELLED: "cancelled", SKIPPED: "skipped", RUNNING: "running",
         INTERRUPTED: "INTERRUPTED"}
_STYLE = {DONE: "green", FAILED: "bold red", CANCELLED: "yellow", SKIPPED: "dim", RUNNING: "cyan",
          INTERRUPTED: "bold yellow"}


#: Seconds between the plain output's "still running" lines for a long step.
HEARTBEAT_SECONDS = 10.0
#: What the live view tries on each output line to read a step's progress (first match wins).
PROGRESS_PARSERS: tuple[Callable[[str], str | None], ...] = (
    podman.build_progress, podman.save_progress, kind.create_progress, kind.load_progress)


def trim_line(raw: str, width: int = 80) -> str:
    """One output line as a status column shows it: what a terminal would leave after its
    carriage returns, no colour codes or control characters, one space between words, at most
    `width` characters."""
    text = " ".join(timeline.plain_text(raw.rstrip("\r\n").split("\r")[-1]).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def progress_of(line: str) -> str | None:
    for parse in PROGRESS_PARSERS:
        found = parse(line)
        if found:
            return found
    return None


@dataclass(frozen=True)
class Running:
    """A snapshot of one running step for the live view or a heartbeat line."""

    name: str
    elapsed: float
    progress: str
    line: str

    def describe(self) -> str:
        progress = f" [{self.progress}]" if self.progress else ""
        latest = f": {self.line}" if self.line else ""
        return f"{self.name}: running {self.elapsed:.0f}s{progress}{latest}"


class Activity:
    """What each running step is doing: since when, its progress, its latest output line.

    Fed from step threads (`output`, with lines the step context has already masked) and from
    the scheduler thread (`started`/`finished`); read by the live view and the heartbeat.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}
        self._progress: dict[str, str] = {}
        self._line: dict[str, str] = {}

    def started(self, name: str) -> None:
        with self._lock:
            self._started[name] = self._clock()
            self._progress.pop(name, None)
            self._line.pop(name, None)

    def finished(self, name: str) -> None:
        with self._lock:
            self._started.pop(name, None)

    def output(self, name: str, raw: str) -> None:
        line = trim_line(raw)
        if not line:
            return
        progress = progress_of(line)
        with self._lock:
            self._line[name] = line
            if progress:
                self._progress[name] = progress

    def running(self) -> list[Running]:
        """The running steps, longest-running first."""
        now = self._clock()
        with self._lock:
            rows = [Running(n, now - t, self._progress.get(n, ""), self._line.get(n, ""))
                    for n, t in self._started.items()]
        return sorted(rows, key=lambda r: -r.elapsed)

    def get(self, name: str) -> Running | None:
        return next((r for r in self.running() if r.name == name), None)


class Heartbeat:
    """Every `interval` seconds, `emit` one line per step that has been running that long."""

    def __init__(self, activity: Activity, emit: Callable[[str], None],
                 interval: float = HEARTBEAT_SECONDS) -> None:
        self._activity, self._emit, self._interval = activity, emit, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            for row in self._activity.running():
                if row.elapsed >= self._interval:
                    self._emit(row.describe())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def wants_live_view(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


class PlainReporter:
    """Timestamped whole lines; safe to call from any step thread."""

    def __init__(self, stream: TextIO | None = None, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()
        self.activity = Activity()
        self._heartbeat = Heartbeat(self.activity, self.line, heartbeat) if heartbeat > 0 else None

    def line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            self.stream.write(f"[{stamp}] {text}\n")
            self.stream.flush()

    def step_started(self, record: StepRecord) -> None:
        self.activity.started(record.name)
        self.line(f"{record.name}: started")

    def step_output(self, name: str, line: str) -> None:
        """A line of a running step's output (already masked): kept for the heartbeat."""
        self.activity.output(name, line)

    def step_finished(self, record: StepRecord) -> None:
        self.activity.finished(record.name)
        took = f" in {record.duration:.1f}s" if record.duration is not None else ""
        note = f" ({record.note})" if record.note else ""
        # The first line only: multi-line failure details are printed once, in the summary.
        first = (record.error or "").splitlines()[0] if record.error else ""
        more = " (details below)" if record.error and "\n" in record.error else ""
        why = f": {first}{more}" if record.error and record.status != DONE else ""
        self.line(f"{record.name}: {_MARK.get(record.status, record.status)}{took}{note}{why}")

    def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()


class LiveReporter:
    """A rich Live table refreshed a few times a second from the shared step records."""

    def __init__(self, names: Sequence[str], stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self._records: dict[str, StepRecord] = {n: StepRecord(n, ()) for n in names}
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()
        self.activity = Activity()
        self.console = Console(file=stream or sys.stdout)
        self._live = Live(get_renderable=self._render, console=self.console,
                          refresh_per_second=4, transient=False)
        self._live.start()

    def _render(self):  # type: ignore[no-untyped-def]
        from rich.markup import escape
        from rich.table import Table

        table = Table(box=None, show_header=True, header_style="bold")
        table.add_column("step")
        table.add_column("state")
        table.add_column("elapsed", justify="right")
        table.add_column("")
        with self._lock:
            rows = list(self._records.values())
            started = dict(self._started)
        now = time.monotonic()
        for rec in rows:
            if rec.status == RUNNING:
                elapsed = f"{now - started[rec.name]:.0f}s"
            elif rec.duration is not None:
                elapsed = f"{rec.duration:.1f}s"
            else:
                elapsed = ""
            detail = rec.note or ((rec.error or "").splitlines()[0] if rec.error and rec.status in (FAILED, CANCELLED) else "")
            if rec.status == RUNNING:
                detail = _live_detail(self.activity.get(rec.name))
            style = _STYLE.get(rec.status, "")
            table.add_row(rec.name, f"[{style}]{_MARK.get(rec.status, rec.status)}[/]" if style
                          else rec.status, elapsed, escape(detail[:80]))
        return table

    def step_started(self, record: StepRecord) -> None:
        self.activity.started(record.name)
        with self._lock:
            self._records[record.name] = record
            self._started[record.name] = time.monotonic()

    def step_output(self, name: str, line: str) -> None:
        """A line of a running step's output (already masked): its row shows the latest."""
        self.activity.output(name, line)

    def step_finished(self, record: StepRecord) -> None:
        self.activity.finished(record.name)
        with self._lock:
            self._records[record.name] = record

    def line(self, text: str) -> None:
        self._live.console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        self._live.stop()


def _live_detail(row: Running | None) -> str:
    """A running step's last column: "[stage 2/2, step 3/7] COPY . /src"."""
    if row is None:
        return ""
    progress = f"[{row.progress}] " if row.progress else ""
    return progress + row.line


def make_reporter(names: Sequence[str], stream: TextIO | None = None) -> PlainReporter | LiveReporter:
    stream = stream or sys.stdout
    return LiveReporter(names, stream) if wants_live_view(stream) else PlainReporter(stream)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:7.1f}"


def print_summary(records: Mapping[str, StepRecord], run_dir: Path, stream: TextIO | None = None) -> None:
    """The end-of-run table: per-step start/end/duration, makespan, sum, critical path."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    stream = stream or sys.stdout
    console = Console(file=stream, width=max(100, Console(file=stream).width))
    summary = summarise(records)
    table = Table(title="Step timings (seconds from start)", title_justify="left")
    for col, justify in (("step", "left"), ("status", "left"), ("start", "right"),
                         ("end", "right"), ("duration", "right"), ("note", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for rec in records.values():
        style = _STYLE.get(rec.status, "")
        table.add_row(rec.name, f"[{style}]{rec.status}[/]" if style else rec.status,
                      _fmt(rec.start), _fmt(rec.end), _fmt(rec.duration), escape(rec.note))
    console.print(table)
    console.print(
        f"makespan {summary.makespan:.1f}s | sum of steps {summary.total:.1f}s "
        f"(one at a time) | speed-up x{summary.speedup:.2f}",
        highlight=False,
    )
    console.print(f"critical path: {' -> '.join(summary.critical_path) or '-'}", highlight=False)
    for rec in records.values():
        if rec.status == FAILED:
            # Error text is data (logs, Go traces with [brackets]): never rich markup.
            console.print(f"[bold red]FAILED[/] {escape(rec.name)}: {escape(rec.error or '')}",
                          highlight=False, soft_wrap=True)
            console.print(f"  log: {run_dir / (rec.name + '.log')}", highlight=False, soft_wrap=True,
                          markup=False)
    console.print(f"run directory: {run_dir}", highlight=False, soft_wrap=True, markup=False)


def print_timeline(document: Mapping[str, Any], picture: Path | None, stream: TextIO | None = None) -> None:
    """The end-of-run picture in text: a bar per step, this run against past runs, and where
    the SVG timeline is. Drawn from the timings document, like timeline.svg."""
    stream = stream or sys.stdout
    width = shutil.get_terminal_size((100, 24)).columns if stream.isatty() else 100
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    lines = timeline.text(document, max(60, width), unicode=encoding == "utf8")
    if lines:
        stream.write("Timeline (seconds from the first start)\n" + "\n".join(lines) + "\n")
    history = document.get("history") or {}
    if history.get("text"):
        stream.write(f"history: {history['text']}\n")
    if picture is not None:
        stream.write(f"timeline: {picture}\n")
    stream.flush()


def print_checklist(checks: Sequence[Any], stream: TextIO | None = None) -> None:
    """The validation checklist: one line per check, pass or FAIL, with what was measured."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=stream or sys.stdout, width=120)
    table = Table(title="Checklist", title_justify="left")
    table.add_column("check")
    table.add_column("result")
    table.add_column("measured")
    for check in checks:
        table.add_row(check.name, "[green]pass[/]" if check.passed else "[bold red]FAIL[/]",
                      escape(check.detail))
    console.print(table)
