"""The end-of-run checklist: the handoff's validation list, checked from measurements."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from kubernaut_e2e.scheduler import DONE, FAILED, Noted, StepRecord
from kubernaut_e2e.timings import overlap, summarise


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _value(record: StepRecord | None) -> Any:
    if record is None:
        return None
    return record.result.value if isinstance(record.result, Noted) else record.result


def checklist(records: Mapping[str, StepRecord], budget: float, *, jobs: int = 4) -> list[Check]:
    """Pure: every line is derived from the step records, none is assumed.

    With `jobs=1` (the one-at-a-time baseline the user asked for) the builds cannot overlap:
    that line then passes with "not checked" instead of failing every such run by construction.
    """
    checks: list[Check] = []
    not_done = [n for n, r in records.items() if r.status != DONE]
    checks.append(Check("every step done", not not_done,
                        "all done" if not not_done else "not done: " + ", ".join(not_done)))

    builds = [r for n, r in records.items() if n.startswith("build-")]
    if len(builds) >= 2:
        if jobs < 2:
            checks.append(Check("image builds ran in parallel", True,
                                f"not checked: --jobs {jobs} runs one step at a time"))
        elif all(b.status == DONE for b in builds):
            most = max(overlap(a, b) for i, a in enumerate(builds) for b in builds[i + 1:])
            checks.append(Check("image builds ran in parallel", most > 0,
                                f"overlapped {most:.1f}s" if most > 0 else "did not overlap"))
        else:
            checks.append(Check("image builds ran in parallel", False, "a build did not finish"))

    health = _value(records.get("health")) or {}
    pods = health.get("pods") or {}
    waiting = sorted(name for name, pod in pods.items() if not pod)
    checks.append(Check("every service has a Running, ready pod", bool(pods) and not waiting,
                        ", ".join(f"{name}: {pod}" for name, pod in pods.items()) if pods and not waiting
                        else ("not ready: " + ", ".join(waiting) if waiting else "no service pod seen")))
    results = health.get("checks") or {}
    ok = bool(results) and all(r.get("ok") for r in results.values())
    checks.append(Check("health check passed", ok,
                        "; ".join(f"{r['url']}: {r['outcome']}" for r in results.values())
                        or "health step did not run"))

    makespan = summarise(records).makespan
    checks.append(Check(f"total time within budget ({budget:g}s)", makespan <= budget,
                        f"{makespan:.1f}s"))
    failed = [n for n, r in records.items() if r.status == FAILED]
    checks.append(Check("no step errors", not failed,
                        "none" if not failed else "failed: " + ", ".join(failed)))
    return checks
