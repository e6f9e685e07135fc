"""`e2e.up` and `e2e.plan`: select the steps, schedule them, report and record the timings."""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from kubernaut_e2e import history, timeline
from kubernaut_e2e import preflight as preflight_checks
from kubernaut_e2e.checklist import checklist
from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.context import LocalSite, RunContext, Site, StepContext, private_dir
from kubernaut_e2e.errors import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Cancelled, E2EError, StepFailed,
                                  UsageError)
from kubernaut_e2e.graph import Graph, Step
from kubernaut_e2e.lock import ClusterLock
from kubernaut_e2e.redact import Redactor
from kubernaut_e2e.runner import Cancellation
from kubernaut_e2e.scheduler import DONE, GraphInterrupted, Noted, run_graph
from kubernaut_e2e.signals import owned_signals
from kubernaut_e2e.steps import PlanInputs, build_registry
from kubernaut_e2e.timings import timings_document, write_timings


@dataclass(frozen=True)
class UpOptions:
    only: tuple[str, ...] = ()
    jobs: int = 4
    keep_going: bool = False
    recreate: bool = False
    dry: bool = False
    clean_on_failure: bool = False
    run_dir: Path | None = None  # default: a new <state_dir>/runs/<timestamp>-<pid>


def stack_graph(cfg: E2EConfig, only: Sequence[str] = (), site: Site | None = None) -> Graph:
    """The steps of the config's stack (and those the site adds: a host's sync-source),
    restricted to `only` (steps or groups) and their needs."""
    graph = build_registry(cfg.stack).graph()
    return (site.graph(graph) if site is not None else graph).select(only)


def preflight(cfg: E2EConfig, graph: Graph, *, dry: bool = False, site: Site | None = None
              ) -> preflight_checks.Tools:
    """Everything checkable before a side effect: the tools, and the stack's contract with the
    source tree, kind and the host. Raises UsageError (exit 2) listing every problem, one per line.

    A dry run runs no tool, so it does not need kind or a provider installed. The tools, kind
    and the host ports are the site's (a remote host's with --host); the source tree is local.
    """
    site = site or LocalSite(cfg)
    tools = preflight_checks.find_tools(cfg, site.which, need=not dry)
    building = [name for name in cfg.images if f"build-{name}" in graph.steps]
    problems = [*preflight_checks.check_source(cfg, building), *preflight_checks.check_go_mod(cfg, building)]
    problems += preflight_checks.check_deploy_inputs(cfg, set(graph.steps))
    if "cluster" in graph.steps and not dry and not problems:
        problems += _check_kind(cfg, tools, site)
    if problems:
        raise UsageError("preflight: " + "\npreflight: ".join(problems))
    return tools


def _check_kind(cfg: E2EConfig, tools: preflight_checks.Tools, site: Site) -> list[str]:
    """kind new enough for the node image; the host ports free when the cluster will be created."""
    from kubernaut_e2e import kind
    from kubernaut_e2e.runner import CommandFailed

    runner = site.runner(Cancellation())
    try:
        version = runner.run(kind.version(), capture=True, timeout=30).stdout
        listed = runner.run(kind.get_clusters(), env=kind.provider_env(tools.provider), capture=True,
                            timeout=60).stdout
    except CommandFailed as exc:
        return [f"kind does not answer: {exc}"]
    problems = preflight_checks.check_kind_version(cfg, version)
    # An existing cluster holds its own ports (and --recreate releases them before creating).
    if cfg.cluster_name not in kind.parse_clusters(listed):
        there = site.cfg  # the ports kind publishes on the site
        busy = site.busy_ports(there.host_ports.values())
        problems += preflight_checks.busy_host_ports(there, bind=lambda port: port not in busy)
    return problems


def new_run_dir(cfg: E2EConfig) -> Path:
    # Timestamp plus PID: two runs started in the same second still get their own folder.
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        run_dir = private_dir(cfg.runs_dir) / f"{stamp}-{os.getpid()}"
        private_dir(run_dir)
    except OSError as exc:  # read-only or full file system, a file in the way
        raise UsageError(f"config e2e.state_dir: cannot create a run directory in {cfg.runs_dir}: "
                         f"{exc.strerror or exc}") from None
    return run_dir


