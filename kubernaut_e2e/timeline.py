"""A picture of a run: one bar per step on a time axis, as an SVG file and as terminal text.

People read a timeline faster than a table of start and end times: which steps overlapped,
where the run waited, which chain set the makespan (the critical path), which steps were
reused, and where it failed. Both pictures are drawn from the timings document (the data of
`timings.json`, see kubernaut_e2e.timings), so they never disagree with it. Pure: a document in,
text out; the caller writes the file.

The SVG is self-contained (no scripts, fonts, styles or images from elsewhere): it opens from a
CI artifact as well as from the run directory. Hovering a bar shows the step's details (an SVG
<title>); a failed step's error is also written beside its bar. Step names link to their logs,
which sit next to the picture in the run directory.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

#: The picture's file name in the run directory.
FILE_NAME = "timeline.svg"

#: Bar colours by step status (statuses as in kubernaut_e2e.scheduler).
COLOURS = {"done": "#2e7d32", "failed": "#c62828", "cancelled": "#ef6c00", "interrupted": "#f9a825",
           "skipped": "#9e9e9e", "running": "#0277bd", "pending": "#bdbdbd"}
REUSED_COLOUR = "#a5d6a7"
#: Terminal marks by status, with an ASCII fallback for terminals that cannot show Unicode.
MARKS = {"done": ("✓", "ok"), "failed": ("✗", "FAIL"), "cancelled": ("⊘", "cancel"),
         "interrupted": ("!", "INT"), "skipped": ("-", "skip"), "running": ("…", "run"),
         "pending": ("-", "-")}
#: Bar characters: (ran, reused, failed/stopped); Unicode and ASCII.
BARS = {True: ("█", "░", "▒"), False: ("#", "=", "x")}


def is_reused(note: str | None) -> bool:
    """Steps that found their result already in place say so with a note starting "reused"."""
    return (note or "").startswith("reused")


@dataclass(frozen=True)
class Bar:
    """One step, placed on the run's time axis (seconds since the first step started)."""

    name: str
    status: str
    start: float | None
    end: float | None
    note: str
    error: str
    critical: bool

    @property
    def reused(self) -> bool:
        return is_reused(self.note)

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start


def bars(document: Mapping[str, Any]) -> tuple[list[Bar], float]:
    """The steps of a timings document as bars, and the span of the axis in seconds."""
    steps: Sequence[Mapping[str, Any]] = document.get("steps") or []
    starts = [s["start"] for s in steps if s.get("start") is not None]
    origin = min(starts, default=0.0)
    critical = set(document.get("critical_path") or [])
    out = []
    for s in steps:
        start = None if s.get("start") is None else s["start"] - origin
        end = None if s.get("end") is None else s["end"] - origin
        out.append(Bar(s["name"], s.get("status") or "pending", start, end, s.get("note") or "",
                       s.get("error") or "", s["name"] in critical))
    span = max((b.end for b in out if b.end is not None), default=0.0)
    return out, span


# --- terminal text -----------------------------------------------------------------------------

def text(document: Mapping[str, Any], width: int = 100, unicode: bool = True) -> list[str]:
    """A compact timeline for the terminal: one line per step, bars scaled to `width` columns.

        * cluster         ▕  ██████████████████████  ▏ 12.1s ✓
          build-gateway   ▕  ░                       ▏  0.1s ✓ reused
    """
    rows, span = bars(document)
    if not rows:
        return []
    ran, reused, broken = BARS[unicode]
    name_width = min(max(len(b.name) for b in rows), 28)
    # "* " + name + " |" + bar + "| " + "1234.5s" + " " + mark + " reused"
    bar_width = max(10, width - name_width - 4 - 2 - 8 - 1 - 5 - 7)
    left, right = ("▕", "▏") if unicode else ("|", "|")
    lines = []
    for b in rows:
        cells = [" "] * bar_width
        if b.start is not None and span > 0:
            first = min(bar_width - 1, int(b.start / span * bar_width))
            last = max(first + 1, min(bar_width, round((b.end if b.end is not None else span) / span * bar_width)))
            char = reused if b.reused else ran if b.status == "done" else broken
            cells[first:last] = [char] * (last - first)
        took = f"{b.duration:6.1f}s" if b.duration is not None else " " * 7
        mark = MARKS.get(b.status, (b.status, b.status))[0 if unicode else 1]
        tail = " reused" if b.reused else ""
        name = b.name if len(b.name) <= name_width else b.name[: name_width - 1] + "~"
        lines.append(f"{'*' if b.critical else ' '} {name:<{name_width}} {left}{''.join(cells)}{right} "
                     f"{took} {mark}{tail}")
    legend = f"  * critical path  {ran} ran  {reused} reused  {broken} failed/stopped  axis 0-{span:.1f}s"
    return [*lines, legend[:width]]


# --- SVG -----------------------------------------------------------------------------------------

_ROW, _BAR, _LABEL_WIDTH, _TOP = 24, 16, 190, 64
_NOTE_WIDTH = 330  # room right of the axis for errors and notes
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def plain_text(value: str) -> str:
    """`value` without terminal colour codes and control characters (tabs and newlines stay).

    Tool output carries them; XML 1.0 forbids most of them, and in a status column they would
    move the cursor.
    """
    return _CONTROL.sub("", _ANSI.sub("", value))


