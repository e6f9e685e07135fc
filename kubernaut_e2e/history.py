"""Past runs' timings: was this run slower than usual, and which step made it so?

A makespan alone says little (a cold run creates a cluster, a warm one reuses everything), so
each run is filed under a kind decided from its step notes, and compared with the median of the
recent runs of the same kind over the same steps. The file keeps the last KEEP runs in the
state directory. The same numbers give the scheduler its duration estimates, so the longest
remaining path is measured in seconds rather than in steps.

Pure comparison and estimation; `load`/`record`/`update` are the only IO. A history that cannot
be read or written never fails a run: it is reported and the run goes on.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import statistics
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The history file in the state directory, and how many runs it keeps.
FILE_NAME = "history.json"
KEEP = 50
#: How many recent runs of the same kind the comparison takes the median of.
BASELINE = 10
#: A step is named as slower only past both bounds: noise on a shared machine is not news.
MIN_SLOWER_SECONDS = 1.0
MIN_SLOWER_RATIO = 0.2

COLD, REBUILD, WARM = "cold", "rebuild", "warm"
#: What makes a run cold or a rebuild, read from step notes (knowledge as data): the cluster
#: step notes "created" when it made a cluster; a build step that reused its image notes
#: "reused: ...", so a build step without such a note built one.
CREATED_NOTE = "created"
BUILD_PREFIX = "build-"
REUSED_PREFIX = "reused"


def run_kind(steps: Iterable[Mapping[str, Any]]) -> str:
    """cold: a cluster was created; rebuild: an image was built for an existing cluster (the
    inner loop); warm: nothing was created or built, everything was reused."""
    done = [s for s in steps if s.get("status") == "done"]
    if any((s.get("note") or "").startswith(CREATED_NOTE) for s in done):
        return COLD
    if any(s["name"].startswith(BUILD_PREFIX) and not (s.get("note") or "").startswith(REUSED_PREFIX)
           for s in done):
        return REBUILD
    return WARM


@dataclass(frozen=True)
class Entry:
    """One run as the history keeps it."""

    started_at: str
    kind: str
    ok: bool  # every step done: only such runs are baselines
    makespan: float
    durations: dict[str, float] = field(default_factory=dict)  # done steps only

    @property
    def selection(self) -> frozenset[str]:
        return frozenset(self.durations)

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> Entry:
        """The history entry for a timings document (see kubernaut_e2e.timings)."""
        steps = document.get("steps") or []
        return cls(
            started_at=str(document.get("started_at", "")),
            kind=run_kind(steps),
            ok=bool(steps) and all(s.get("status") == "done" for s in steps)
            and not document.get("interrupted"),
            makespan=float(document.get("makespan") or 0.0),
            durations={s["name"]: float(s["duration"]) for s in steps
                       if s.get("status") == "done" and s.get("duration") is not None},
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Entry:
        return cls(str(data["started_at"]), str(data["kind"]), bool(data["ok"]), float(data["makespan"]),
                   {str(k): float(v) for k, v in dict(data["durations"]).items()})


@dataclass(frozen=True)
class Slower:
    step: str
    seconds: float
    usual: float

    @property
    def delta(self) -> float:
        return self.seconds - self.usual


@dataclass(frozen=True)
class Comparison:
    """This run against the median of the recent runs of its kind."""

    kind: str
    runs: int  # how many past runs the medians come from (0: nothing to compare with)
    makespan: float
    usual: float | None
    slower: Slower | None

    def describe(self) -> str:
        if self.runs == 0:
            return f"{self.kind} run in {self.makespan:.1f}s: the first {self.kind} run of these steps on record"
        assert self.usual is not None
        delta = self.makespan - self.usual
        pct = f" ({delta / self.usual * 100:+.0f}%)" if self.usual > 0 else ""
        plural = "s" if self.runs != 1 else ""
        text = (f"{self.kind} run in {self.makespan:.1f}s; usual {self.usual:.1f}s (median of {self.runs} "
                f"recent {self.kind} run{plural}): {delta:+.1f}s{pct}")
        if self.slower is None:
            return text + "; no step was notably slower"
        s = self.slower
        return text + f"; slower: {s.step} {s.seconds:.1f}s, usually {s.usual:.1f}s ({s.delta:+.1f}s)"


def compare(entry: Entry, past: Sequence[Entry], baseline: int = BASELINE) -> Comparison:
    """Compare `entry` with the last `baseline` successful runs of its kind and steps."""
    same = [e for e in past if e.ok and e.kind == entry.kind and e.selection == entry.selection]
    same = same[-baseline:]
    if not same:
        return Comparison(entry.kind, 0, entry.makespan, None, None)
    usual = statistics.median(e.makespan for e in same)
    slower = None
    for step, seconds in entry.durations.items():
        typical = statistics.median(e.durations[step] for e in same)
        delta = seconds - typical
        if delta >= MIN_SLOWER_SECONDS and delta >= MIN_SLOWER_RATIO * typical:
            if slower is None or delta > slower.delta:
                slower = Slower(step, seconds, typical)
    return Comparison(entry.kind, len(same), entry.makespan, usual, slower)


def estimates(past: Sequence[Entry], names: Iterable[str], baseline: int = BASELINE) -> dict[str, float]:
    """Each step's usual duration (median of its last `baseline` successful runs), for the
    scheduler's priorities; steps never seen are left out (the scheduler counts them 1)."""
    out: dict[str, float] = {}
    for name in names:
        seen = [e.durations[name] for e in past if e.ok and name in e.durations][-baseline:]
        if seen:
            out[name] = statistics.median(seen)
    return out


# --- the file ----------------------------------------------------------------------------------

def path_in(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def load(path: Path) -> list[Entry]:
    """The recorded runs, oldest first; an absent or unreadable file is an empty history."""
    try:
        data = json.loads(path.read_text())
        return [Entry.from_dict(item) for item in data["runs"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Runs of different clusters share a state directory: one writer at a time.
    with open(path.with_suffix(".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def record(path: Path, entry: Entry, keep: int = KEEP) -> list[Entry]:
    """Append `entry`, keep the last `keep` runs; return the runs before it (under one lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        past = load(path)
        runs = [*past, entry][-keep:]
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".history-")
        with os.fdopen(fd, "w") as fh:
            json.dump({"runs": [asdict(e) for e in runs]}, fh, indent=1)
            fh.write("\n")
        os.replace(tmp, path)  # a reader never sees half a file
    return past


def update(state_dir: Path, document: Mapping[str, Any], keep: int = KEEP) -> dict[str, Any]:
    """Record this run and compare it with the past: the `history` part of timings.json."""
    entry = Entry.of(document)
    try:
        past = record(path_in(state_dir), entry, keep)
    except OSError as exc:
        return {"kind": entry.kind, "text": f"history not recorded: {exc}"}
    if not entry.ok:
        return {"kind": entry.kind, "text": f"{entry.kind} run did not complete: not compared with history"}
    comparison = compare(entry, past)
    return {"kind": entry.kind, "compared_with": comparison.runs, "usual_makespan": comparison.usual,
            "slower": asdict(comparison.slower) if comparison.slower else None,
            "text": comparison.describe()}
