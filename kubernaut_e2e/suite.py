"""`e2e.test`: run the Gateway E2E suite against the environment and report what it says.

The suite's `go test -json` stream is parsed as it arrives (kubernaut_e2e.gotest): progress is printed
per test, counts come from the events (never guessed from the exit code), and a JUnit XML report
lands in the run directory. The exit status is the suite's own.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.errors import EXIT_INTERRUPTED, Cancelled, UsageError
from kubernaut_e2e.gotest import EventParser, SuiteResult, junit_xml, progress_line, summary_line
from kubernaut_e2e.runner import Cancellation, CommandFailed, LocalRunner
from kubernaut_e2e.signals import owned_signals


@dataclass(frozen=True)
class SuiteOutcome:
    exit_code: int
    result: SuiteResult
    junit: Path
    log: Path


def suite_env(cfg: E2EConfig) -> dict[str, str]:
    """What the suite is told about the environment: never the user's ~/.kube/config."""
    return {
        "KUBECONFIG": str(cfg.kubeconfig),
        "GATEWAY_URL": f"http://localhost:{cfg.gateway_host_port}",
        "DATASTORAGE_URL": f"http://localhost:{cfg.datastorage_host_port}",
        "E2E_NAMESPACE": cfg.namespace,
        "KIND_CLUSTER_NAME": cfg.cluster_name,
    }


def check_inputs(cfg: E2EConfig) -> None:
    if not cfg.kubeconfig.is_file():
        raise UsageError(f"no cluster: {cfg.kubeconfig} does not exist (run `invoke e2e.up` first)")
    if not cfg.source_dir.is_dir():
        raise UsageError(f"config e2e.source_dir: {cfg.source_dir} does not exist")
    program = cfg.test_argv[0]
    if shutil.which(program, path=None) is None and not (cfg.source_dir / program).is_file():
        raise UsageError(f"config e2e.test_command: {program!r} is not on PATH")


def run_suite(cfg: E2EConfig, run_dir: Path, out: TextIO | None = None, *,
              cancellation: Cancellation | None = None) -> SuiteOutcome:
    """Run the suite; `cancellation` is the caller's (e2e.ci owns the signals then)."""
    out = out or sys.stdout
    check_inputs(cfg)
    parser = EventParser()
    log = run_dir / "suite.log"

    def on_line(line: str) -> None:
        event = parser.feed(line)
        if event is not None:
            print(progress_line(event), file=out, flush=True)

    owns_signals = cancellation is None
    session = cancellation or Cancellation()
    cancellation = session.child()
    runner = LocalRunner(cancellation)
    argv = cfg.test_argv
    print(f"running {' '.join(argv)} in {cfg.source_dir}", file=out, flush=True)
    interrupted = False
    with owned_signals(session) if owns_signals else nullcontext():
        try:
            result = runner.run(argv, log=log, env=suite_env(cfg), cwd=cfg.source_dir, check=False,
                                on_line=on_line, timeout=None)
            code = result.returncode
        except (KeyboardInterrupt, Cancelled):
            cancellation.cancel("interrupted")
            interrupted, code = True, EXIT_INTERRUPTED
        except CommandFailed as exc:
            code = exc.result.returncode
            print(str(exc), file=out)
    parsed = parser.result()
    junit = run_dir / "junit.xml"
    junit.write_text(junit_xml(parsed))
    (run_dir / "suite.json").write_text(json.dumps({
        "command": argv, "exit_code": code, "passed": parsed.passed, "failed": parsed.failed,
        "skipped": parsed.skipped, "specs": parsed.specs._asdict() if parsed.specs else None,
        "interrupted": list(parsed.interrupted), "build_failures": list(parsed.build_failures),
    }, indent=2) + "\n")
    print(summary_line(parsed), file=out)
    print(f"JUnit report: {junit}\nsuite log: {log}", file=out)
    if interrupted:
        return SuiteOutcome(EXIT_INTERRUPTED, parsed, junit, log)
    if code < 0:  # killed by a signal: report it as a failure, not a negative status
        code = 128 - code
    if code == 0 and not parsed.ok:
        print("the suite exited 0 but its events show no passing test run: treated as failed", file=out)
        code = 1
    return SuiteOutcome(code, parsed, junit, log)
