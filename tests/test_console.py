"""The live view's progress and latest line, the plain output's heartbeat, the text timeline.

The heartbeat tests run real child processes through the real runner and step context, so
they cover the whole path: a tool prints a line -> the runner reads it -> the step context masks
it -> the reporter shows it.
"""
from __future__ import annotations

import io
import sys
import time
from pathlib import Path

from kubernaut_e2e import console
from kubernaut_e2e.config import load_config
from kubernaut_e2e.context import RunContext, StepContext
from kubernaut_e2e.graph import Graph, Step
from kubernaut_e2e.preflight import Tools
from kubernaut_e2e.redact import Redactor
from kubernaut_e2e.runner import Cancellation, LocalRunner
from kubernaut_e2e.scheduler import DONE, StepRecord, run_graph
from tests.conftest import make_source_tree

SECRET = "s3cr3t-Token-value"


def test_trim_line_keeps_what_a_terminal_would_show():
    assert console.trim_line("Copying blob 1\rCopying blob 2 done\n") == "Copying blob 2 done"
    assert console.trim_line("\x1b[31merror:\x1b[0m  bad\tthing") == "error: bad thing"
    long = console.trim_line("x" * 200, width=40)
    assert len(long) == 40 and long.endswith("…")


def test_activity_keeps_the_last_progress_and_the_latest_line():
    clock = [100.0]
    activity = console.Activity(clock=lambda: clock[0])
    activity.started("build")
    activity.output("build", "[1/2] STEP 2/4: RUN go build ./...\n")
    activity.output("build", "go: downloading golang.org/x/net v0.30.0\n")
    activity.output("build", "   \n")  # blank lines do not erase the latest line
    clock[0] = 112.0
    row = activity.get("build")
    assert row is not None
    assert row.progress == "stage 1/2, step 2/4"
    assert row.line == "go: downloading golang.org/x/net v0.30.0"
    assert row.describe() == ("build: running 12s [stage 1/2, step 2/4]: "
                              "go: downloading golang.org/x/net v0.30.0")
    activity.finished("build")
    assert activity.get("build") is None
    activity.started("build")  # a new start forgets the old progress
    assert activity.get("build") == console.Running("build", 0.0, "", "")


def _run_context(tmp_path: Path, reporter: console.PlainReporter) -> RunContext:
    cfg = load_config({"source_dir": str(make_source_tree(tmp_path)), "state_dir": str(tmp_path / "state")})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cancellation = Cancellation()
    redactor = Redactor([SECRET])
    return RunContext(cfg, Tools("podman", "kind"), LocalRunner(cancellation, redactor=redactor), run_dir,
                      cancellation, redactor=redactor, on_output=reporter.step_output)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_plain_output_beats_for_long_steps_with_masked_latest_line(tmp_path: Path):
    out = io.StringIO()
    reporter = console.PlainReporter(out, heartbeat=0.3)
    run = _run_context(tmp_path, reporter)
    slow = ("import sys, time; print('[2/2] STEP 3/7: RUN make token=%s' % sys.argv[1], flush=True); "
            "time.sleep(1.5)")

    def execute(step: Step) -> None:
        ctx = StepContext(run, step.name)
        if step.name == "build":
            ctx.sh([*_python(slow), SECRET])
        else:
            ctx.sh(_python("print('quick')"))

    graph = Graph.of([Step("build", body=lambda c: None), Step("quick", body=lambda c: None)])
    records = run_graph(graph, execute, jobs=2, reporter=reporter)
    reporter.close()
    assert all(r.status == DONE for r in records.values())
    text = out.getvalue()
    beats = [line for line in text.splitlines() if ": running " in line]
    assert beats, text
    assert all("build: running" in line for line in beats)  # the quick step never beat
    assert "[stage 2/2, step 3/7]" in beats[-1] and "RUN make token=***" in beats[-1]
    assert SECRET not in text
    # The log has the same masked line: the view shows nothing the log would not.
    assert "token=***" in (run.run_dir / "build.log").read_text()


def test_heartbeat_stops_when_the_reporter_closes():
    out = io.StringIO()
    reporter = console.PlainReporter(out, heartbeat=0.1)
    reporter.step_started(StepRecord("forever", ()))
    time.sleep(0.35)
    reporter.close()
    count = out.getvalue().count("forever: running")
    assert count >= 1
    time.sleep(0.3)
    assert out.getvalue().count("forever: running") == count


def test_output_kept_out_of_the_log_is_kept_out_of_the_view(tmp_path: Path):
    reporter = console.PlainReporter(io.StringIO(), heartbeat=0)
    run = _run_context(tmp_path, reporter)
    ctx = StepContext(run, "cluster")
    reporter.step_started(StepRecord("cluster", ()))
    # A kubeconfig is read with log_stdout=False: its key must not become the "latest line".
    ctx.sh(_python("print('client-key-data: QUJDREVGR0hJSktMTU5PUA==')"), capture=True, log_stdout=False)
    row = reporter.activity.get("cluster")
    assert row is not None and "client-key-data" not in row.line
    ctx.log("kubeconfig written")
    assert reporter.activity.get("cluster").line == "kubeconfig written"  # type: ignore[union-attr]
    reporter.close()


def test_live_view_row_shows_progress_and_latest_line():
    from rich.console import Console

    stream = io.StringIO()
    live = console.LiveReporter(["save-gateway", "load-gateway"], stream)
    try:
        live.step_started(StepRecord("save-gateway", (), status="running"))
        live.step_output("save-gateway", "Copying blob sha256:9a91362f35b5b7ab1e35c18f0c9cf6b0f8\n")
        rendered = io.StringIO()
        Console(file=rendered, width=200).print(live._render())
    finally:
        live.close()
    row = next(line for line in rendered.getvalue().splitlines() if "save-gateway" in line)
    assert "[copying blob 9a91362f35b5] Copying blob sha256:9a91362f35b5" in row


def _document() -> dict:
    return {
        "started_at": "2025-06-01T10:00:00+0000", "makespan": 10.0, "sum_of_steps": 12.0,
        "critical_path": ["preflight", "cluster"],
        "history": {"kind": "warm", "text": "warm run in 10.0s; usual 8.0s (median of 3 recent warm runs)"},
        "steps": [
            {"name": "preflight", "status": "done", "start": 0.0, "end": 1.0, "note": "", "error": None},
            {"name": "cluster", "status": "done", "start": 1.0, "end": 10.0, "note": "reused existing cluster",
             "error": None},
        ],
    }


def test_print_timeline_prints_bars_history_and_the_picture(tmp_path: Path):
    out = io.StringIO()  # no encoding: ASCII bars
    console.print_timeline(_document(), tmp_path / "timeline.svg", out)
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0].startswith("Timeline")
    cluster = next(line for line in lines if "cluster" in line and "|" in line)
    assert cluster.startswith("* ") and "=" in cluster and cluster.rstrip().endswith("reused")
    assert "history: warm run in 10.0s; usual 8.0s" in text
    assert f"timeline: {tmp_path / 'timeline.svg'}" in text
    assert all(ord(c) < 128 for c in text)
