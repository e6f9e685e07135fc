"""Score `e2e.diagnose` on the log corpus in tests/corpus/ (see its manifest.yaml).

Prints, per family of failure, how many crash logs got the expected finding first with the
expected evidence; how many healthy or recovered logs produced a problem (must be 0); whether
the kind-export bundles rank causes before what they caused; the held-out logs (kinds the
signatures were not written for) that the generic finding must still catch; and how long the
whole corpus took. Exit 1 when a goal is missed (score < 95 %, a false problem, a held-out or
bundle miss), so CI can run it.

    python3 bench/diagnosis_score.py [--verbose]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernaut_e2e.diagnosis import Finding, diagnose_path, is_problem, load_knowledge  # noqa: E402

CORPUS = ROOT / "tests" / "corpus"
MANIFEST = CORPUS / "manifest.yaml"
GOAL = 0.95


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _said(finding: Finding) -> str:
    return "\n".join([finding.cause, *finding.evidence])


def check_crash(rel: str, case: dict[str, Any], corpus: Path = CORPUS) -> list[str]:
    """What is wrong with the diagnosis of one crash log (empty: it is right)."""
    problems = [f for f in diagnose_path(corpus / rel) if is_problem(f)]
    if not problems:
        return ["no problem found"]
    top = problems[0]
    if top.signature_id != case["expect"]:
        return [f"first finding is {top.signature_id}, expected {case['expect']}"]
    return [f"evidence lacks {fragment!r}" for fragment in case.get("evidence", ()) if fragment not in _said(top)]


def check_healthy(rel: str, case: dict[str, Any], corpus: Path = CORPUS) -> list[str]:
    findings = diagnose_path(corpus / rel)
    wrong = [f"false problem: {f.signature_id} ({f.severity})" for f in findings if is_problem(f)]
    notes = sorted({f.signature_id for f in findings if not is_problem(f)})
    if notes != sorted(case.get("notes", ())):
        wrong.append(f"notes {notes}, expected {sorted(case.get('notes', ()))}")
    return wrong


def check_bundle(rel: str, case: dict[str, Any], corpus: Path = CORPUS) -> list[str]:
    got = [(f.signature_id, f.subject) for f in diagnose_path(corpus / rel) if is_problem(f)]
    want = [tuple(item) for item in case["order"]]
    matches = len(got) == len(want) and all(g[0] == w[0] and w[1] in g[1] for g, w in zip(got, want))
    return [] if matches else [f"order {[(i, s.split('/')[-3] if '/' in s else s) for i, s in got]}, expected {want}"]


def check_heldout(rel: str, case: dict[str, Any], corpus: Path = CORPUS) -> list[str]:
    problems = [f for f in diagnose_path(corpus / rel) if is_problem(f)]
    if not problems:
        return ["no problem found (would exit 0)"]
    top = problems[0]
    wrong = [] if top.signature_id == case.get("expect", load_knowledge().fallback.id) else [
        f"first finding is {top.signature_id}, expected {case.get('expect', load_knowledge().fallback.id)}"]
    return wrong + [f"evidence lacks {fragment!r}" for fragment in case.get("evidence", ()) if fragment not in _said(top)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", action="store_true", help="print every miss")
    args = parser.parse_args()
    manifest = load_manifest()
    families = {s.id: s.family for s in load_knowledge().signatures}
    started = time.perf_counter()
    per_family: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    misses: list[str] = []
    for rel, case in manifest["crash"].items():
        wrong = check_crash(rel, case)
        tally = per_family[families.get(case["expect"], "?")]
        tally[0] += not wrong
        tally[1] += 1
        misses.extend(f"  {rel}: {w}" for w in wrong)
    healthy_false = 0
    for rel, case in manifest["healthy"].items():
        wrong = check_healthy(rel, case)
        healthy_false += any(w.startswith("false problem") for w in wrong)
        misses.extend(f"  {rel}: {w}" for w in wrong)
    bundle_misses = heldout_misses = 0
    for rel, case in (manifest.get("bundles") or {}).items():
        wrong = check_bundle(rel, case)
        bundle_misses += bool(wrong)
        misses.extend(f"  {rel}: {w}" for w in wrong)
    for rel, case in (manifest.get("heldout") or {}).items():
        wrong = check_heldout(rel, case)
        heldout_misses += bool(wrong)
        misses.extend(f"  {rel}: {w}" for w in wrong)
    elapsed = time.perf_counter() - started

    passed = sum(p for p, _ in per_family.values())
    total = sum(t for _, t in per_family.values())
    print(f"{'family':<12} {'right':>5} / {'logs':<4}  score")
    for family in sorted(per_family):
        p, t = per_family[family]
        print(f"{family:<12} {p:>5} / {t:<4}  {100 * p / t:5.1f}%")
    print(f"{'all':<12} {passed:>5} / {total:<4}  {100 * passed / total:5.1f}%   (goal >= {100 * GOAL:.0f}%)")
    print(f"healthy/recovered logs: {len(manifest['healthy'])}, false problems: {healthy_false}   (goal 0)")
    print(f"bundles ranked cause first: {len(manifest.get('bundles') or {}) - bundle_misses}"
          f" / {len(manifest.get('bundles') or {})}")
    print(f"held-out logs caught: {len(manifest.get('heldout') or {}) - heldout_misses}"
          f" / {len(manifest.get('heldout') or {})}")
    count = total + len(manifest["healthy"]) + len(manifest.get("bundles") or {}) + len(manifest.get("heldout") or {})
    print(f"time: {elapsed:.2f} s for {count} cases (knowledge base loaded once)")
    if misses and (args.verbose or passed < total):
        print("misses:")
        print("\n".join(misses))
    ok = total and passed / total >= GOAL and not healthy_false and not bundle_misses and not heldout_misses
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