def run_up(cfg: E2EConfig, opts: UpOptions, out: TextIO | None = None, *, hold_lock: bool = True,
           cancellation: Cancellation | None = None, site: Site | None = None) -> int:
    """Run the selected steps; print the live view and the summary; return the exit code.

    `hold_lock=False` is for a caller that already holds the cluster's lock (`e2e.ci`), which
    then also owns the signals and passes its `cancellation` (as does a run on several hosts).
    Otherwise this owns SIGINT, SIGTERM and SIGHUP from before the lock until after the summary
    (see signals.py). `site`: where the commands run (default: this machine).
    """
    out = out or sys.stdout
    site = site or LocalSite(cfg)
    if cancellation is not None:
        graph = stack_graph(cfg, opts.only, site)
        return _locked_run(cfg, opts, graph, preflight(cfg, graph, dry=opts.dry, site=site), out, hold_lock,
                           cancellation, site)
    session = Cancellation()
    with owned_signals(session):
        graph = stack_graph(cfg, opts.only, site)
        return _locked_run(cfg, opts, graph, preflight(cfg, graph, dry=opts.dry, site=site), out, hold_lock,
                           session, site)


def _locked_run(cfg: E2EConfig, opts: UpOptions, graph: Graph, tools: preflight_checks.Tools, out: TextIO,
                hold_lock: bool, session: Cancellation, site: Site) -> int:
    if opts.dry:
        return _run(cfg, opts, graph, tools, out, session, site)
    lock = ClusterLock(cfg.locks_dir, cfg.cluster_name, "up")
    with (lock if hold_lock else _NoLock()):
        if hold_lock:
            lock.record_images([cfg.image_ref(name) for name in cfg.images])
            session.add_watcher(lock)
        if lock.warning:
            print(lock.warning, file=out)
        code = _run(cfg, opts, graph, tools, out, session, site)
        if code == EXIT_FAILED and opts.clean_on_failure and not session.interrupted:
            from kubernaut_e2e.clean import clean

            print(f"--clean-on-failure: removing cluster {cfg.cluster_name!r}", file=out)
            try:
                clean(cfg, tools, keep_images=True, echo=lambda line: print(line, file=out),
                      cancellation=session, site=site)
            except E2EError as exc:
                print(f"--clean-on-failure: {exc}", file=out)
        return EXIT_INTERRUPTED if session.interrupted else code


