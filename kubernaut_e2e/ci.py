"""`e2e.ci`: up -> test -> (on failure) diagnose -> clean, with one exit status and one summary."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from kubernaut_e2e import timeline
from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, E2EError
from kubernaut_e2e.lock import ClusterLock
from kubernaut_e2e.up import UpOptions, new_run_dir, preflight, run_up, stack_graph


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_ci(cfg: E2EConfig, *, keep: bool = False, out: TextIO | None = None,
           suite_reuses_env: bool = False) -> int:
    out = out or sys.stdout
    tools = preflight(cfg, stack_graph(cfg))  # bad input: exit 2 before the lock or a run dir
    with ClusterLock(cfg.locks_dir, cfg.cluster_name, "ci") as lock:
        if lock.warning:
            print(lock.warning, file=out)
        run_dir = new_run_dir(cfg)
        phases: dict[str, Any] = {}

        print("== up ==", file=out, flush=True)
        up_code = run_up(cfg, UpOptions(jobs=cfg.jobs, run_dir=run_dir), out, hold_lock=False)
        phases["up"] = up_code
        test_code: int | None = None
        if up_code == EXIT_OK:
            from kubernaut_e2e.suite import run_suite

            print("\n== test ==", file=out, flush=True)
            try:
                test_code = run_suite(cfg, run_dir, out, suite_reuses_env=suite_reuses_env).exit_code
            except E2EError as exc:
                print(f"e2e.test: {exc}", file=out)
                test_code = exc.exit_code
            phases["test"] = test_code
        interrupted = EXIT_INTERRUPTED in (up_code, test_code)
        failed = up_code != EXIT_OK or (test_code or 0) != 0

        if failed and not interrupted:
            from kubernaut_e2e.diagnose import run_diagnose

            print("\n== diagnose ==", file=out, flush=True)
            try:
                phases["diagnose"] = run_diagnose(cfg, namespaces=[cfg.namespace], as_json=False,
                                                  out=run_dir / "diagnose", logs=None, stream=out)
            except E2EError as exc:  # no cluster to diagnose (e.g. creation failed)
                print(f"e2e.diagnose: {exc}", file=out)
                phases["diagnose"] = exc.exit_code

        if not keep:
            from kubernaut_e2e.clean import clean

            print("\n== clean ==", file=out, flush=True)
            report = clean(cfg, tools, echo=lambda line: print(line, file=out))
            phases["clean"] = list(report.removed)
        else:
            print(f"\n--keep: cluster {cfg.cluster_name!r} kept; `invoke e2e.clean` removes it", file=out)

    summary = _summary(run_dir, phases, up_code, test_code)
    (run_dir / "ci.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print(summary, out)
    if interrupted:
        return EXIT_INTERRUPTED
    if up_code != EXIT_OK:
        return up_code
    return test_code if test_code else (EXIT_FAILED if failed else EXIT_OK)


def _summary(run_dir: Path, phases: dict[str, Any], up_code: int, test_code: int | None) -> dict[str, Any]:
    timings = _read_json(run_dir / "timings.json") or {}
    suite = _read_json(run_dir / "suite.json")
    findings = _read_json(run_dir / "diagnose" / "findings.json") or []
    return {
        "run_dir": str(run_dir),
        "phases": phases,
        "up": {"exit_code": up_code, "makespan": timings.get("makespan"),
               "sum_of_steps": timings.get("sum_of_steps"), "critical_path": timings.get("critical_path"),
               "history": (timings.get("history") or {}).get("text")},
        "timeline": str(run_dir / timeline.FILE_NAME) if (run_dir / timeline.FILE_NAME).is_file() else None,
        "checklist": timings.get("checklist", []),
        "tests": suite,
        "findings": [{"title": f["title"], "severity": f["severity"], "subject": f["subject"]} for f in findings],
        "passed": up_code == EXIT_OK and test_code == 0,
    }


def _print(summary: dict[str, Any], out: TextIO) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="e2e.ci summary", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("result", overflow="fold")
    up = summary["up"]
    makespan = f" in {up['makespan']:.1f}s" if up.get("makespan") is not None else ""
    table.add_row("up", ("passed" if up["exit_code"] == 0 else f"failed (exit {up['exit_code']})") + makespan)
    if up.get("history"):
        table.add_row("history", escape(up["history"]))
    checks = summary["checklist"]
    if checks:
        table.add_row("checklist", f"{sum(c['passed'] for c in checks)}/{len(checks)} passed")
    tests = summary["tests"]
    if tests:
        specs = tests.get("specs")
        spec_text = (f"; specs {specs['passed']} passed, {specs['failed']} failed, {specs['skipped']} skipped"
                     if specs else "")
        table.add_row("tests", f"{tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped"
                      f"{spec_text} (exit {tests['exit_code']})")
    else:
        table.add_row("tests", "not run")
    for f in summary["findings"][:5]:
        table.add_row(f"finding ({f['severity']})", escape(f"{f['title']} — {f['subject']}"))
    table.add_row("clean", escape(", ".join(summary["phases"].get("clean", [])) or "kept"))
    table.add_row("run directory", escape(summary["run_dir"]))
    if summary.get("timeline"):
        table.add_row("timeline", escape(summary["timeline"]))
    table.add_row("result", "[green]PASSED[/]" if summary["passed"] else "[bold red]FAILED[/]")
    Console(file=out, width=120).print(table)
