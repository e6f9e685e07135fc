"""One task on several hosts at once (`--host` given more than once, or e2e.host with several).

Every host gets its own independent environment (the same stack and cluster name, its own
folder, tunnels and local state; see remote_site.py). `on_hosts`:
1. checks every host first, all at the same time (remote_site.open_site): if any cannot
   serve the task, each problem is one line naming its host and nothing starts anywhere (exit 2);
2. runs the task body on each host in a thread of its own, concurrently (one host: directly,
   with the live view); each host's output is whole lines prefixed `[host]`;
3. prints one summary table per host (result, exit status, and for runs of the step graph the
   makespan, the steps, the run directory and the kubeconfig) and returns one exit status:
   0 when every host passed, 130 when interrupted, else the hosts' common failing status (1
   when they differ).
One owner of SIGINT/SIGTERM/SIGHUP for all hosts: Ctrl-C interrupts every host's run, whose
runners stop their commands' process groups there.
"""
from __future__ import annotations

import io
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Cancelled, E2EError, Interrupted, UsageError
from kubernaut_e2e.runner import Cancellation

if TYPE_CHECKING:
    from kubernaut_e2e.remote import SSHOptions
    from kubernaut_e2e.remote_site import Purpose, RemoteSite

#: A task on one host: (the host's site, where its output goes, its cancellation) -> exit status.
Body = Callable[["RemoteSite", TextIO, Cancellation], int]


class HostStream(io.TextIOBase):
    """A text stream that writes whole lines, each prefixed `[host] `, to a shared stream.

    Lines of several hosts interleave but never mix; a host's lines are `grep '^\\[host\\]'`.
    Not a terminal: the run's output is plain lines (no live table) on a shared screen.
    """

    def __init__(self, out: TextIO, label: str, lock: threading.Lock) -> None:
        self.out, self.prefix, self.lock = out, f"[{label}] ", lock
        self._partial = ""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:  # type: ignore[override]
        *lines, self._partial = (self._partial + text).split("\n")
        if lines:
            with self.lock:
                self.out.write("".join(f"{self.prefix}{line}\n" for line in lines))
                self.out.flush()
        return len(text)

    def flush(self) -> None:
        pass

    def close_lines(self) -> None:
        """Write what is left of an unfinished last line."""
        if self._partial:
            self.write("\n")


@dataclass(frozen=True)
class HostOutcome:
    """How a task ended on one host."""

    label: str
    code: int
    error: str = ""  # the one-line error that ended it, if any
    local: E2EConfig | None = None  # the run's local config there (its state, kubeconfig)


def overall_code(codes: Sequence[int]) -> int:
    """One exit status for several hosts. Pure."""
    if EXIT_INTERRUPTED in codes:
        return EXIT_INTERRUPTED
    failing = {code for code in codes if code != EXIT_OK}
    if not failing:
        return EXIT_OK
    return failing.pop() if len(failing) == 1 else EXIT_FAILED


def open_sites(cfg: E2EConfig, purpose: Purpose, *, options: SSHOptions | None = None,
               dry: bool = False) -> list[RemoteSite]:
    """Every host of `cfg.hosts` connected and checked, at the same time; UsageError with one
    line per problem of every host (the others closed again) when any cannot serve `purpose`."""
    from kubernaut_e2e.remote_site import open_site

    with ThreadPoolExecutor(max_workers=len(cfg.hosts), thread_name_prefix="host") as pool:
        futures = [pool.submit(open_site, cfg, spec, purpose, options=options, dry=dry) for spec in cfg.hosts]
    sites, problems, unexpected = [], [], []
    for future in futures:
        try:
            sites.append(future.result())
        except UsageError as exc:
            problems.append(str(exc))
        except BaseException as exc:  # noqa: BLE001 - closed below, then raised
            unexpected.append(exc)
    if problems or unexpected:
        for site in sites:
            site.close()
        if unexpected:
            raise unexpected[0]
        raise UsageError("\n".join(problems))
    return sites


def on_hosts(cfg: E2EConfig, purpose: Purpose, body: Body, out: TextIO | None = None, *,
             options: SSHOptions | None = None, dry: bool = False, summary: bool = True,
             task: str = "", until_interrupted: bool = False) -> int:
    """Run `body` on every host of `cfg.hosts` (see the module's docstring); the exit status.

    `until_interrupted`: the body runs until a signal stops it (e2e.tunnel): that is its end,
    not an interruption, so the exit status is the bodies' own.
    """
    from kubernaut_e2e.signals import owned_signals

    out = out or sys.stdout
    session = Cancellation()
    started = time.time()
    with owned_signals(session):
        sites = open_sites(cfg, purpose, options=options, dry=dry)
        try:
            if len(sites) == 1:  # its error is the task's own (one line, its exit status)
                try:
                    outcomes = [HostOutcome(sites[0].label, body(sites[0], out, session), "", sites[0].local)]
                except Cancelled:
                    if not session.interrupted:
                        raise
                    raise Interrupted(f"interrupted ({session.signal}): host {sites[0].label}: every command "
                                      "started there was stopped") from None
            else:
                lock = threading.Lock()
                streams = [HostStream(out, site.label, lock) for site in sites]
                outcomes = _concurrently(sites, body, streams, session)
        finally:
            for site in sites:
                site.close()
    if summary:
        print_summaries(outcomes, out, task=task, since=started, several=len(sites) > 1)
    codes = [o.code for o in outcomes]
    return EXIT_INTERRUPTED if session.interrupted and not until_interrupted else overall_code(codes)


