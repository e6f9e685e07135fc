"""Everything the user sees while a run goes on and at its end; no logic lives here.

With a terminal: a rich live view, one row per step. Without one (pipes, CI=true): plain
timestamped lines, each written whole under a lock so parallel steps never interleave mid-line.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from kubernaut_e2e.scheduler import CANCELLED, DONE, FAILED, INTERRUPTED, RUNNING, SKIPPED, StepRecord
from kubernaut_e2e.timings import summarise

_MARK = {DONE: "done", FAILED: "FAILED", CANCELLED: "cancelled", SKIPPED: "skipped", RUNNING: "running",
         INTERRUPTED: "INTERRUPTED"}
_STYLE = {DONE: "green", FAILED: "bold red", CANCELLED: "yellow", SKIPPED: "dim", RUNNING: "cyan",
          INTERRUPTED: "bold yellow"}


def wants_live_view(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


class PlainReporter:
    """Timestamped whole lines; safe to call from any step thread."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            self.stream.write(f"[{stamp}] {text}\n")
            self.stream.flush()

    def step_started(self, record: StepRecord) -> None:
        self.line(f"{record.name}: started")

    def step_finished(self, record: StepRecord) -> None:
        took = f" in {record.duration:.1f}s" if record.duration is not None else ""
        note = f" ({record.note})" if record.note else ""
        # The first line only: multi-line failure details are printed once, in the summary.
        first = (record.error or "").splitlines()[0] if record.error else ""
        more = " (details below)" if record.error and "\n" in record.error else ""
        why = f": {first}{more}" if record.error and record.status != DONE else ""
        self.line(f"{record.name}: {_MARK.get(record.status, record.status)}{took}{note}{why}")

    def close(self) -> None:
        pass


class LiveReporter:
    """A rich Live table refreshed a few times a second from the shared step records."""

    def __init__(self, names: Sequence[str], stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self._records: dict[str, StepRecord] = {n: StepRecord(n, ()) for n in names}
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()
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
            style = _STYLE.get(rec.status, "")
            table.add_row(rec.name, f"[{style}]{_MARK.get(rec.status, rec.status)}[/]" if style
                          else rec.status, elapsed, escape(detail[:80]))
        return table

    def step_started(self, record: StepRecord) -> None:
        with self._lock:
            self._records[record.name] = record
            self._started[record.name] = time.monotonic()

    def step_finished(self, record: StepRecord) -> None:
        with self._lock:
            self._records[record.name] = record

    def line(self, text: str) -> None:
        self._live.console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        self._live.stop()


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