class _NoLock:
    warning = None

    def __enter__(self) -> _NoLock:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _run(cfg: E2EConfig, opts: UpOptions, graph: Graph, tools: preflight_checks.Tools, out: TextIO,
         session: Cancellation, site: Site) -> int:
    from kubernaut_e2e import console

    cancellation = session.child()  # a failing step cancels the graph, not the whole task
    redactor = Redactor()
    lines = console.LineWriter(out)
    echo = (lambda line: lines.write(redactor.redact(line)))
    runner = site.runner(cancellation, dry=opts.dry, echo=echo, redactor=redactor)
    run_dir = cfg.runs_dir / "dry-run" if opts.dry else (opts.run_dir or new_run_dir(cfg))
    # Past runs' step durations rank the ready steps (longest remaining path first).
    weights = history.estimates(history.load(history.path_in(cfg.state_dir)), graph.order)
    reporter = console.PlainReporter(lines) if opts.dry else console.make_reporter(graph.order, lines)
    run = RunContext(cfg, tools, runner, run_dir, cancellation, dry=opts.dry,
                     recreate=opts.recreate, echo=echo, redactor=redactor,
                     selected=frozenset(graph.steps), on_output=reporter.step_output, site=site)

    def execute(step: Step) -> object:
        try:
            result = step.body(StepContext(run, step.name))
        except (Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:
            # Every message that reaches the console or timings.json is masked here, once.
            text = str(exc) if isinstance(exc, E2EError) else f"{type(exc).__name__}: {exc}"
            raise StepFailed(redactor.redact(text)) from None
        run.results[step.name] = result.value if isinstance(result, Noted) else result
        return result

    if not opts.dry:
        start_client_import(graph)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    interrupted = False
    try:
        records = run_graph(graph, execute, jobs=opts.jobs, keep_going=opts.keep_going,
                            cancellation=cancellation, reporter=reporter, weights=weights)
    except GraphInterrupted as stop:
        interrupted, records = True, stop.records
    finally:
        reporter.close()
        cleanup_errors = run.run_cleanups()
    interrupted = interrupted or session.interrupted
    for err in cleanup_errors:
        lines.write(f"warning: cleanup failed: {redactor.redact(err)}")
    if not opts.dry:
        _explain_failed_commands(records, run_dir)
    if opts.dry:
        lines.write("dry run: no command was run")
        return EXIT_OK
    extra: dict[str, Any] = {"jobs": opts.jobs, "only": list(opts.only), "cluster": cfg.cluster_name,
                             "interrupted": interrupted}
    if session.signal:
        extra["signal"] = session.signal
    checks = (checklist(records, cfg.time_budget, jobs=opts.jobs)
              if "health" in graph.steps and not interrupted else [])
    if checks:
        extra["checklist"] = [c.to_dict() for c in checks]
    document = timings_document(records, started_at, run_dir, extra)
    document["history"] = history.update(cfg.state_dir, document)
    timings = run_dir / "timings.json"
    try:
        write_timings(timings, document)
        (run_dir / timeline.FILE_NAME).write_text(timeline.svg(document))
    except OSError as exc:  # disk full: the summary below still tells everything
        lines.write(f"warning: could not write {timings}: {exc.strerror or exc}")
    console.print_summary(records, run_dir, out)
    console.print_timeline(document, run_dir / timeline.FILE_NAME, out)
    if checks:
        console.print_checklist(checks, out)
    on = f" --host {site.label}" if site.label else ""  # the commands that reach the same cluster
    if interrupted:
        lines.write(f"interrupted ({session.signal or 'SIGINT'}): running steps were stopped; "
                    f"`invoke e2e.up{on}` again resumes")
        return EXIT_INTERRUPTED
    ok = all(r.status == DONE for r in records.values()) and all(c.passed for c in checks)
    cluster = records.get("cluster")
    if not ok and cluster is not None and cluster.status != DONE:
        # kind removes a cluster it could not finish: there is nothing to keep or diagnose.
        lines.write(f"no cluster {cfg.cluster_name!r} was made: fix the cause above and run "
                    f"`invoke e2e.up{on}` again")
    elif not ok and not opts.clean_on_failure:
        lines.write(f"the cluster {cfg.cluster_name!r} was kept for diagnosis: "
                    f"`invoke e2e.diagnose{on}`; remove it with `invoke e2e.clean{on}`")
    return EXIT_OK if ok else EXIT_FAILED


#: The groups of the steps that talk to the Kubernetes API (and the cluster step does, when it
#: checks a cluster it reuses).
_KUBERNETES_GROUPS = frozenset({"deploy", "check"})


def start_client_import(graph: Graph) -> threading.Thread | None:
    """Import the Kubernetes client (and the deploy code) in a daemon thread, now.

    Why: the first step that talks to the API server would otherwise import it (0.3-1.1 s on a
    loaded machine) just after the cluster is ready, on the critical path of a cold run (and in
    the cluster step's reuse check of a warm one); started here, the import overlaps cluster
    creation. Only when the graph has such a step (never for `plan` or a dry run). An import
    error is left to the step that needs the module: it imports it again and reports it.
    """
    if "cluster" not in graph.steps and not any(_KUBERNETES_GROUPS & set(s.groups) for s in graph.steps.values()):
        return None

    def load() -> None:
        try:
            import kubernetes.config  # noqa: F401  (the heavy part: kubernetes.client)

            import kubernaut_e2e.deploy  # noqa: F401
        except Exception:  # reported by the step that needs it
            pass

    thread = threading.Thread(target=load, name="import-kubernetes", daemon=True)
    thread.start()
    return thread


def _explain_failed_commands(records: dict[str, Any], run_dir: Path) -> None:
    """Match a failed step's log against the knowledge base (e.g. a corrupt podman store)."""
    from kubernaut_e2e.diagnosis import is_problem, load_knowledge, match_text

    generic = load_knowledge().fallback.id  # the step already failed; only a known cause adds anything
    for rec in records.values():
        log = run_dir / f"{rec.name}.log"
        if rec.status != "failed" or not log.is_file():
            continue
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-200:])
        for finding in match_text(tail, log.name):
            if is_problem(finding) and finding.signature_id != generic and finding.title not in (rec.error or ""):
                rec.error = (f"{rec.error}\n  diagnosis: {finding.title}\n    "
                             + "\n    ".join(finding.evidence[:3]) + f"\n    fix: {finding.fix}")


def plan_document(cfg: E2EConfig, graph: Graph, provider: str, arch: str) -> dict[str, Any]:
    inputs = PlanInputs(cfg, provider, arch)
    return {
        "cluster": cfg.cluster_name,
        "provider": provider,
        "target_arch": arch,
        "steps": [
            {
                "name": name,
                "needs": list(graph.steps[name].needs),
                "groups": list(graph.steps[name].groups),
                "help": graph.steps[name].help,
                "commands": graph.steps[name].plan(inputs) if graph.steps[name].plan else [],
            }
            for name in graph.order
        ],
    }
