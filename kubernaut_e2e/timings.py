"""Measured timings of a run: makespan, sequential cost, critical path, timings.json."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernaut_e2e.scheduler import StepRecord


@dataclass(frozen=True)
class Summary:
    makespan: float  # first start to last end: what the run cost
    total: float  # sum of step durations: what a one-at-a-time run would cost
    critical_path: tuple[str, ...]  # the chain of steps that determined the makespan

    @property
    def speedup(self) -> float:
        return self.total / self.makespan if self.makespan > 0 else 1.0


def critical_path(records: Mapping[str, StepRecord]) -> tuple[str, ...]:
    """Walk back from the last step to finish, each time to the need that finished last.

    That chain is the measured critical path: shortening any other step would not have ended
    the run sooner.
    """
    timed = {n: r for n, r in records.items() if r.end is not None}
    if not timed:
        return ()
    current = max(timed.values(), key=lambda r: r.end or 0.0)
    path = [current.name]
    while True:
        needs = [timed[n] for n in current.needs if n in timed]
        if not needs:
            break
        current = max(needs, key=lambda r: r.end or 0.0)
        path.append(current.name)
    return tuple(reversed(path))


def summarise(records: Mapping[str, StepRecord]) -> Summary:
    timed = [r for r in records.values() if r.start is not None and r.end is not None]
    if not timed:
        return Summary(0.0, 0.0, ())
    makespan = max(r.end for r in timed) - min(r.start for r in timed)  # type: ignore[operator]
    total = sum(r.duration or 0.0 for r in timed)
    return Summary(makespan, total, critical_path(records))


def overlap(a: StepRecord, b: StepRecord) -> float:
    """Seconds during which both steps ran (0 when they did not overlap)."""
    if None in (a.start, a.end, b.start, b.end):
        return 0.0
    return max(0.0, min(a.end, b.end) - max(a.start, b.start))  # type: ignore[type-var,operator]


def timings_document(
    records: Mapping[str, StepRecord], started_at: str, run_dir: Path, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    summary = summarise(records)
    return {
        "started_at": started_at,
        "run_dir": str(run_dir),
        "steps": [
            {
                "name": r.name,
                "needs": list(r.needs),
                "status": r.status,
                "start": r.start,
                "end": r.end,
                "duration": r.duration,
                "error": r.error,
                "note": r.note,
                "log": str(run_dir / f"{r.name}.log"),
            }
            for r in records.values()
        ],
        "makespan": summary.makespan,
        "sum_of_steps": summary.total,
        "critical_path": list(summary.critical_path),
        **(extra or {}),
    }


def write_timings(path: Path, document: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")
