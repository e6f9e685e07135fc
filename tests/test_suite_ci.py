"""`e2e.test` against a stand-in suite printing `go test -json` events, and `e2e.ci` end to end
with the stand-ins (kind, Kubernetes API) and real podman."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import MIGRATION_LOG, ROOT, Project
from tests.kindstate import clusters
from tests.kubeapi import JobSucceeds

FAKE_SUITE = ROOT / "tests" / "bin" / "fake-go-suite"


def _suite_env(project: Project, scenario: str, tmp_path: Path) -> dict[str, str]:
    return {"INVOKE_E2E_TEST_COMMAND": str(FAKE_SUITE), "FAKE_SUITE_SCENARIO": scenario,
            "FAKE_SUITE_ENV_OUT": str(tmp_path / "suite-env.json")}


def _fake_cluster(project: Project) -> Path:
    kubeconfig = project.state / "state" / project.env["INVOKE_E2E_CLUSTER_NAME"] / "kubeconfig"
    kubeconfig.parent.mkdir(parents=True)
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    return kubeconfig


def test_passing_suite_counts_env_and_junit(project: Project, tmp_path: Path):
    kubeconfig = _fake_cluster(project)
    result = project.run("e2e.test", extra_env=_suite_env(project, "pass", tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tests: 4 passed, 0 failed, 0 skipped" in result.stdout
    assert "PASS TestGatewayE2E" in result.stdout  # streamed progress
    seen = json.loads((tmp_path / "suite-env.json").read_text())
    assert seen["KUBECONFIG"] == str(kubeconfig)
    assert seen["GATEWAY_URL"] == f"http://127.0.0.1:{project.host_ports['gateway-api']}"
    assert seen["TEST_DATA_STORAGE_URL"] == f"https://127.0.0.1:{project.host_ports['datastorage-api']}"
    assert seen["INTER_SERVICE_CA_FILE"] == str(kubeconfig.parent / "inter-service-ca.pem")
    # The suite is always told to keep its cluster: it must never delete ours.
    assert seen["SKIP_CLEANUP"] == "true" and seen["KEEP_CLUSTER"] == "true"
    suite = json.loads((project.last_run_dir() / "suite.json").read_text())
    assert (suite["passed"], suite["failed"], suite["skipped"]) == (4, 0, 0)
    assert suite["specs"]["passed"] == 5


def test_mixed_suite_exit_status_and_junit_content(project: Project, tmp_path: Path):
    _fake_cluster(project)
    result = project.run("e2e.test", extra_env=_suite_env(project, "mixed", tmp_path))
    assert result.returncode == 1
    assert "3 passed, 1 failed, 1 skipped" in result.stdout
    root = ET.fromstring((project.last_run_dir() / "junit.xml").read_text())
    assert root.get("failures") == "1" and root.get("skipped") == "1"
    failures = root.findall(".//testcase/failure")
    assert len(failures) == 1 and failures[0].text
    assert len(root.findall(".//testcase/skipped")) == 1


def test_suite_build_failure_is_a_failure(project: Project, tmp_path: Path):
    _fake_cluster(project)
    result = project.run("e2e.test", extra_env=_suite_env(project, "build-fail", tmp_path))
    assert result.returncode == 1
    assert "build failed" in result.stdout


def test_test_without_cluster_is_exit_2(project: Project, tmp_path: Path):
    result = project.run("e2e.test", extra_env=_suite_env(project, "pass", tmp_path))
    assert result.returncode == 2 and "no cluster" in result.stderr
    assert not (project.state / "runs").exists()


def test_a_suite_that_builds_its_own_environment_is_refused_before_anything(project: Project, tmp_path: Path):
    _fake_cluster(project)
    env = {**_suite_env(project, "pass", tmp_path),
           "INVOKE_E2E_TEST_COMMAND": f"{FAKE_SUITE} ./test/e2e/gateway/..."}
    result = project.run("e2e.test", extra_env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "stands up its own environment (test/e2e/gateway/gateway_e2e_suite_test.go:12: " \
           "SetupGatewayInfrastructureParallel)" in line
    assert "--suite-reuses-env" in line and "make test-e2e-gateway" in line
    assert not (tmp_path / "suite-env.json").exists() and not (project.state / "runs").exists()


def test_suite_reuses_env_writes_the_two_files_it_reads_and_runs(project: Project, tmp_path: Path):
    kubeconfig = _fake_cluster(project)
    (kubeconfig.parent / "inter-service-ca.pem").write_text("-----BEGIN CERTIFICATE-----\nx\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {**_suite_env(project, "pass", tmp_path), "HOME": str(home),
           "INVOKE_E2E_TEST_COMMAND": f"{FAKE_SUITE} ./test/e2e/gateway/..."}
    result = project.run("e2e.test", "--suite-reuses-env", extra_env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    written = home / ".kube" / "gateway-e2e-config"
    assert written.read_text() == kubeconfig.read_text() and oct(written.stat().st_mode & 0o777) == "0o600"
    assert (home / ".kube" / "inter-service-ca.pem").read_text().startswith("-----BEGIN CERTIFICATE")
    assert f"wrote {written}" in result.stdout
    # Nothing else in the home folder: those two are the only writes outside the state dir.
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == [
        ".kube", ".kube/gateway-e2e-config", ".kube/inter-service-ca.pem"]


def _ci_env(project: Project, kubeapi, scenario: str, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    kubeapi.script_job("e2e-migrations", JobSucceeds(after=0.2, log=MIGRATION_LOG))
    # The API stand-in has no TokenRequest: the smoke phase is tested on the real tier.
    return {"KIND_STANDIN_API_SERVER": kubeapi.url, "INVOKE_E2E_STACK": str(project.stack.parent / "no-smoke.yaml"),
            **_suite_env(project, scenario, tmp_path)}


def test_ci_passing_run_cleans_up_and_summarises(project: Project, kubeapi, tmp_path: Path):
    result = project.run("e2e.ci", extra_env=_ci_env(project, kubeapi, "pass", tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((project.last_run_dir() / "ci.json").read_text())
    assert summary["passed"] and summary["tests"]["passed"] == 4
    assert summary["checklist"] and all(c["passed"] for c in summary["checklist"])
    assert summary["findings"] == []
    assert project.env["INVOKE_E2E_CLUSTER_NAME"] not in clusters(project.kind_state)
    assert not any(project.image_exists(ref) for ref in project.images.values())
    assert (project.last_run_dir() / "junit.xml").exists() and (project.last_run_dir() / "timings.json").exists()
    assert "e2e.ci summary" in result.stdout and "PASSED" in result.stdout
    assert summary["timeline"] == str(project.last_run_dir() / "timeline.svg")
    assert Path(summary["timeline"]).is_file() and summary["up"]["history"].startswith("cold run in")


def test_ci_failing_suite_diagnoses_and_keeps_with_keep(project: Project, kubeapi, tmp_path: Path):
    result = project.run("e2e.ci", "--keep", extra_env=_ci_env(project, kubeapi, "mixed", tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    run_dir = project.last_run_dir()
    assert (run_dir / "diagnose" / "findings.json").exists()
    summary = json.loads((run_dir / "ci.json").read_text())
    assert not summary["passed"] and summary["tests"]["failed"] == 1
    assert project.env["INVOKE_E2E_CLUSTER_NAME"] in clusters(project.kind_state)  # --keep
    assert "FAILED" in result.stdout
