"""`invoke e2e.diagnose` against the Kubernetes API stand-in with scripted broken pods, and
offline on log folders."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.kindstate import standin_env
from tests.kubeapi import CrashLoop, ImageNeverPull, OOMKilled, Ready
from tests.test_kube import LFSTACK_LOG

NS = "kubernaut-system"
CLUSTER = "diag-e2e"
PASSWORD = "s3cr3t-db-password-4242"
FIXTURES = ROOT / "tests" / "fixtures" / "logs"


@pytest.fixture
def env(tmp_path: Path, kubeapi) -> dict[str, str]:  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    kubeapi.kubeconfig(state / "state" / CLUSTER / "kubeconfig")
    e = standin_env(tmp_path / "kind", api_server=kubeapi.url)
    subprocess.run(["kind", "create", "cluster", "--name", CLUSTER, "--kubeconfig", str(tmp_path / "kc")],
                   env={**e, "KIND_EXPERIMENTAL_PROVIDER": "podman"}, check=True, capture_output=True)
    e.update({"CI": "true", "INVOKE_E2E_STATE_DIR": str(state), "INVOKE_E2E_CLUSTER_NAME": CLUSTER})
    return e


def _invoke(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", "e2e.diagnose", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _deploy(kubeapi, name: str, image: str = "localhost/kubernaut-gateway:e2e-test") -> None:  # type: ignore[no-untyped-def]
    kubeapi.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})  if not kubeapi.get(
        "namespaces", NS) else None
    kubeapi.create({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                             "template": {"metadata": {"labels": {"app": name}},
                                          "spec": {"containers": [{"name": name, "image": image,
                                                                   "imagePullPolicy": "Never"}]}}}})


def _wait_pod(kubeapi, predicate) -> None:  # type: ignore[no-untyped-def]
    kubeapi.wait_for(lambda: any(predicate(p) for p in kubeapi.objects("pods", NS)), timeout=10)


def _restarted(pod: dict) -> bool:
    return any(s.get("restartCount", 0) > 0 for s in pod.get("status", {}).get("containerStatuses", []))


def test_lfstack_crash_on_arm64_node_names_emulation_not_go_version(env, kubeapi):
    for node in kubeapi.objects("nodes"):
        kubeapi.delete("nodes", node["metadata"]["name"])
    kubeapi.add_node("diag-e2e-worker", arch="arm64")
    kubeapi.script("gateway", CrashLoop(after=0.2, exit_code=2, log=LFSTACK_LOG))
    _deploy(kubeapi, "gateway")
    _wait_pod(kubeapi, _restarted)
    result = _invoke(env, "--json")
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert {"name": "diag-e2e-worker", "arch": "arm64"} in doc["nodes"]
    top = doc["findings"][0]
    assert top["signature_id"] == "go-lfstack-amd64-emulated"
    assert "gateway" in top["subject"]
    evidence = " ".join(top["evidence"])
    assert "0xffffffffb9b77ec0" in evidence and "arm64" in evidence
    assert "architecture" in top["fix"] and "Go version" in top["fix"]


def test_oom_and_image_never_pull_are_reported_with_fixes(env, kubeapi):
    kubeapi.script("datastorage", OOMKilled(after=0.2, log="allocating cache\n"))
    kubeapi.script("gateway", ImageNeverPull(after=0.2))
    _deploy(kubeapi, "datastorage", "localhost/kubernaut-datastorage:e2e-test")
    _deploy(kubeapi, "gateway")
    _wait_pod(kubeapi, _restarted)
    _wait_pod(kubeapi, lambda p: any((s.get("state", {}).get("waiting") or {}).get("reason") == "ErrImageNeverPull"
                                     for s in p.get("status", {}).get("containerStatuses", [])))
    result = _invoke(env, "--json")
    assert result.returncode == 1
    ids = {f["signature_id"]: f for f in json.loads(result.stdout)["findings"]}
    assert "container-oom-killed" in ids and "datastorage" in ids["container-oom-killed"]["subject"]
    assert "image-not-loaded" in ids and "kind" in ids["image-not-loaded"]["fix"]
    human = _invoke(env)
    assert human.returncode == 1
    assert "fix:" in human.stdout and "evidence:" in human.stdout


def test_healthy_cluster_exits_zero(env, kubeapi):
    kubeapi.script("gateway", Ready(after=0.1))
    _deploy(kubeapi, "gateway")
    _wait_pod(kubeapi, lambda p: p.get("status", {}).get("phase") == "Running")
    kubeapi.wait_for(lambda: kubeapi.get("deployments", "gateway", NS)["status"].get("availableReplicas"))
    result = _invoke(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no problems found" in result.stdout


def test_out_writes_a_masked_bundle(env, kubeapi, tmp_path):
    kubeapi.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    kubeapi.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "postgresql-credentials", "namespace": NS},
                    "stringData": {"POSTGRES_PASSWORD": PASSWORD}})
    kubeapi.script("gateway", CrashLoop(after=0.2, exit_code=1,
                                        log=f"connecting with password={PASSWORD}\n"
                                            "dial tcp 10.96.0.12:5432: connect: connection refused\n"))
    _deploy(kubeapi, "gateway")
    _wait_pod(kubeapi, _restarted)
    out = tmp_path / "bundle"
    result = _invoke(env, "--out", str(out))
    assert result.returncode == 1, result.stderr
    assert (out / "findings.json").exists() and (out / "nodes.yaml").exists()
    pod_files = list((out / "pods" / NS).glob("gateway-*.yaml"))
    assert pod_files
    logs = list((out / "logs").rglob("*.log"))
    assert logs and any("connection refused" in p.read_text() for p in logs)
    assert (out / "kind-logs").is_dir()  # `kind export logs` output
    everything = result.stdout + "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert PASSWORD not in everything
    assert "***" in everything
    assert "10.96.0.12:5432" in result.stdout  # the dependency it could not reach, named


def test_no_cluster_is_exit_2(tmp_path):
    e = standin_env(tmp_path / "kind")
    e.update({"INVOKE_E2E_STATE_DIR": str(tmp_path / "nothing"), "CI": "true"})
    result = _invoke(e)
    assert result.returncode == 2
    assert "no cluster" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_offline_logs_same_findings_and_exit_codes(tmp_path):
    e = {**standin_env(tmp_path / "kind"), "CI": "true", "INVOKE_E2E_STATE_DIR": str(tmp_path / "s")}
    bundle = tmp_path / "artifact" / "gateway-e2e-worker" / "pods"
    bundle.mkdir(parents=True)
    (bundle / "gateway.log").write_text(LFSTACK_LOG)
    result = _invoke(e, "--logs", str(tmp_path / "artifact"), "--json")
    assert result.returncode == 1
    ids = [f["signature_id"] for f in json.loads(result.stdout)["findings"]]
    assert ids[0] == "go-lfstack-amd64-emulated"
    healthy = sorted(FIXTURES.glob("healthy-*.log"))[0]
    ok = _invoke(e, "--logs", str(healthy))
    assert ok.returncode == 0, ok.stdout
    missing = _invoke(e, "--logs", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "--logs" in missing.stderr


CORPUS = ROOT / "tests" / "corpus"
HELDOUT = yaml.safe_load((CORPUS / "manifest.yaml").read_text())["heldout"]


@pytest.fixture
def offline_env(tmp_path: Path) -> dict[str, str]:
    return {**standin_env(tmp_path / "kind"), "CI": "true", "INVOKE_E2E_STATE_DIR": str(tmp_path / "s")}


@pytest.mark.parametrize("rel", sorted(HELDOUT))
def test_a_crash_of_a_kind_no_signature_knows_exits_1_quoting_the_fatal_line(offline_env, rel):  # type: ignore[no-untyped-def]
    result = _invoke(offline_env, "--logs", str(CORPUS / rel))
    assert result.returncode == 1, result.stdout + result.stderr
    fatal = next(fragment for fragment in HELDOUT[rel]["evidence"] if fragment.startswith("line "))
    assert " ".join(fatal.split()) in " ".join(result.stdout.split()), result.stdout  # rich may wrap lines
    assert "no problems found" not in result.stdout


def test_a_recovered_transient_error_exits_0_with_a_note(offline_env):  # type: ignore[no-untyped-def]
    result = _invoke(offline_env, "--logs", str(CORPUS / "healthy" / "datastorage-pg-retry-recovered.log"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no problems found" in result.stdout
    assert "[NOTE]" in result.stdout and "recovered: line 5" in result.stdout
    as_json = _invoke(offline_env, "--logs", str(CORPUS / "healthy" / "datastorage-pg-retry-recovered.log"), "--json")
    assert as_json.returncode == 0
    (note,) = json.loads(as_json.stdout)["findings"]
    assert note["severity"] == "info" and "then it recovered" in note["cause"]