def _run_one(site: RemoteSite, body: Body, out: TextIO, cancellation: Cancellation) -> HostOutcome:
    try:
        code = body(site, out, cancellation)
    except E2EError as exc:
        print(str(exc), file=out)  # prefixed with the host by its stream
        return HostOutcome(site.label, exc.exit_code, str(exc).splitlines()[0], site.local)
    return HostOutcome(site.label, code, "", site.local)


def _concurrently(sites: Sequence[RemoteSite], body: Body, streams: Sequence[HostStream],
                  session: Cancellation) -> list[HostOutcome]:
    outcomes: list[HostOutcome | None] = [None] * len(sites)

    def work(i: int) -> None:
        try:
            outcomes[i] = _run_one(sites[i], body, streams[i], session.child())
        except BaseException as exc:  # noqa: BLE001 - a bug on one host must not hide the others
            streams[i].write(f"{type(exc).__name__}: {exc}\n")
            outcomes[i] = HostOutcome(sites[i].label, EXIT_FAILED, f"{type(exc).__name__}: {exc}", sites[i].local)
        finally:
            streams[i].close_lines()

    threads = [threading.Thread(target=work, args=(i,), name=f"host-{site.label}", daemon=True)
               for i, site in enumerate(sites)]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # short joins: the main thread stays responsive to signals
            thread.join(0.2)
    return [o for o in outcomes if o is not None]


def _last_timings(local: E2EConfig | None, since: float) -> tuple[Path | None, dict[str, Any]]:
    """The run directory and timings.json of the host's run that this task made, if any."""
    if local is None or not local.runs_dir.is_dir():
        return None, {}
    runs = [p for p in local.runs_dir.iterdir() if p.is_dir() and p.stat().st_mtime >= since - 1]
    for run in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            return run, json.loads((run / "timings.json").read_text())
        except (OSError, ValueError):
            return run, {}
    return None, {}


def host_rows(outcome: HostOutcome, since: float) -> list[tuple[str, str]]:
    """The rows of one host's summary table."""
    result = {EXIT_OK: "passed", EXIT_INTERRUPTED: "interrupted"}.get(outcome.code, "FAILED")
    rows = [("result", f"{result} (exit {outcome.code})")]
    if outcome.error:
        rows.append(("error", outcome.error))
    run_dir, timings = _last_timings(outcome.local, since)
    if timings:
        steps = timings.get("steps") or []
        counts: dict[str, int] = {}
        for step in steps:
            counts[step.get("status", "?")] = counts.get(step.get("status", "?"), 0) + 1
        rows.append(("steps", ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))))
        if timings.get("makespan") is not None:
            rows.append(("makespan", f"{timings['makespan']:.1f}s"))
        checks = timings.get("checklist") or []
        if checks:
            rows.append(("checklist", f"{sum(bool(c.get('passed')) for c in checks)}/{len(checks)} passed"))
    if run_dir is not None:
        rows.append(("run directory", str(run_dir)))
    if outcome.local is not None and outcome.local.kubeconfig.is_file():
        rows.append(("kubeconfig", f"{outcome.local.kubeconfig} (through an SSH tunnel: "
                                   f"`invoke e2e.tunnel --host {outcome.label}` re-opens it)"))
    return rows


def print_summaries(outcomes: Sequence[HostOutcome], out: TextIO, *, task: str = "", since: float = 0.0,
                    several: bool = True) -> None:
    """One table per host (several hosts), or the host's kubeconfig line (one host)."""
    from kubernaut_e2e.console import plain_table

    if not several:
        for outcome in outcomes:
            if outcome.local is not None and outcome.local.kubeconfig.is_file() and task in ("up", "ci"):
                print(f"kubeconfig for host {outcome.label}: {outcome.local.kubeconfig} (reaches the API server "
                      f"through an SSH tunnel; `invoke e2e.tunnel --host {outcome.label}` re-opens it)", file=out)
        return
    for outcome in outcomes:
        title = f"{task + ' on ' if task else ''}host {outcome.label}"
        out.write("\n".join(["", title, *plain_table(("what", "result"), host_rows(outcome, since))]) + "\n")
    codes = [o.code for o in outcomes]
    passed = sum(code == EXIT_OK for code in codes)
    out.write(f"\n{passed}/{len(codes)} host(s) passed; exit {overall_code(codes)}\n")
    out.flush()
