"""Everything the user sees while a run goes on and at its end; no logic lives here.

With a terminal: a rich live view, one row per step, where a running step shows its progress
(`podman build`'s STEP n/m, kind's phase) and its latest output line, and boxed tables. Without
one (pipes, files, CI=true): plain timestamped lines and plain aligned columns, never box drawing
and never a line wrapped to some assumed width, so `grep` and `cut` see whole records, plus one
line every HEARTBEAT_SECONDS per step that has been running that long, so a 10-minute build is
not ten silent minutes in a CI log. Every line is written whole under one lock (`LineWriter`),
so parallel steps never run together. A reader that goes away (`invoke e2e.plan | head -1`) is
not an error: `PipeSafe` drops the rest of the output quietly and the task's exit status stays
what it would have been.
"""
from __future__ import annotations

import io
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
    return is_terminal(stream) and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class PipeSafe(io.TextIOBase):
    """A text stream that turns "the reader went away" (EPIPE) into silence.

    After the first BrokenPipeError the stream's file descriptor is pointed at /dev/null, so
    neither later writes nor the interpreter's final flush raise or print a traceback.
    """

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner
        self.closed_by_reader = False

    def _gone(self) -> None:
        self.closed_by_reader = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.inner.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass

    def write(self, text: str) -> int:
        if not self.closed_by_reader:
            try:
                self.inner.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.closed_by_reader:
            try:
                self.inner.flush()
            except BrokenPipeError:
                self._gone()

    def isatty(self) -> bool:
        return is_terminal(self.inner)

    def fileno(self) -> int:
        return self.inner.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", "utf-8") or "utf-8"


class LineWriter:
    """Whole lines to one stream from any thread: each line is a single write under one lock."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text.rstrip("\n") + "\n")
            self.stream.flush()


class PlainReporter:
    """Timestamped whole lines; safe to call from any step thread."""

    def __init__(self, out: TextIO | LineWriter | None = None, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self.lines = out if isinstance(out, LineWriter) else LineWriter(out)
        self.stream = self.lines.stream
        self.activity = Activity()
        self._heartbeat = Heartbeat(self.activity, self.line, heartbeat) if heartbeat > 0 else None

    def line(self, text: str) -> None:
        self.lines.write(f"[{time.strftime('%H:%M:%S')}] {text}")

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


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines()) if "\n" in text else text.replace("\t", " ")


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned columns for a pipe: one line per row, nothing cut or wrapped. Pure.

    The last column is not padded, so a long detail stays on its own row's line.
    """
    cells = [[_one_line(str(c)) for c in row] for row in [list(headers), *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers) - 1)]
    return ["  ".join([*(row[i].ljust(widths[i]) for i in range(len(widths))), row[-1]]).rstrip()
            for row in cells]


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


def make_reporter(names: Sequence[str], out: TextIO | LineWriter | None = None) -> PlainReporter | LiveReporter:
    lines = out if isinstance(out, LineWriter) else LineWriter(out)
    return LiveReporter(names, lines.stream) if wants_live_view(lines.stream) else PlainReporter(lines)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:7.1f}"


def print_summary(records: Mapping[str, StepRecord], run_dir: Path, stream: TextIO | None = None) -> None:
    """The end-of-run table: per-step start/end/duration, makespan, sum, critical path."""
    stream = stream or sys.stdout
    summary = summarise(records)
    totals = (f"makespan {summary.makespan:.1f}s | sum of steps {summary.total:.1f}s "
              f"(one at a time) | speed-up x{summary.speedup:.2f}")
    path = f"critical path: {' -> '.join(summary.critical_path) or '-'}"
    failures = [(rec.name, rec.error or "") for rec in records.values() if rec.status == FAILED]
    if not is_terminal(stream):
        lines = ["Step timings (seconds from start)"]
        lines += plain_table(("step", "status", "start", "end", "duration", "note"),
                             [(r.name, r.status, _fmt(r.start).strip(), _fmt(r.end).strip(),
                               _fmt(r.duration).strip(), r.note) for r in records.values()])
        lines += [totals, path]
        for name, error in failures:
            lines.append(f"FAILED {name}: {error}")
            lines.append(f"  log: {run_dir / (name + '.log')}")
        lines.append(f"run directory: {run_dir}")
        stream.write("\n".join(lines) + "\n")
        stream.flush()
        return

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=stream)
    table = Table(title="Step timings (seconds from start)", title_justify="left")
    for col, justify in (("step", "left"), ("status", "left"), ("start", "right"),
                         ("end", "right"), ("duration", "right"), ("note", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for rec in records.values():
        style = _STYLE.get(rec.status, "")
        table.add_row(rec.name, f"[{style}]{rec.status}[/]" if style else rec.status,
                      _fmt(rec.start), _fmt(rec.end), _fmt(rec.duration), escape(rec.note))
    console.print(table)
    console.print(totals, highlight=False)
    console.print(path, highlight=False)
    for name, error in failures:
        # Error text is data (logs, Go traces with [brackets]): never rich markup.
        console.print(f"[bold red]FAILED[/] {escape(name)}: {escape(error)}", highlight=False, soft_wrap=True)
        console.print(f"  log: {run_dir / (name + '.log')}", highlight=False, soft_wrap=True, markup=False)
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
    stream = stream or sys.stdout
    if not is_terminal(stream):
        lines = ["Checklist", *plain_table(("check", "result", "measured"),
                                           [(c.name, "pass" if c.passed else "FAIL", c.detail) for c in checks])]
        stream.write("\n".join(lines) + "\n")
        stream.flush()
        return

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Checklist", title_justify="left")
    table.add_column("check")
    table.add_column("result")
    table.add_column("measured")
    for check in checks:
        table.add_row(check.name, "[green]pass[/]" if check.passed else "[bold red]FAIL[/]",
                      escape(check.detail))
    Console(file=stream).print(table)
