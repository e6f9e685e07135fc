"""`e2e.ci`: up -> test -> (on failure) diagnose -> clean, with one exit status and one summary."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from kubernaut_e2e import timeline
from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.console import is_terminal, plain_table
from kubernaut_e2e.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, E2EError
from kubernaut_e2e.lock import ClusterLock
from kubernaut_e2e.runner import Cancellation
from kubernaut_e2e.signals import owned_signals
from kubernaut_e2e.up import UpOptions, new_run_dir, preflight, run_up, stack_graph


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_ci(cfg: E2EConfig, *, keep: bool = False, out: TextIO | None = None,
           suite_reuses_env: bool = False) -> int:
    out = out or sys.stdout
    session = Cancellation()
    # One owner of SIGINT/SIGTERM/SIGHUP for all phases and the summary (see signals.py).
    with owned_signals(session):
        tools = preflight(cfg, stack_graph(cfg))  # bad input: exit 2 before the lock or a run dir
        code = _phases(cfg, tools, keep, out, session, suite_reuses_env)
    return EXIT_INTERRUPTED if session.interrupted else code


def _phases(cfg: E2EConfig, tools: Any, keep: bool, out: TextIO, session: Cancellation,
            suite_reuses_env: bool) -> int:
    with ClusterLock(cfg.locks_dir, cfg.cluster_name, "ci") as lock:
        lock.record_images([cfg.image_ref(name) for name in cfg.images])
        session.add_watcher(lock)
        if lock.warning:
            print(lock.warning, file=out)
        run_dir = new_run_dir(cfg)
        phases: dict[str, Any] = {}

        print("== up ==", file=out, flush=True)
        up_code = run_up(cfg, UpOptions(jobs=cfg.jobs, run_dir=run_dir), out, hold_lock=False,
                         cancellation=session)
        phases["up"] = up_code
        smoke_code: int | None = None
        if up_code == EXIT_OK and not session.interrupted:
            from kubernaut_e2e.smoke import run_smoke

            print("\n== smoke ==", file=out, flush=True)
            try:
                smoke_code = run_smoke(cfg, out=out, cancellation=session, run_dir=run_dir)
            except E2EError as exc:
                print(f"e2e.smoke: {exc}", file=out)
                smoke_code = exc.exit_code
            phases["smoke"] = smoke_code
        test_code: int | None = None
        if up_code == EXIT_OK and smoke_code == EXIT_OK and not session.interrupted:
            from kubernaut_e2e.suite import run_suite

            print("\n== test ==", file=out, flush=True)
            try:
                test_code = run_suite(cfg, run_dir, out, cancellation=session,
                                      suite_reuses_env=suite_reuses_env).exit_code
            except E2EError as exc:
                print(f"e2e.test: {exc}", file=out)
                test_code = exc.exit_code
            phases["test"] = test_code
        interrupted = session.interrupted or EXIT_INTERRUPTED in (up_code, smoke_code, test_code)
        failed = up_code != EXIT_OK or (smoke_code or 0) != 0 or (test_code or 0) != 0

        if failed and not interrupted:
            from kubernaut_e2e.diagnose import run_diagnose

            print("\n== diagnose ==", file=out, flush=True)
            try:
                phases["diagnose"] = run_diagnose(cfg, namespaces=[cfg.namespace], as_json=False,
                                                  out=run_dir / "diagnose", logs=None, stream=out,
                                                  cancellation=session)
            except E2EError as exc:  # no cluster to diagnose (e.g. creation failed)
                print(f"e2e.diagnose: {exc}", file=out)
                phases["diagnose"] = exc.exit_code
        interrupted = interrupted or session.interrupted

        if interrupted:
            print(f"\ninterrupted: cluster {cfg.cluster_name!r} kept; `invoke e2e.clean` removes it", file=out)
        elif not keep:
            from kubernaut_e2e.clean import clean

            print("\n== clean ==", file=out, flush=True)
            try:
                report = clean(cfg, tools, echo=lambda line: print(line, file=out), cancellation=session)
                phases["clean"] = list(report.removed) + [f"kept {k}" for k in report.kept]
            except E2EError as exc:
                print(f"e2e.clean: {exc}", file=out)
                phases["clean"] = [f"failed: {exc}"]
                failed = True
        else:
            print(f"\n--keep: cluster {cfg.cluster_name!r} kept; `invoke e2e.clean` removes it", file=out)

    summary = _summary(run_dir, phases, up_code, test_code)
    try:
        (run_dir / "ci.json").write_text(json.dumps(summary, indent=2) + "\n")
    except OSError as exc:
        print(f"warning: could not write {run_dir / 'ci.json'}: {exc.strerror or exc}", file=out)
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
        "smoke": _read_json(run_dir / "smoke.json"),
        "tests": suite,
        "findings": [{"title": f["title"], "severity": f["severity"], "subject": f["subject"]} for f in findings],
        "passed": up_code == EXIT_OK and phases.get("smoke") == EXIT_OK and test_code == 0,
    }


def _print(summary: dict[str, Any], out: TextIO) -> None:
    up = summary["up"]
    makespan = f" in {up['makespan']:.1f}s" if up.get("makespan") is not None else ""
    rows = [("up", ("passed" if up["exit_code"] == 0 else f"failed (exit {up['exit_code']})") + makespan)]
    if up.get("history"):
        rows.append(("history", up["history"]))
    checks = summary["checklist"]
    if checks:
        rows.append(("checklist", f"{sum(c['passed'] for c in checks)}/{len(checks)} passed"))
    smoke = summary.get("smoke")
    if smoke:
        failed_hop = next((h for h in smoke["hops"] if not h["ok"]), None)
        rows.append(("smoke", f"passed: {len(smoke['hops'])} hops in {sum(h['seconds'] for h in smoke['hops']):.2f}s"
                     if smoke["passed"] else f"FAILED at hop {failed_hop['name'] if failed_hop else '?'}"))
    tests = summary["tests"]
    if tests:
        specs = tests.get("specs")
        spec_text = (f"; specs {specs['passed']} passed, {specs['failed']} failed, {specs['skipped']} skipped"
                     if specs else "")
        rows.append(("tests", f"{tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped"
                     f"{spec_text} (exit {tests['exit_code']})"))
    else:
        rows.append(("tests", "not run"))
    for f in summary["findings"][:5]:
        rows.append((f"finding ({f['severity']})", f"{f['title']} — {f['subject']}"))
    rows.append(("clean", ", ".join(summary["phases"].get("clean", [])) or "kept"))
    rows.append(("run directory", summary["run_dir"]))
    if summary.get("timeline"):
        rows.append(("timeline", summary["timeline"]))
    rows.append(("result", "PASSED" if summary["passed"] else "FAILED"))
    if not is_terminal(out):
        out.write("\n".join(["e2e.ci summary", *plain_table(("what", "result"), rows)]) + "\n")
        out.flush()
        return

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="e2e.ci summary", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("result", overflow="fold")
    for what, result in rows:
        style = {"PASSED": "green", "FAILED": "bold red"}.get(result) if what == "result" else None
        table.add_row(escape(what), f"[{style}]{result}[/]" if style else escape(result))
    Console(file=out).print(table)
