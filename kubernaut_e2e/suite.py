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
    """What the suite is told about the environment (the stack's `suite.env`), never the user's
    ~/.kube/config; it always includes the variables that stop a suite deleting its cluster."""
    import string

    from kubernaut_e2e.manifests import placeholder_secrets, template_values

    values = template_values(cfg, placeholder_secrets(cfg))
    return {key: string.Template(value).substitute(values) for key, value in cfg.stack.suite.env.items()}


def self_provisioning(cfg: E2EConfig) -> list[str]:
    """Where the suite about to run stands up its own environment (`file:line: marker`)."""
    markers = cfg.stack.suite.self_provisioning
    found: list[str] = []
    for arg in cfg.test_argv[1:]:
        if not arg.startswith("./"):
            continue
        folder = cfg.source_dir / arg.removesuffix("...").rstrip("/")
        files = sorted(folder.rglob("*.go")) if folder.is_dir() else []
        for path in files:
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if line.lstrip().startswith("//"):
                    continue
                hit = next((m for m in markers if m in line), None)
                if hit:
                    found.append(f"{path.relative_to(cfg.source_dir)}:{number}: {hit}")
    return found


def check_inputs(cfg: E2EConfig, *, suite_reuses_env: bool = False) -> None:
    if not cfg.kubeconfig.is_file():
        raise UsageError(f"no cluster: {cfg.kubeconfig} does not exist (run `invoke e2e.up` first)")
    if not cfg.source_dir.is_dir():
        raise UsageError(f"config e2e.source_dir: {cfg.source_dir} does not exist")
    program = cfg.test_argv[0]
    if shutil.which(program, path=None) is None and not (cfg.source_dir / program).is_file():
        raise UsageError(f"config e2e.test_command: {program!r} is not on PATH")
    found = self_provisioning(cfg) if not suite_reuses_env else []
    if found:
        raise UsageError(
            f"the suite ({' '.join(cfg.test_argv)}) stands up its own environment ({found[0]}): run against "
            f"this one it would fail creating cluster {cfg.cluster_name!r} or delete it. Either run it on its "
            "own (`invoke e2e.clean`, then upstream's `make test-e2e-gateway`), or change it to reuse an existing "
            "environment (README: \"Upstream's suite and this environment\") and pass --suite-reuses-env")


def write_suite_files(cfg: E2EConfig, out: TextIO) -> list[Path]:
    """The files a reusing suite reads (stack `suite.files`): the only writes outside the state dir."""
    from kubernaut_e2e.context import write_private

    sources = {"kubeconfig": cfg.kubeconfig, "ca": cfg.ca_file}
    written = []
    for target, what in cfg.stack.suite.files.items():
        source = sources[what]
        if not source.is_file():
            raise UsageError(f"--suite-reuses-env: {source} does not exist (run `invoke e2e.up` first)")
        path = Path(target).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(path, source.read_text())
        print(f"wrote {path} (the {what} a reusing suite reads; from {source})", file=out, flush=True)
        written.append(path)
    return written


def run_suite(cfg: E2EConfig, run_dir: Path, out: TextIO | None = None, *,
              cancellation: Cancellation | None = None, suite_reuses_env: bool = False) -> SuiteOutcome:
    """Run the suite; `cancellation` is the caller's (e2e.ci owns the signals then)."""
    out = out or sys.stdout
    check_inputs(cfg, suite_reuses_env=suite_reuses_env)
    if suite_reuses_env:
        write_suite_files(cfg, out)
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