def _t(value: str) -> str:
    return escape(plain_text(value))


def _a(value: str) -> str:
    return quoteattr(plain_text(value))


def _tick_step(span: float, max_ticks: int = 10) -> float:
    """A round tick interval (1, 2 or 5 times a power of ten) giving at most `max_ticks` ticks."""
    if span <= 0:
        return 1.0
    raw = span / max_ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _first_line(text_: str, limit: int = 60) -> str:
    line = text_.strip().splitlines()[0] if text_.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _hover(b: Bar) -> str:
    parts = [f"{b.name}: {b.status}"]
    if b.start is not None:
        end = f"{b.end:.1f}s" if b.end is not None else "?"
        took = f" ({b.duration:.1f}s)" if b.duration is not None else ""
        parts.append(f"{b.start:.1f}s -> {end}{took}")
    if b.critical:
        parts.append("on the critical path")
    if b.note:
        parts.append(b.note)
    if b.error:
        parts.append(b.error)
    return "\n".join(parts)


def svg(document: Mapping[str, Any], axis_width: int = 640) -> str:
    """The run as one self-contained SVG document."""
    rows, span = bars(document)
    scale = axis_width / span if span > 0 else 0.0
    x0 = _LABEL_WIDTH
    height = _TOP + _ROW * max(1, len(rows)) + 56
    width = x0 + axis_width + _NOTE_WIDTH
    critical = " -> ".join(document.get("critical_path") or []) or "-"
    title = (f"e2e run {document.get('started_at', '')}: makespan {document.get('makespan') or 0:.1f}s, "
             f"sum of steps {document.get('sum_of_steps') or 0:.1f}s")
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{_t(title)}</title>",
        '<defs><pattern id="reused" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="{REUSED_COLOUR}"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#ffffff" stroke-width="3"/></pattern></defs>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="8" y="18" font-size="14" font-weight="bold">{_t(title)}</text>',
        f'<text x="8" y="36">critical path: {_t(critical)}</text>',
    ]
    # The time axis: grid lines with round second values.
    step = _tick_step(span)
    tick = 0.0
    while tick <= span + 1e-9:
        x = x0 + tick * scale
        out.append(f'<line x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" y2="{_TOP + _ROW * len(rows)}" '
                   'stroke="#e0e0e0"/>')
        out.append(f'<text x="{x:.1f}" y="{_TOP - 10}" text-anchor="middle" fill="#616161">{tick:g}s</text>')
        tick += step
        if scale == 0:
            break
    for i, b in enumerate(rows):
        y = _TOP + i * _ROW
        cls = " ".join(c for c in (b.status, "critical" if b.critical else "", "reused" if b.reused else "") if c)
        weight = ' font-weight="bold"' if b.critical else ""
        out.append(f'<g class={_a(cls)} data-step={_a(b.name)}>')
        out.append(f"<title>{_t(_hover(b))}</title>")
        out.append(f'<a href={_a(b.name + ".log")}><text x="{x0 - 8}" y="{y + _BAR - 3}" '
                   f'text-anchor="end"{weight}>{"◆ " if b.critical else ""}{_t(b.name)}</text></a>')
        right = x0
        if b.start is not None:
            end = b.end if b.end is not None else span
            bx, bw = x0 + b.start * scale, max(2.0, (end - b.start) * scale)
            fill = "url(#reused)" if b.reused else COLOURS.get(b.status, "#757575")
            stroke = ' stroke="#000000" stroke-width="2"' if b.critical else ""
            out.append(f'<rect x="{bx:.1f}" y="{y + 2}" width="{bw:.1f}" height="{_BAR}" rx="2" '
                       f'fill="{fill}"{stroke}/>')
            right = bx + bw
        took = f"{b.duration:.1f}s" if b.duration is not None else ""
        label = _first_line(b.error) if b.error and b.status != "done" else (
            f"reused, {took}" if b.reused else took or b.status)
        colour = COLOURS["failed"] if b.status == "failed" else "#424242"
        out.append(f'<text x="{right + 6:.1f}" y="{y + _BAR - 3}" fill="{colour}">{_t(label)}</text>')
        out.append("</g>")
    legend_y = _TOP + _ROW * len(rows) + 30
    legend = [("done", COLOURS["done"]), ("reused", "url(#reused)"), ("failed", COLOURS["failed"]),
              ("cancelled", COLOURS["cancelled"]), ("skipped", COLOURS["skipped"])]
    x = 8
    for name, fill in legend:
        out.append(f'<rect x="{x}" y="{legend_y - 11}" width="14" height="12" fill="{fill}"/>'
                   f'<text x="{x + 18}" y="{legend_y}">{name}</text>')
        x += 100
    out.append(f'<rect x="{x}" y="{legend_y - 11}" width="14" height="12" fill="#ffffff" stroke="#000000" '
               f'stroke-width="2"/><text x="{x + 18}" y="{legend_y}">◆ critical path</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
