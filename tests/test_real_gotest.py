"""`invoke e2e.test` on a real `go test -json` run: the small Go module in tests/gosuite, built and run by
the real `go`, offline (standard library only). It checks what the fake suite (tests/bin/fake-go-suite)
cannot: that kubernaut_e2e.gotest reads the events the real toolchain writes -- subtests, skips with their
reason, a package that does not compile, a test killed by `-timeout`, and Ginkgo-style summaries printed
inside a Go test -- and that the counts, the exit status and the JUnit report follow from them."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import ROOT, Project

pytestmark = pytest.mark.real_go

GOSUITE = ROOT / "tests" / "gosuite"


@pytest.fixture
def gosuite(project: Project, tmp_path: Path) -> Path:
    """The Go module as the suite's source tree, with a cluster kubeconfig in place (e2e.test needs one)."""
    if shutil.which("go") is None:
        pytest.fail("the real `go` is not on PATH: install Go >= 1.22 (CI has Go 1.26)", pytrace=False)
    source = tmp_path / "gosuite"
    shutil.copytree(GOSUITE, source)
    kubeconfig = project.state / "state" / project.env["INVOKE_E2E_CLUSTER_NAME"] / "kubeconfig"
    kubeconfig.parent.mkdir(parents=True)
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    return source


def _run(project: Project, source: Path, packages: str, *flags: str, extra: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    command = f"go test {packages} -v -json {' '.join(flags)}".strip()
    env = {"INVOKE_E2E_SOURCE_DIR": str(source), "INVOKE_E2E_TEST_COMMAND": command,
           # offline and hermetic: no toolchain download, no module proxy, no VCS stamping
           "GOTOOLCHAIN": "local", "GOPROXY": "off", "GOFLAGS": "-buildvcs=false", **(extra or {})}
    result = project.run("e2e.test", extra_env=env, timeout=240)
    run_dir = project.last_run_dir()
    return result, json.loads((run_dir / "suite.json").read_text()), ET.fromstring((run_dir / "junit.xml").read_text())


def _case(junit: ET.Element, name: str) -> ET.Element:
    [case] = [c for c in junit.iter("testcase") if c.get("name") == name]
    return case


def test_passing_and_skipped_tests_count_from_real_events(project: Project, gosuite: Path):
    result, suite, junit = _run(project, gosuite, "./passing/... ./skipped/...")
    assert result.returncode == 0, result.stdout + result.stderr
    # TestAddition, TestTable and its two subtests, TestRuns; TestNeedsCluster skipped.
    assert (suite["passed"], suite["failed"], suite["skipped"]) == (5, 0, 1)
    assert "tests: 5 passed, 0 failed, 1 skipped" in result.stdout
    assert "PASS TestTable/first" in result.stdout  # live progress, per test as it finishes
    skipped = _case(junit, "TestNeedsCluster").find("skipped")
    assert skipped is not None and skipped.get("message") == "skipping: E2E_NAMESPACE is not set"


def test_failing_tests_and_subtests_fail_the_run_with_their_messages(project: Project, gosuite: Path):
    result, suite, junit = _run(project, gosuite, "./failing/...")
    assert result.returncode == 1
    # A failing subtest fails its parent too: broken + TestWithSubtests + TestGatewayAcceptsSignal.
    assert (suite["passed"], suite["failed"], suite["skipped"]) == (2, 3, 0)
    failure = _case(junit, "TestGatewayAcceptsSignal").find("failure")
    assert failure is not None
    assert failure.get("message") == "POST /api/v1/signals/prometheus: status 503, want 201"
    assert _case(junit, "TestWithSubtests/broken").find("failure").get("message") == (  # type: ignore[union-attr]
        "subtest failure: redis unreachable")
    assert junit.get("failures") == "3"


def test_a_package_that_does_not_compile_is_a_failure_with_the_compiler_output(project: Project, gosuite: Path):
    result, suite, junit = _run(project, gosuite, "./broken/... ./passing/...")
    assert result.returncode == 1
    assert suite["build_failures"] == ["example.com/gosuite/broken"]
    assert suite["passed"] == 4  # the package that compiled still ran
    assert "build failed: example.com/gosuite/broken" in result.stdout
    failure = _case(junit, "[build failed]").find("failure")
    assert failure is not None and "cannot use \"three\"" in (failure.text or "")


def test_only_a_broken_package_is_not_a_pass(project: Project, gosuite: Path):
    result, suite, _ = _run(project, gosuite, "./broken/...")
    assert result.returncode == 1
    assert (suite["passed"], suite["failed"]) == (0, 0) and suite["build_failures"]


def test_ginkgo_summary_inside_a_go_test_gives_the_spec_counts(project: Project, gosuite: Path):
    result, suite, _ = _run(project, gosuite, "./ginkgopass/...")
    assert result.returncode == 0, result.stdout + result.stderr
    assert suite["specs"] == {"passed": 3, "failed": 0, "pending": 0, "skipped": 1}
    assert "specs: 3 passed, 0 failed, 0 pending, 1 skipped" in result.stdout


def test_failing_ginkgo_suite_names_the_failed_spec(project: Project, gosuite: Path):
    result, suite, junit = _run(project, gosuite, "./ginkgofail/...")
    assert result.returncode == 1
    assert suite["specs"] == {"passed": 2, "failed": 1, "pending": 0, "skipped": 0}
    failure = _case(junit, "TestGatewayE2E").find("failure")
    assert failure is not None
    assert failure.get("message") == ("[FAIL] Gateway signal ingestion [It] creates a RemediationRequest "
                                      "for a firing alert")
    assert "\x1b" not in ET.tostring(junit, encoding="unicode")  # colours never reach the XML


def test_a_test_killed_by_the_timeout_is_reported_as_interrupted(project: Project, gosuite: Path):
    result, suite, junit = _run(project, gosuite, "./hang/...", "-timeout", "3s", extra={"GOSUITE_HANG": "1"})
    assert result.returncode == 1
    assert suite["interrupted"] == ["TestHangs"]
    assert suite["passed"] == 1 and suite["failed"] == 1
    failure = _case(junit, "TestHangs").find("failure")
    assert failure is not None and failure.get("type") == "interrupted"
    assert "panic: test timed out after 3s" in (failure.text or "")


def test_a_panicking_test_fails_with_the_panic_text(project: Project, gosuite: Path):
    result, suite, junit = _run(project, gosuite, "./panics/...")
    assert result.returncode == 1
    assert (suite["passed"], suite["failed"]) == (1, 1)
    failure = _case(junit, "TestPanics").find("failure")
    assert failure is not None and "panic: assignment to entry in nil map" in (failure.text or "")


def test_a_package_failing_outside_any_test_is_a_visible_failure(project: Project, gosuite: Path):
    result, suite, junit = _run(project, gosuite, "./mainfail/...")
    assert result.returncode == 1
    assert (suite["passed"], suite["failed"]) == (0, 0)
    failure = _case(junit, "[package failed]").find("failure")
    assert failure is not None and "cannot reach the cluster" in (failure.text or "")
