"""kubernaut_e2e.gotest: test2json parsing, Ginkgo summaries, progress events and JUnit XML.

The scenario streams come from running tests/bin/fake-go-suite, the stand-in for `go test -json`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kubernaut_e2e.gotest import (
    BUILD_FAILED_CASE,
    PACKAGE_FAILED_CASE,
    EventParser,
    ProgressEvent,
    SpecCounts,
    SuiteResult,
    TestCase,
    junit_xml,
    parse_stream,
    progress_line,
    summary_line,
    xml_safe,
)

FAKE_SUITE = Path(__file__).resolve().parent / "bin" / "fake-go-suite"
PKG = "github.com/jordigilh/kubernaut/test/e2e/gateway"
HELPERS = PKG + "/helpers"


def run_fake(scenario: str, **env: str) -> tuple[int, list[str]]:
    proc = subprocess.run([sys.executable, str(FAKE_SUITE), "-json"], capture_output=True,
                          text=True, encoding="utf-8", timeout=10,
                          env={**os.environ, "FAKE_SUITE_SCENARIO": scenario, **env})
    return proc.returncode, proc.stdout.splitlines(keepends=True)


@pytest.fixture(scope="module")
def streams() -> dict[str, tuple[int, list[str]]]:
    return {s: run_fake(s) for s in ("pass", "mixed", "build-fail")}


def ev(action: str, test: str | None = None, output: str | None = None,
       elapsed: float | None = None, package: str = "example.com/p", time: str | None = None,
       **extra: object) -> str:
    event: dict[str, object] = {"Action": action, "Package": package}
    if time:
        event["Time"] = time
    if test is not None:
        event["Test"] = test
    if output is not None:
        event["Output"] = output
    if elapsed is not None:
        event["Elapsed"] = elapsed
    event.update(extra)
    return json.dumps(event) + "\n"


# --- scenarios from the stand-in ---------------------------------------------------------------

def test_pass_scenario(streams: dict[str, tuple[int, list[str]]]) -> None:
    code, lines = streams["pass"]
    result = parse_stream(lines)
    assert code == 0
    assert (result.passed, result.failed, result.skipped) == (4, 0, 0)
    assert result.specs == SpecCounts(5, 0, 0, 0)
    assert result.ok
    assert result.build_failures == () and result.interrupted == ()
    assert [(p.name, p.status) for p in result.packages] == [(PKG, "pass"), (HELPERS, "skip")]
    assert result.packages[0].elapsed == pytest.approx(41.934)
    e2e = result.cases[0]
    assert (e2e.name, e2e.status, e2e.elapsed) == ("TestGatewayE2E", "pass", 41.88)
    assert e2e.output.startswith("=== RUN   TestGatewayE2E\n")
    assert "--- PASS: TestGatewayE2E (41.88s)" in e2e.output


def test_mixed_scenario(streams: dict[str, tuple[int, list[str]]]) -> None:
    code, lines = streams["mixed"]
    result = parse_stream(lines)
    assert code == 1
    assert (result.passed, result.failed, result.skipped) == (3, 1, 1)
    assert result.specs == (3, 1, 0, 1)
    assert not result.ok
    assert result.failed_packages == (PKG,)
    statuses = {c.name: c.status for c in result.cases}
    assert statuses == {"TestGatewayE2E": "fail", "TestHealthEndpoint": "pass",
                        "TestReadinessEndpoint": "pass", "TestMetricsEndpoint": "pass",
                        "TestDataStorageAudit": "skip"}


def test_build_fail_scenario(streams: dict[str, tuple[int, list[str]]]) -> None:
    code, lines = streams["build-fail"]
    result = parse_stream(lines)
    assert code == 1
    # The " [pkg.test]" suffix go puts on the ImportPath is dropped; reported once, not twice.
    assert result.build_failures == (PKG,)
    assert "undefined: NewGatewayClient" in dict(result.build_output)[PKG]
    assert result.cases == () and result.specs is None
    assert not result.ok
    assert summary_line(result) == f"tests: 0 passed, 0 failed, 0 skipped; build failed: {PKG}"


def test_old_go_build_failure_is_seen_from_package_output() -> None:
    # go < 1.24: compiler errors went to stderr; only this line and a fail event remain.
    result = parse_stream([ev("start"), ev("output", output="FAIL\texample.com/p [build failed]\n"),
                           ev("fail", elapsed=0)])
    assert result.build_failures == ("example.com/p",)


def test_slow_scenario_killed_leaves_an_interrupted_test() -> None:
    proc = subprocess.Popen([sys.executable, str(FAKE_SUITE)], stdout=subprocess.PIPE, text=True,
                            encoding="utf-8", env={**os.environ, "FAKE_SUITE_SCENARIO": "slow"})
    assert proc.stdout is not None
    lines = []
    # If the expected line never comes, end the read instead of waiting out the 60 s sleep.
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:
            lines.append(line)
            if "•" in line:  # the last thing printed before the 60 s sleep
                break
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait(timeout=5)
        proc.stdout.close()
    result = parse_stream(lines)
    assert result.interrupted == ("TestGatewayE2E",)
    assert result.cases[0].status == "unknown"
    assert result.failed == 1 and not result.ok
    assert result.packages[0].status == "unknown"
    # Elapsed of an unfinished test: from its `run` to the last event seen (t=0.01 -> t=5.0).
    assert result.cases[0].elapsed == pytest.approx(4.99)
    assert "interrupted: TestGatewayE2E" in summary_line(result)


def test_stand_in_writes_the_environment_it_was_given(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    code, _ = run_fake("pass", FAKE_SUITE_ENV_OUT=str(out), KUBECONFIG="/k/config",
                       GATEWAY_URL="http://localhost:30080")
    seen = json.loads(out.read_text())
    assert code == 0
    assert seen["KUBECONFIG"] == "/k/config"
    assert seen["GATEWAY_URL"] == "http://localhost:30080"
    assert "DATASTORAGE_URL" in seen
    assert seen["argv"] == ["-json"]


def test_stand_in_rejects_an_unknown_scenario() -> None:
    code, lines = run_fake("nope")
    assert code == 2 and lines == []


# --- parser details ----------------------------------------------------------------------------

def test_subtests_are_their_own_cases(streams: dict[str, tuple[int, list[str]]]) -> None:
    result = parse_stream(streams["pass"][1])
    names = [c.name for c in result.cases]
    assert names == ["TestGatewayE2E", "TestSignalRouting", "TestSignalRouting/prometheus_alert",
                     "TestSignalRouting/kubernetes_event"]
    assert [c.is_subtest for c in result.cases] == [False, False, True, True]
    sub = result.cases[2]
    assert sub.output == ("=== RUN   TestSignalRouting/prometheus_alert\n"
                          "--- PASS: TestSignalRouting/prometheus_alert (0.01s)\n")


def test_failing_subtest_counts_with_its_parent() -> None:
    lines = [ev("run", "TestX"), ev("run", "TestX/a"), ev("pass", "TestX/a", elapsed=0.1),
             ev("run", "TestX/b"), ev("fail", "TestX/b", elapsed=0.1),
             ev("fail", "TestX", elapsed=0.2), ev("fail", elapsed=0.3)]
    result = parse_stream(lines)
    assert (result.passed, result.failed) == (1, 2)


def test_non_json_lines_are_tolerated_and_kept(streams: dict[str, tuple[int, list[str]]]) -> None:
    lines = ["# example.com/p\n", "not {json\n", "{broken json\n", '{"no": "action"}\n', "42\n",
             "\n", ev("run", "TestA"), ev("pass", "TestA", elapsed=0.5), ev("pass", elapsed=0.6)]
    result = parse_stream(lines)
    assert result.non_json == ("# example.com/p", "not {json", "{broken json",
                               '{"no": "action"}', "42")
    assert result.passed == 1 and result.ok
    assert parse_stream(streams["pass"][1]).non_json == (
        "go: downloading github.com/onsi/ginkgo/v2 v2.22.0",)


def test_event_without_a_package_is_kept_as_text() -> None:
    result = parse_stream([json.dumps({"Action": "output", "Output": "stray\n"}) + "\n"])
    assert result.non_json == ("stray",) and result.packages == ()


def test_rerun_of_a_finished_test_is_a_new_case() -> None:
    lines = [ev("run", "TestA"), ev("fail", "TestA", elapsed=1), ev("run", "TestA"),
             ev("pass", "TestA", elapsed=1)]
    result = parse_stream(lines)
    assert [c.status for c in result.cases] == ["fail", "pass"]


def test_output_after_the_terminal_event_stays_with_the_test() -> None:
    lines = [ev("run", "TestA"), ev("pass", "TestA", elapsed=0.1),
             ev("output", "TestA", output="late line\n")]
    assert parse_stream(lines).cases[0].output == "late line\n"


def test_all_skipped_or_nothing_run_is_not_ok() -> None:
    assert not SuiteResult().ok
    skipped = parse_stream([ev("run", "TestA"), ev("skip", "TestA", elapsed=0),
                            ev("pass", elapsed=0)])
    assert skipped.skipped == 1 and not skipped.ok


def test_package_failure_without_failing_test_is_not_ok() -> None:
    # e.g. TestMain exits non-zero after every test passed.
    lines = [ev("run", "TestA"), ev("pass", "TestA", elapsed=0.1),
             ev("output", output="FAIL\texample.com/p\t0.2s\n"), ev("fail", elapsed=0.2)]
    result = parse_stream(lines)
    assert result.failed == 0 and not result.ok
    doc = ET.fromstring(junit_xml(result))
    assert [c.get("name") for c in doc.iter("testcase")] == ["TestA", PACKAGE_FAILED_CASE]
    assert doc.get("failures") == "1"


def test_result_is_a_snapshot_while_feeding() -> None:
    parser = EventParser()
    parser.feed(ev("run", "TestA"))
    assert parser.result().cases[0].status == "unknown"
    parser.feed(ev("pass", "TestA", elapsed=0.1))
    assert parser.result().cases[0].status == "pass"


# --- Ginkgo summary ----------------------------------------------------------------------------

@pytest.mark.parametrize("line, specs", [
    ("SUCCESS! -- 5 Passed | 0 Failed | 0 Pending | 2 Skipped", (5, 0, 0, 2)),
    ("FAIL! -- 3 Passed | 1 Failed | 0 Pending | 1 Skipped", (3, 1, 0, 1)),
    ("FAIL! - Suite Timeout Elapsed -- 2 Passed | 0 Failed | 1 Pending | 0 Skipped", (2, 0, 1, 0)),
    ("FAIL! -- 4 Passed | 1 Failed | 1 Flaked | 0 Pending | 0 Skipped", (4, 1, 0, 0)),
    ("\x1b[38;5;10m\x1b[1mSUCCESS!\x1b[0m -- \x1b[38;5;10m\x1b[1m7 Passed\x1b[0m | "
     "\x1b[38;5;9m\x1b[1m0 Failed\x1b[0m | \x1b[38;5;11m\x1b[1m0 Pending\x1b[0m | "
     "\x1b[38;5;14m\x1b[1m0 Skipped\x1b[0m", (7, 0, 0, 0)),
])
def test_ginkgo_summary_is_parsed(line: str, specs: tuple[int, int, int, int]) -> None:
    lines = [ev("run", "TestE2E"),
             ev("output", "TestE2E", output="Ran 1 of 1 Specs in 1.0 seconds\n"),
             ev("output", "TestE2E", output=line + "\n"), ev("pass", "TestE2E", elapsed=1)]
    assert parse_stream(lines).specs == specs


def test_ginkgo_summary_from_ginkgo_cli_text_and_summed_over_suites() -> None:
    # `ginkgo` without --json prints plain text: every line is non-JSON.
    lines = ["Ran 2 of 2 Specs in 3.1 seconds\n",
             "SUCCESS! -- 2 Passed | 0 Failed | 0 Pending | 0 Skipped\n",
             "Ran 3 of 4 Specs in 3.1 seconds\n",
             "FAIL! -- 2 Passed | 1 Failed | 0 Pending | 1 Skipped\n"]
    result = parse_stream(lines)
    assert result.specs == SpecCounts(4, 1, 0, 1)
    assert not result.ok


def test_specs_decide_ok_for_ginkgo_cli_text() -> None:
    ok = parse_stream(["SUCCESS! -- 2 Passed | 0 Failed | 0 Pending | 0 Skipped\n"])
    none_ran = parse_stream(["SUCCESS! -- 0 Passed | 0 Failed | 0 Pending | 7 Skipped\n"])
    assert ok.ok and not none_ran.ok


def test_no_ginkgo_summary_means_no_specs() -> None:
    assert parse_stream([ev("run", "TestA"), ev("pass", "TestA", elapsed=1)]).specs is None


# --- progress ----------------------------------------------------------------------------------

def test_progress_event_sequence(streams: dict[str, tuple[int, list[str]]]) -> None:
    parser = EventParser()
    events = [e for e in map(parser.feed, streams["mixed"][1]) if e is not None]
    assert [(e.action, e.package, e.test) for e in events] == [
        ("fail", PKG, "TestGatewayE2E"),
        ("pass", PKG, "TestHealthEndpoint"),
        ("pass", PKG, "TestReadinessEndpoint"),
        ("pass", PKG, "TestMetricsEndpoint"),
        ("skip", PKG, "TestDataStorageAudit"),
        ("fail", PKG, None),
        ("skip", HELPERS, None),
    ]
    assert events[0].elapsed == 63.21
    assert progress_line(events[0]) == "FAIL TestGatewayE2E (63.21s)"
    assert progress_line(events[-2]) == f"FAIL {PKG} (63.27s)"


def test_progress_for_a_build_failure(streams: dict[str, tuple[int, list[str]]]) -> None:
    parser = EventParser()
    events = [e for e in map(parser.feed, streams["build-fail"][1]) if e is not None]
    assert events[0] == ProgressEvent("build-fail", PKG, None, 0.0)
    assert progress_line(events[0]) == f"FAIL {PKG} [build failed]"
    assert [e.action for e in events[1:]] == ["fail", "skip"]


def test_no_progress_for_run_or_output() -> None:
    parser = EventParser()
    assert parser.feed(ev("start")) is None
    assert parser.feed(ev("run", "TestA")) is None
    assert parser.feed(ev("output", "TestA", output="x\n")) is None
    assert parser.feed("garbage\n") is None


# --- JUnit XML ---------------------------------------------------------------------------------

def test_junit_for_the_mixed_scenario(streams: dict[str, tuple[int, list[str]]]) -> None:
    result = parse_stream(streams["mixed"][1])
    text = junit_xml(result, suite_name="gateway-e2e")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(text)
    assert root.tag == "testsuites"
    assert {k: root.get(k) for k in ("name", "tests", "failures", "skipped", "time")} == {
        "name": "gateway-e2e", "tests": "5", "failures": "1", "skipped": "1", "time": "63.270"}
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [PKG, HELPERS]
    counts = (suites[0].get("tests"), suites[0].get("failures"), suites[0].get("skipped"))
    assert counts == ("5", "1", "1")
    cases = {c.get("name"): c for c in suites[0].findall("testcase")}
    e2e = cases["TestGatewayE2E"]
    assert (e2e.get("classname"), e2e.get("time")) == (PKG, "63.210")
    failure = e2e.find("failure")
    assert failure is not None
    assert failure.get("message") == ("[FAIL] Gateway storm detection [It] aggregates a burst of "
                                      "alerts into one CRD")
    assert "Expected <int>: 7 to equal <int>: 1" in (failure.text or "")
    assert "\x1b" not in (failure.text or "")
    skipped = cases["TestDataStorageAudit"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "DATASTORAGE_URL not set; skipping audit checks"
    passed = cases["TestHealthEndpoint"]
    assert passed.find("failure") is None and passed.find("skipped") is None
    assert "--- PASS: TestHealthEndpoint" in (passed.findtext("system-out") or "")
    assert "[no test files]" in (suites[1].findtext("system-out") or "")


def test_junit_for_a_build_failure(streams: dict[str, tuple[int, list[str]]]) -> None:
    root = ET.fromstring(junit_xml(parse_stream(streams["build-fail"][1])))
    assert (root.get("tests"), root.get("failures")) == ("1", "1")
    case = root.find("testsuite/testcase")
    assert case is not None and case.get("name") == BUILD_FAILED_CASE
    failure = case.find("failure")
    assert failure is not None and "undefined: NewGatewayClient" in (failure.text or "")


def test_junit_for_an_interrupted_test() -> None:
    result = parse_stream([ev("start"), ev("run", "TestE2E"),
                           ev("output", "TestE2E", output="• \n")])
    root = ET.fromstring(junit_xml(result))
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and failure.get("type") == "interrupted"
    assert root.get("failures") == "1"


def test_junit_strips_characters_illegal_in_xml() -> None:
    nasty = "a\x1b[31mred\x1b[0m \x00nul \x07bell \x0bvt \ud800lone <&>\"' é ✓\n"
    lines = [ev("run", "Test<&>\x01"), ev("output", "Test<&>\x01", output=nasty),
             ev("fail", "Test<&>\x01", elapsed=0.1), ev("fail", elapsed=0.1)]
    text = junit_xml(parse_stream(lines), suite_name="suite\x02")
    root = ET.fromstring(text)  # would raise on an illegal character
    case = root.find("testsuite/testcase")
    assert case is not None and case.get("name") == "Test<&>"
    assert root.get("name") == "suite"
    assert (case.findtext("failure") or "") == "ared nul bell vt lone <&>\"' é ✓\n"


def test_xml_safe_keeps_legal_whitespace() -> None:
    assert xml_safe("a\tb\r\nc\x1b]0;title\x07d") == "a\tb\r\ncd"


def test_empty_result_is_still_valid_junit() -> None:
    root = ET.fromstring(junit_xml(SuiteResult()))
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("0", "0", "0")


# --- summary -----------------------------------------------------------------------------------

def test_summary_line(streams: dict[str, tuple[int, list[str]]]) -> None:
    assert summary_line(parse_stream(streams["mixed"][1])) == (
        "tests: 3 passed, 1 failed, 1 skipped; specs: 3 passed, 1 failed, 0 pending, 1 skipped")
    plain = SuiteResult(cases=(TestCase("p", "TestA", "pass", 0.1, ""),))
    assert summary_line(plain) == "tests: 1 passed, 0 failed, 0 skipped"
