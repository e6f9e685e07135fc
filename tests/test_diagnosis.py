"""Tests for kubernaut_e2e/diagnosis.py and the knowledge base in kubernaut_e2e/signatures.yaml."""

from __future__ import annotations

import gzip
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kubernaut_e2e import diagnosis
from kubernaut_e2e.diagnosis import (
    ContainerFacts,
    EventFacts,
    Finding,
    PodFacts,
    diagnose_path,
    diagnose_pod,
    load_signatures,
    match_text,
    pod_facts_from_api,
    sort_findings,
)

LOGS = Path(__file__).parent / "fixtures" / "logs"
CORPUS = Path(__file__).parent / "corpus"
REPO = Path(__file__).resolve().parent.parent


def ids(findings: list[Finding]) -> set[str]:
    return {f.signature_id for f in findings}


def evidence_text(finding: Finding) -> str:
    return "\n".join(finding.evidence)


def only(findings: list[Finding], signature_id: str) -> Finding:
    matching = [f for f in findings if f.signature_id == signature_id]
    assert len(matching) == 1, [f.signature_id for f in findings]
    return matching[0]


# --------------------------------------------------------------------------- knowledge base


FAMILIES = {"start", "config", "dependency", "kube-api", "go-runtime", "host", "pod"}

REQUIRED_IDS = {
    "go-lfstack-amd64-emulated",
    "exec-format-error",
    "image-platform-mismatch",
    "go-amd64-microarch-unsupported",
    "go-unexpected-signal",
    "qemu-uncaught-target-signal",
    "go-thread-create-failed",
    "cgo-pthread-create-failed",
    "go-out-of-memory",
    "container-oom-killed",
    "go-panic",
    "dependency-unreachable",
    "image-not-loaded",
    "image-pull-failed",
    "create-container-config-error",
    "probe-failed",
}


def test_signatures_load_once_and_cover_the_required_failures() -> None:
    signatures = load_signatures()
    assert load_signatures() is signatures  # cached: parsed once per process
    assert REQUIRED_IDS <= {s.id for s in signatures}
    for signature in signatures:
        assert signature.severity in ("critical", "error", "warning", "info")
        assert signature.meaning and signature.fix and signature.title
        assert signature.family in FAMILIES, (signature.id, signature.family)


def test_no_pattern_matches_a_bare_word() -> None:
    # Healthy logs are full of "error" and "failed"; a signature must say more than that.
    words = ["error", "Error", "ERROR", "errors", "failed", "Failed", "FAILED", "failure", "refused",
             "connection refused", "panic", "fatal", "killed", "timeout", "level=error msg=failed"]
    for signature in load_signatures():
        for pattern in signature.patterns:
            for word in words:
                assert pattern.regex.search(word) is None, (signature.id, pattern.regex.pattern, word)


def test_literal_shortcut_is_part_of_every_match() -> None:
    # The str.find shortcut must never hide a line the regex would match.
    lines = [line for path in sorted(LOGS.glob("*.log")) for line in diagnosis._prepare(path.read_text()).lines]
    for signature in load_signatures():
        for pattern in signature.patterns:
            for line in lines:
                if pattern.literal is not None and pattern.regex.search(line):
                    assert pattern.literal in line, (signature.id, pattern.literal, line)


def test_bad_signature_file_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "signatures.yaml"
    bad.write_text("signatures:\n  - id: x\n    title: t\n    severity: fatal\n    patterns: ['a']\n    meaning: m\n    fix: f\n")
    with pytest.raises(diagnosis.SignatureError, match="severity"):
        load_signatures(bad)
    bad.write_text("signatures:\n  - id: x\n    title: t\n    severity: error\n    patterns: ['(']\n    meaning: m\n    fix: f\n")
    with pytest.raises(diagnosis.SignatureError, match="bad regex"):
        load_signatures(bad)


def test_importing_the_engine_stays_light() -> None:
    code = "import sys, kubernaut_e2e.diagnosis, kubernaut_e2e.dockerfile; print('kubernetes' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --------------------------------------------------------------------------- one test per signature

# fixture -> (exact signature ids, evidence fragments, fix fragments)
SIGNATURE_CASES = {
    "podman-store-corrupt.log": (
        {"podman-store-corrupt"},
        ["7df2c8a0bc6a68c74cba0034eea6cfda89adc8b013969c22ebbf3d90734591ca"],
        ["podman rmi -f", "invoke e2e.up"],
    ),
    "lfstack-push-amd64-on-arm64.log": (
        {"go-lfstack-amd64-emulated"},
        ["0xffffffffb9b77ec0", "sign-extended", "GOARCH=amd64", "runtime/asm_amd64.s:514", "/usr/lib/golang"],
        ["node's architecture", "GOARCH=${TARGETARCH}", "NOT the fix", "1.25.4", "merely hides it"],
    ),
    "tagged-pointer-pack-go125.log": (
        {"go-lfstack-amd64-emulated"},
        ["taggedPointerPack invalid packing", "0xffffffff8f443c00", "/usr/local/go"],
        ["multi-arch", "--platform"],
    ),
    "exec-format-error.log": (
        {"exec-format-error"},
        ["exec format error", "/usr/local/bin/datastorage"],
        ["node's architecture", "TARGETARCH"],
    ),
    "podman-run-platform-mismatch.log": (
        {"image-platform-mismatch"},
        ["image platform linux/amd64, expected linux/arm64"],
        ["GOARCH=${TARGETARCH}"],
    ),
    "goamd64-v3-unsupported.log": (
        {"go-amd64-microarch-unsupported"},
        ["GOAMD64=v3"],
        ["GOAMD64=v1"],
    ),
    "sigill-illegal-instruction.log": (
        {"go-amd64-microarch-unsupported"},
        ["SIGILL: illegal instruction", "PC 0x4a3f62"],
        ["GOAMD64=v1"],
    ),
    "unexpected-signal-sigsegv.log": (
        {"go-unexpected-signal"},
        ["SIGSEGV (segmentation violation) at addr 0x18", "cgo is on the stack"],
        ["natively", "CGO_ENABLED=0"],
    ),
    "qemu-uncaught-target-signal.log": (
        {"qemu-uncaught-target-signal"},
        ["target signal 11 (Segmentation fault)"],
        ["natively"],
    ),
    "newosproc-eagain.log": (
        {"go-thread-create-failed"},
        ["errno=11 with 1023 threads", "EAGAIN"],
        ["pids limit", "clone3"],
    ),
    "cgo-pthread-create-eperm.log": (
        {"cgo-pthread-create-failed"},
        ["pthread_create failed: Operation not permitted", "blocks clone3"],
        ["libseccomp"],
    ),
    "go-out-of-memory.log": (
        {"go-out-of-memory"},
        ["1073741824 bytes failed with 402653184 bytes"],
        ["GOMEMLIMIT", "limits.memory"],
    ),
    "describe-pod-oomkilled.log": (
        {"container-oom-killed"},
        ["OOMKilled", "exit code 137", "memory limit 64Mi"],
        ["limits.memory", "GOMEMLIMIT"],
    ),
    "panic-nil-pointer.log": (
        {"go-panic"},
        [
            "panic: runtime error: invalid memory address or nil pointer dereference",
            "processing.(*DeduplicationService).Check",
            "/opt/app-root/src/pkg/gateway/processing/deduplication.go:142",
        ],
        ["first non-runtime frame"],
    ),
    "fatal-concurrent-map-writes.log": (
        {"go-concurrent-map-access"},
        ["concurrent map writes", "metrics.(*Recorder).Observe", "recorder.go:57"],
        ["mutex"],
    ),
    "datastorage-postgres-refused.log": (
        {"dependency-unreachable", "dns-lookup-failed"},
        ["cannot reach 10.96.118.40:5432: connection refused", "PostgreSQL"],
        ["host:port", "Ready"],
    ),
    "events-err-image-never-pull.log": (
        {"image-not-loaded"},
        ["image localhost/kubernaut-gateway:e2e-1732683000 is not present"],
        ["invoke e2e.up --only images", "the ref that was built is the ref deployed"],
    ),
    "describe-pod-image-pull-backoff.log": (
        {"image-pull-failed"},
        ["pull of redis:7-alpine failed", "ImagePullBackOff"],
        ["kind load image-archive", "imagePullPolicy"],
    ),
    "describe-pod-create-container-config-error.log": (
        {"create-container-config-error"},
        ["missing secret datastorage-db-secret"],
        ["Secret/ConfigMap", "envFrom"],
    ),
    "events-failed-mount.log": (
        {"volume-mount-failed"},
        ['volume rego-policy: configmap "gateway-rego-policy" not found'],
        ["ConfigMap/Secret"],
    ),
    "events-failed-scheduling.log": (
        {"pod-unschedulable"},
        ["0/2 nodes are available: 1 Insufficient memory"],
        ["taints"],
    ),
    "describe-pod-readiness-probe-failed.log": (
        {"probe-failed"},
        ["Readiness probe failed", "nothing listens on the probed port"],
        ["/ready", "startupProbe"],
    ),
    "kubelet-crashloop.log": (
        {"container-crash-loop"},
        ["container gateway keeps failing", "back-off 40s"],
        ["kubectl logs --previous"],
    ),
}


@pytest.mark.parametrize("fixture", sorted(SIGNATURE_CASES))
def test_signature_fixture(fixture: str) -> None:
    expected_ids, evidence_fragments, fix_fragments = SIGNATURE_CASES[fixture]
    findings = match_text((LOGS / fixture).read_text(), fixture)
    assert ids(findings) == expected_ids
    finding = findings[0]
    assert finding.subject == fixture
    for fragment in evidence_fragments:
        assert fragment in evidence_text(finding), (fragment, finding.evidence)
    for fragment in fix_fragments:
        assert fragment in finding.fix, (fragment, finding.fix)


def test_every_signature_has_a_fixture() -> None:
    covered = set().union(*(expected for expected, _, _ in SIGNATURE_CASES.values()))
    corpus = yaml.safe_load((CORPUS / "manifest.yaml").read_text())
    covered |= {case["expect"] for case in corpus["crash"].values()}
    covered |= {note for case in corpus["healthy"].values() for note in case.get("notes", ())}
    assert covered == {s.id for s in load_signatures()}


def test_lfstack_evidence_names_the_architectures_when_known() -> None:
    text = (LOGS / "lfstack-push-amd64-on-arm64.log").read_text()
    finding = only(match_text(text, "gateway.log", {"node_arch": "aarch64", "image_arch": "x86_64"}), "go-lfstack-amd64-emulated")
    evidence = evidence_text(finding)
    assert "node architecture: arm64" in evidence
    assert "image architecture: amd64" in evidence
    assert "image architecture amd64 differs from node architecture arm64" in evidence
    assert "emulation" in evidence
    assert finding.severity == "critical"
    assert "Go 1.24 bug" in finding.meaning and "arm64 node" in finding.meaning


def test_lfstack_on_an_amd64_node_points_at_other_translators() -> None:
    text = (LOGS / "tagged-pointer-pack-go125.log").read_text()
    finding = only(match_text(text, "x", {"node_arch": "amd64"}), "go-lfstack-amd64-emulated")
    assert "Rosetta" in evidence_text(finding)


def test_quoted_lines_lose_the_cri_prefix_and_keep_line_numbers() -> None:
    text = (LOGS / "lfstack-push-amd64-on-arm64.log").read_text()
    finding = only(match_text(text, "x", {"source": "previous log"}), "go-lfstack-amd64-emulated")
    assert finding.evidence[0].startswith("previous log line 3: runtime: lfstack.push invalid packing")
    assert "stderr F" not in evidence_text(finding)


def test_panic_frame_skips_the_builtin_and_runtime_frames() -> None:
    text = """level=info msg="serving"
2025/11/27 06:02:00 http: panic serving 10.244.0.1:51234: boom
goroutine 7 [running]:
net/http.(*conn).serve.func1()
\t/usr/lib/golang/src/net/http/server.go:1947 +0xbe
panic({0x1b2c3e0?, 0x2c4e5f0?})
\t/usr/lib/golang/src/runtime/panic.go:785 +0x132
github.com/jordigilh/kubernaut/pkg/gateway/adapters.(*PrometheusAdapter).Parse(0xc000123000, {0xc000456000, 0x200, 0x200})
\t/opt/app-root/src/pkg/gateway/adapters/prometheus_adapter.go:97 +0x2f1
"""
    finding = only(match_text(text, "x"), "go-panic")
    evidence = evidence_text(finding)
    assert "recovered by net/http while serving 10.244.0.1:51234" in evidence
    # net/http's deferred recover sits above panic(); the culprit is below it.
    assert "net/http.(*conn).serve.func1" not in evidence
    assert (
        "first non-runtime frame: github.com/jordigilh/kubernaut/pkg/gateway/adapters.(*PrometheusAdapter).Parse"
        " at /opt/app-root/src/pkg/gateway/adapters/prometheus_adapter.go:97"
    ) in evidence


def test_panic_frame_skips_panic_builtin() -> None:
    text = (LOGS / "panic-nil-pointer.log").read_text().replace(
        "goroutine 1 [running]:\n",
        "goroutine 1 [running]:\npanic({0x1b2c3e0?, 0x2c4e5f0?})\n\t/usr/lib/golang/src/runtime/panic.go:785 +0x132\n",
    )
    finding = only(match_text(text, "x"), "go-panic")
    assert "deduplication.go:142" in evidence_text(finding)


# --------------------------------------------------------------------------- healthy logs


@pytest.mark.parametrize("fixture", sorted(p.name for p in LOGS.glob("healthy-*.log")))
def test_healthy_fixture_has_no_findings(fixture: str) -> None:
    assert match_text((LOGS / fixture).read_text(), fixture) == []


@pytest.mark.parametrize(
    "line",
    [
        'level=info msg="no error"',
        "retrying, error count 0",
        "errors_total 0",
        '{"level":"info","msg":"no errors found"}',
        "errors=0 failed=0 refused=0",
        'level=error msg="request failed" error="validation failed: missing field"',
        "FAILED to parse label, using default",
        "connection refused",  # no dial: nothing names a dependency
        'level=info msg="recovered: redis reconnected" last_error="dial tcp 10.96.2.3:6379: connect: connection refused"',
        '{"level":"info","msg":"event","reason":"OOMKilled","message":"Back-off restarting failed container x"}',
        'level=warning msg="recovered from panic: handler returned early"',
        'level=info msg="alert" summary="fatal error: rate is 0"',
        "",
    ],
)
def test_harmless_lines_do_not_match(line: str) -> None:
    assert match_text(line, "x") == []


def test_a_failing_probe_is_not_a_dependency_problem() -> None:
    line = 'Readiness probe failed: Get "http://10.244.1.7:8080/ready": dial tcp 10.244.1.7:8080: connect: connection refused'
    assert ids(match_text(line, "x")) == {"probe-failed"}


def test_dependency_evidence_lists_each_address_once() -> None:
    text = "\n".join(
        f'level=error msg="redis ping" error="dial tcp 10.96.2.3:6379: connect: connection refused" attempt={i}'
        for i in range(50)
    )
    finding = only(match_text(text, "x"), "dependency-unreachable")
    assert evidence_text(finding).count("cannot reach 10.96.2.3:6379") == 1
    assert "is Redis" in evidence_text(finding)
    assert len(finding.evidence) <= diagnosis.MAX_EVIDENCE


# --------------------------------------------------------------------------- pods


def container(**overrides: object) -> ContainerFacts:
    defaults: dict[str, object] = dict(
        name="gateway",
        image="localhost/kubernaut-gateway:e2e-test",
        ready=False,
        restart_count=0,
        waiting_reason=None,
        waiting_message=None,
        terminated_reason=None,
        exit_code=None,
        termination_message=None,
    )
    defaults.update(overrides)
    return ContainerFacts(**defaults)  # type: ignore[arg-type]


def pod(*containers: ContainerFacts, events: tuple[EventFacts, ...] = (), node_arch: str | None = "arm64") -> PodFacts:
    return PodFacts(
        namespace="kubernaut-system",
        name="gateway-6c8d9f7b5-h4k2p",
        node="gateway-e2e-worker",
        node_arch=node_arch,
        phase="Running",
        containers=containers,
        events=events,
    )


def test_healthy_pod_has_no_findings_even_with_noisy_logs() -> None:
    noisy = 'level=warning msg="redis not ready" error="dial tcp 10.96.2.3:6379: connect: connection refused"'
    healthy = pod(
        container(ready=True, log=noisy),
        events=(EventFacts("Normal", "Started", "Started container gateway"),),
    )
    assert diagnose_pod(healthy) == []


def test_completed_init_container_does_not_make_a_pod_unhealthy() -> None:
    init = container(name="wait-for-db", ready=False, terminated_reason="Completed", exit_code=0)
    assert diagnose_pod(pod(init, container(ready=True))) == []


def test_crash_loop_with_lfstack_in_the_previous_log() -> None:
    crashed = container(
        restart_count=5,
        waiting_reason="CrashLoopBackOff",
        waiting_message="back-off 2m40s restarting failed container=gateway pod=gateway-6c8d9f7b5-h4k2p_kubernaut-system(uid)",
        terminated_reason="Error",
        exit_code=2,
        previous_log=(LOGS / "lfstack-push-amd64-on-arm64.log").read_text(),
        image_arch="amd64",
    )
    events = (
        EventFacts("Warning", "BackOff", "Back-off restarting failed container gateway in pod gateway-6c8d9f7b5-h4k2p_kubernaut-system(uid)", 12),
    )
    findings = diagnose_pod(pod(crashed, events=events))
    assert [f.signature_id for f in findings] == [
        "go-lfstack-amd64-emulated",
        "container-crash-loop",
        "image-platform-mismatch",
    ]
    subject = "pod kubernaut-system/gateway-6c8d9f7b5-h4k2p container gateway"
    assert {f.subject for f in findings} == {subject}  # the BackOff event folded into the container
    lfstack = evidence_text(findings[0])
    assert "previous log line 3: runtime: lfstack.push invalid packing" in lfstack
    assert "0xffffffffb9b77ec0" in lfstack
    assert "image architecture amd64 differs from node architecture arm64" in lfstack
    crash_loop = evidence_text(findings[1])
    assert "restarted 5 times" in crash_loop
    assert "last exit code 2 (Error)" in crash_loop
    assert "panic or fatal error" in crash_loop
    assert "image localhost/kubernaut-gateway:e2e-test is amd64, node architecture is arm64" in evidence_text(findings[2])


def test_oom_killed_container() -> None:
    oom = container(
        restart_count=3,
        waiting_reason="CrashLoopBackOff",
        terminated_reason="OOMKilled",
        exit_code=137,
    )
    findings = diagnose_pod(pod(oom))
    assert findings[0].signature_id == "container-oom-killed"
    assert findings[0].severity == "critical"
    assert "last termination: OOMKilled, exit code 137" in evidence_text(findings[0])
    assert "restarted 3 times" in evidence_text(findings[0])
    assert "container-crash-loop" in ids(findings)


def test_exit_137_without_oomkilled_is_called_a_sigkill() -> None:
    killed = container(restart_count=1, terminated_reason="Error", exit_code=137)
    finding = only(diagnose_pod(pod(killed)), "container-oom-killed")
    assert "without OOMKilled" in evidence_text(finding)


def test_err_image_never_pull_is_reported_once_with_the_image() -> None:
    message = 'Container image "localhost/kubernaut-gateway:e2e-test" is not present with pull policy of Never'
    waiting = container(waiting_reason="ErrImageNeverPull", waiting_message=message)
    events = (
        EventFacts("Warning", "ErrImageNeverPull", message, 4),
        EventFacts("Warning", "Failed", "Error: ErrImageNeverPull", 4),
    )
    findings = diagnose_pod(pod(waiting, events=events))
    assert ids(findings) == {"image-not-loaded"}
    assert len(findings) == 1
    finding = findings[0]
    assert finding.subject.endswith("container gateway")
    assert "image localhost/kubernaut-gateway:e2e-test is not present" in evidence_text(finding)
    assert "invoke e2e.up --only images" in finding.fix


def test_create_container_config_error_names_the_missing_secret() -> None:
    waiting = container(
        name="datastorage",
        image="localhost/kubernaut-datastorage:e2e-test",
        waiting_reason="CreateContainerConfigError",
        waiting_message='secret "datastorage-db-secret" not found',
    )
    finding = only(diagnose_pod(pod(waiting)), "create-container-config-error")
    assert "missing secret datastorage-db-secret" in evidence_text(finding)
    assert finding.subject == "pod kubernaut-system/gateway-6c8d9f7b5-h4k2p container datastorage"


def test_missing_key_in_a_configmap() -> None:
    waiting = container(
        waiting_reason="CreateContainerConfigError",
        waiting_message="couldn't find key redis_addr in ConfigMap kubernaut-system/gateway-config",
    )
    finding = only(diagnose_pod(pod(waiting)), "create-container-config-error")
    assert "missing key redis_addr in ConfigMap kubernaut-system/gateway-config" in evidence_text(finding)


def test_unhealthy_event_alone_gives_a_pod_level_probe_finding() -> None:
    running = container(ready=False)
    events = (EventFacts("Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503", 9),)
    findings = diagnose_pod(pod(running, events=events))
    assert ids(findings) == {"probe-failed"}
    finding = findings[0]
    assert finding.subject == "pod kubernaut-system/gateway-6c8d9f7b5-h4k2p"
    assert "answers 503" in evidence_text(finding)
    assert "event seen 9 times" in evidence_text(finding)


def test_termination_message_is_read() -> None:
    failed = container(
        restart_count=2,
        terminated_reason="StartError",
        exit_code=128,
        termination_message='failed to create containerd task: exec: "/usr/local/bin/gateway": exec format error',
        image_arch="amd64",
    )
    finding = only(diagnose_pod(pod(failed)), "exec-format-error")
    assert "termination message: " in finding.evidence[0]
    assert "the kernel could not execute /usr/local/bin/gateway" in evidence_text(finding)


# --------------------------------------------------------------------------- API objects


def api_pod() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gateway-6c8d9f7b5-h4k2p", "namespace": "kubernaut-system", "labels": {"app": "gateway"}},
        "spec": {
            "nodeName": "gateway-e2e-worker",
            "initContainers": [{"name": "wait-for-redis", "image": "registry.access.redhat.com/ubi9/ubi-minimal:latest"}],
            "containers": [
                {"name": "gateway", "image": "localhost/kubernaut-gateway:e2e-test", "imagePullPolicy": "Never"}
            ],
        },
        "status": {
            "phase": "Running",
            "initContainerStatuses": [
                {
                    "name": "wait-for-redis",
                    "ready": True,
                    "restartCount": 0,
                    "image": "registry.access.redhat.com/ubi9/ubi-minimal:latest",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                }
            ],
            "containerStatuses": [
                {
                    "name": "gateway",
                    "ready": False,
                    "started": False,
                    "restartCount": 4,
                    "image": "localhost/kubernaut-gateway:e2e-test",
                    "imageID": "sha256:5e2b1c",
                    "state": {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": "back-off 1m20s restarting failed container=gateway pod=gateway-6c8d9f7b5-h4k2p_kubernaut-system(2b7d)",
                        }
                    },
                    "lastState": {
                        "terminated": {
                            "exitCode": 2,
                            "reason": "Error",
                            "startedAt": "2025-11-27T06:30:01Z",
                            "finishedAt": "2025-11-27T06:30:02Z",
                            "containerID": "containerd://4f1c2b3a",
                        }
                    },
                }
            ],
        },
    }


def api_events() -> list[dict]:
    return [
        {
            "kind": "Event",
            "type": "Warning",
            "reason": "BackOff",
            "message": "Back-off restarting failed container gateway in pod gateway-6c8d9f7b5-h4k2p_kubernaut-system(2b7d)",
            "count": 14,
            "involvedObject": {"kind": "Pod", "name": "gateway-6c8d9f7b5-h4k2p", "namespace": "kubernaut-system"},
        },
        {  # events.k8s.io/v1 shape
            "type": "Normal",
            "reason": "Pulled",
            "note": 'Container image "localhost/kubernaut-gateway:e2e-test" already present on machine',
            "series": {"count": 5},
            "regarding": {"kind": "Pod", "name": "gateway-6c8d9f7b5-h4k2p"},
        },
        {  # another pod's event must not leak in
            "type": "Warning",
            "reason": "FailedScheduling",
            "message": "0/2 nodes are available: 2 Insufficient memory.",
            "involvedObject": {"kind": "Pod", "name": "postgresql-0"},
        },
    ]


def test_pod_facts_from_api() -> None:
    logs = {
        ("gateway", True): (LOGS / "panic-nil-pointer.log").read_text(),
        ("gateway", False): "",
    }
    facts = pod_facts_from_api(api_pod(), "arm64", logs, api_events(), image_archs={"localhost/kubernaut-gateway:e2e-test": "arm64"})
    assert (facts.namespace, facts.name, facts.node, facts.node_arch, facts.phase) == (
        "kubernaut-system", "gateway-6c8d9f7b5-h4k2p", "gateway-e2e-worker", "arm64", "Running",
    )
    init, gateway = facts.containers
    assert init.name == "wait-for-redis" and init.terminated_reason == "Completed" and init.exit_code == 0
    assert gateway == ContainerFacts(
        name="gateway",
        image="localhost/kubernaut-gateway:e2e-test",
        ready=False,
        restart_count=4,
        waiting_reason="CrashLoopBackOff",
        waiting_message="back-off 1m20s restarting failed container=gateway pod=gateway-6c8d9f7b5-h4k2p_kubernaut-system(2b7d)",
        terminated_reason="Error",
        exit_code=2,
        termination_message=None,
        log="",
        previous_log=logs[("gateway", True)],
        image_arch="arm64",
    )
    assert facts.events == (
        EventFacts("Warning", "BackOff", api_events()[0]["message"], 14),
        EventFacts("Normal", "Pulled", api_events()[1]["note"], 5),
    )
    findings = diagnose_pod(facts)
    assert [f.signature_id for f in findings] == ["go-panic", "container-crash-loop"]
    assert "deduplication.go:142" in evidence_text(findings[0])


def test_pod_facts_from_a_pending_pod_without_statuses() -> None:
    pending = {
        "metadata": {"name": "redis-7b9c6d5f4-m8n2v", "namespace": "kubernaut-system"},
        "spec": {"containers": [{"name": "redis", "image": "redis:7-alpine"}]},
        "status": {"phase": "Pending"},
    }
    events = [{"type": "Warning", "reason": "FailedScheduling", "message": "0/2 nodes are available: 2 Insufficient memory."}]
    facts = pod_facts_from_api(pending, None, {}, events)
    assert facts.node is None
    assert facts.containers == (
        ContainerFacts("redis", "redis:7-alpine", False, 0, None, None, None, None, None),
    )
    finding = only(diagnose_pod(facts), "pod-unschedulable")
    assert finding.subject == "pod kubernaut-system/redis-7b9c6d5f4-m8n2v"
    assert "0/2 nodes are available: 2 Insufficient memory." in evidence_text(finding)


def test_current_termination_wins_over_last_state() -> None:
    terminated = api_pod()
    status = terminated["status"]["containerStatuses"][0]
    status["state"] = {"terminated": {"exitCode": 137, "reason": "OOMKilled", "message": "oom"}}
    facts = pod_facts_from_api(terminated, "amd64", {}, [])
    assert (facts.containers[1].terminated_reason, facts.containers[1].exit_code) == ("OOMKilled", 137)
    assert facts.containers[1].waiting_reason is None


# --------------------------------------------------------------------------- offline paths


def test_diagnose_path_on_a_kind_export_bundle(tmp_path: Path) -> None:
    pods = tmp_path / "gateway-e2e-worker" / "pods"
    gateway = pods / "kubernaut-system_gateway-6c8d9f7b5-h4k2p_2b7d" / "gateway"
    gateway.mkdir(parents=True)
    (gateway / "0.log").write_text((LOGS / "lfstack-push-amd64-on-arm64.log").read_text())
    (gateway / "1.log.20251127-063000.gz").write_bytes(gzip.compress((LOGS / "panic-nil-pointer.log").read_bytes()))
    datastorage = pods / "kubernaut-system_datastorage-5f7c9d8b4-qk2wz_9a1f" / "datastorage"
    datastorage.mkdir(parents=True)
    (datastorage / "0.log").write_text((LOGS / "healthy-datastorage.log").read_text())
    (tmp_path / "gateway-e2e-worker" / "kubelet.log").write_text((LOGS / "kubelet-crashloop.log").read_text())
    (tmp_path / "gateway-e2e-worker" / "containerd.sock.bin").write_bytes(b"\x00\x01panic: nope\n")
    (tmp_path / "gateway-e2e-worker" / "core").write_bytes(b"ELF\x00\x00fatal error: lfstack.push\n")
    (tmp_path / "kind-version.txt").write_text("kind v0.24.0 go1.22.6 linux/arm64\n")

    findings = diagnose_path(tmp_path)
    by_subject = {(f.subject, f.signature_id) for f in findings}
    assert by_subject == {
        ("gateway-e2e-worker/pods/kubernaut-system_gateway-6c8d9f7b5-h4k2p_2b7d/gateway/0.log", "go-lfstack-amd64-emulated"),
        ("gateway-e2e-worker/pods/kubernaut-system_gateway-6c8d9f7b5-h4k2p_2b7d/gateway/1.log.20251127-063000.gz", "go-panic"),
        ("gateway-e2e-worker/kubelet.log", "container-crash-loop"),
    }
    assert [f.severity for f in findings] == ["critical", "error", "error"]


def test_diagnose_path_on_the_fixture_directory() -> None:
    findings = diagnose_path(LOGS)
    subjects = {f.subject for f in findings}
    assert subjects == set(SIGNATURE_CASES)
    assert not any(s.startswith("healthy-") for s in subjects)
    assert findings == sort_findings(findings)


def test_diagnose_path_on_a_single_file() -> None:
    path = LOGS / "qemu-uncaught-target-signal.log"
    findings = diagnose_path(path)
    assert [(f.subject, f.signature_id) for f in findings] == [(str(path), "qemu-uncaught-target-signal")]


def test_huge_files_are_read_from_the_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagnosis, "MAX_FILE_BYTES", 4096)
    filler = "".join(f'level=info msg="tick" n={i}\n' for i in range(1000))
    (tmp_path / "tail.log").write_text(filler + "panic: boom\n")
    (tmp_path / "head.log").write_text("panic: long ago\n" + filler)
    assert [f.subject for f in diagnose_path(tmp_path)] == ["tail.log"]


# --------------------------------------------------------------------------- ordering and output


def make(signature_id: str, severity: str) -> Finding:
    return Finding(signature_id, signature_id, severity, "s", "m", (), "f")


def test_sort_findings_most_severe_first_and_stable() -> None:
    findings = [make("w1", "warning"), make("e1", "error"), make("c1", "critical"), make("e2", "error"), make("c2", "critical")]
    assert [f.signature_id for f in sort_findings(findings)] == ["c1", "c2", "e1", "e2", "w1"]


def test_finding_to_dict_is_json_ready() -> None:
    finding = match_text((LOGS / "panic-nil-pointer.log").read_text(), "gateway.log")[0]
    data = finding.to_dict()
    assert set(data) == {"signature_id", "title", "severity", "subject", "cause", "meaning", "evidence", "fix",
                         "depends_on"}
    assert data["cause"].startswith("github.com/jordigilh/kubernaut/pkg/gateway/processing.(*DeduplicationService).Check")
    assert json.loads(json.dumps(data))["evidence"] == list(finding.evidence)



# --------------------------------------------------------------------------- the corpus


def _score_module():  # type: ignore[no-untyped-def]
    """bench/diagnosis_score.py: the one home of what "right" means for a corpus case."""
    spec = importlib.util.spec_from_file_location("diagnosis_score", REPO / "bench" / "diagnosis_score.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


SCORE = _score_module()
MANIFEST = SCORE.load_manifest()


@pytest.mark.parametrize("rel", sorted(MANIFEST["crash"]))
def test_corpus_crash_log(rel: str) -> None:
    assert SCORE.check_crash(rel, MANIFEST["crash"][rel]) == []


@pytest.mark.parametrize("rel", sorted(MANIFEST["healthy"]))
def test_corpus_healthy_log_has_no_problem(rel: str) -> None:
    assert SCORE.check_healthy(rel, MANIFEST["healthy"][rel]) == []


@pytest.mark.parametrize("rel", sorted(MANIFEST["bundles"]))
def test_corpus_bundle_ranks_causes_first(rel: str) -> None:
    assert SCORE.check_bundle(rel, MANIFEST["bundles"][rel]) == []


@pytest.mark.parametrize("rel", sorted(MANIFEST["heldout"]))
def test_corpus_heldout_log_is_caught_by_the_generic_finding(rel: str) -> None:
    assert SCORE.check_heldout(rel, MANIFEST["heldout"][rel]) == []


def test_corpus_is_big_enough_cited_and_fully_listed() -> None:
    families = {s.id: s.family for s in load_signatures()}
    assert len(MANIFEST["crash"]) >= 60 and len(MANIFEST["healthy"]) >= 10 and len(MANIFEST["heldout"]) >= 5
    per_family: dict[str, int] = {}
    for case in MANIFEST["crash"].values():
        per_family[families[case["expect"]]] = per_family.get(families[case["expect"]], 0) + 1
    assert set(per_family) == FAMILIES and min(per_family.values()) >= 5, per_family
    listed = {*MANIFEST["crash"], *MANIFEST["healthy"], *MANIFEST["heldout"]}
    on_disk = {p.relative_to(CORPUS).as_posix() for p in CORPUS.glob("*/*.log")}
    assert listed == on_disk
    for path in CORPUS.rglob("*.log"):
        assert path.read_text().startswith("# source: "), path


def test_every_heldout_case_expects_the_generic_finding_and_quotes_its_fatal_line() -> None:
    generic = {"unrecognised-crash", "go-panic", "go-fatal-error"}  # the fallback and the Go catch-alls
    for rel, case in MANIFEST["heldout"].items():
        assert case.get("expect", "unrecognised-crash") in generic, rel
        assert any(fragment.startswith("line ") for fragment in case["evidence"]), rel


def test_score_script_prints_each_family_and_meets_its_goals() -> None:
    result = subprocess.run([sys.executable, str(REPO / "bench" / "diagnosis_score.py")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for family in FAMILIES:
        assert f"\n{family} " in result.stdout
    assert "false problems: 0" in result.stdout


def test_the_whole_corpus_is_diagnosed_quickly() -> None:
    started = time.perf_counter()
    for path in CORPUS.rglob("*.log"):
        match_text(path.read_text(), path.name)
    assert time.perf_counter() - started < 5  # generous: the score script prints the real figure


def test_a_big_noisy_log_is_diagnosed_quickly() -> None:
    noise = "".join(
        f'{{"level":"info","ts":"2025-11-27T10:00:{i % 60:02d}.000Z","logger":"gateway","msg":"request completed",'
        f'"path":"/api/v1/signals/prometheus","status":201,"error":null,"attempt":{i}}}\n' for i in range(60000))
    started = time.perf_counter()
    findings = match_text(noise + "panic: boom\n", "big.log")
    assert time.perf_counter() - started < 10
    assert [f.signature_id for f in findings] == ["go-panic"]


ADVERSARIAL = [
    ch * 20000 for ch in ("a", " ", '"', "\\", ":", "/", "0", "x", ".", "-", "\t")
] + [
    "dial tcp " + "1." * 5000 + ":", "lookup " + "a." * 8000, 'User \\"' + "a" * 10000,
    "config " + "a " * 8000 + "is", "Key: '" + "a." * 8000, "yaml: line 1: " + "\\" * 10000,
    "exec: " + '"' * 10000, "x509: certificate is valid for " + "a, " * 6000,
]


def test_no_pattern_backtracks_catastrophically() -> None:
    kb = diagnosis.load_knowledge()
    regexes = [p.regex for s in kb.signatures for p in s.patterns]
    regexes += [c.pattern.regex for c in kb.crash_lines]
    regexes += [kb.recovery_dependency, kb.recovery_service, kb.recovery_never, kb.error_lines, kb.payload]
    regexes += [r.search for s in kb.signatures for r in s.evidence if r.search is not None]
    for line in ADVERSARIAL:
        for regex in regexes:
            started = time.perf_counter()
            regex.search(line)
            assert time.perf_counter() - started < 0.5, (regex.pattern, line[:40])


# --------------------------------------------------------------------------- engine rules


def test_a_more_specific_signature_supersedes_a_general_one_on_the_same_line() -> None:
    line = ('Internal error occurred: failed calling webhook "v.kb.io": failed to call webhook: Post '
            '"https://w.ns.svc:443/validate?timeout=10s": dial tcp 10.96.3.3:443: connect: connection refused')
    assert ids(match_text(line, "x")) == {"admission-webhook-failed"}
    assert ids(match_text("dial tcp 10.96.3.3:443: connect: connection refused", "x")) == {"dependency-unreachable"}


REFUSED = '{"level":"error","msg":"redis ping failed","error":"dial tcp 10.96.2.3:6379: connect: connection refused"}'


def test_a_recovered_transient_error_is_only_a_note() -> None:
    text = f"{REFUSED}\n{REFUSED}\n" + '{"level":"info","msg":"redis connected","addr":"redis:6379"}\n'
    finding = only(match_text(text, "gateway.log"), "dependency-unreachable")
    assert finding.severity == "info" and not diagnosis.is_problem(finding)
    assert "recovered: line 3: " in evidence_text(finding)
    assert "then it recovered" in finding.cause


def test_an_error_after_the_recovery_is_a_problem_again() -> None:
    text = f"{REFUSED}\n" + '{"level":"info","msg":"redis connected"}\n' + f"{REFUSED}\n"
    assert only(match_text(text, "x"), "dependency-unreachable").severity == "error"


@pytest.mark.parametrize("later", [
    '{"level":"info","msg":"connected to postgresql"}',  # another dependency
    '{"level":"warn","msg":"redis not connected yet, retrying"}',  # says it is still failing
    '{"level":"info","msg":"waiting for redis to be ready"}',
])
def test_recovery_must_be_of_the_same_dependency_and_say_it_works(later: str) -> None:
    assert only(match_text(f"{REFUSED}\n{later}\n", "x"), "dependency-unreachable").severity == "error"


def test_a_service_level_ready_line_counts_as_recovery() -> None:
    text = f'{REFUSED}\n{{"level":"info","msg":"Gateway server started","addr":":8080"}}\n'
    assert only(match_text(text, "x"), "dependency-unreachable").severity == "info"


def test_failure_text_inside_payload_fields_of_a_structured_log_is_not_evidence() -> None:
    payload = ('{"level":"info","msg":"received alert","description":"fatal error: concurrent map writes; '
               'exec /app: exec format error; dial tcp 10.0.0.1:5432: connect: connection refused"}')
    assert match_text(payload, "gateway.log") == []
    own = '{"level":"error","msg":"start failed","error":"exec /app: exec format error"}'
    assert ids(match_text(own, "gateway.log")) == {"exec-format-error"}
    # Outside a structured log line, `message` is real evidence (pod status JSON).
    status = '{"terminated":{"exitCode":128,"message":"exec: \\"/gw\\": executable file not found in $PATH: unknown"}}'
    assert ids(match_text(status, "status.json")) == {"entrypoint-not-found"}


@pytest.mark.parametrize(("text", "fatal_line_no", "caller"), [
    ('{"level":"info","msg":"starting"}\n{"level":"fatal","ts":1.7e9,"caller":"gateway/main.go:88",'
     '"msg":"cannot start","error":"boom"}', 2, "caller: gateway/main.go:88"),
    ("2025-11-27T06:00:00.000Z\tINFO\tgateway\tstarting\n2025-11-27T06:00:00.100Z\tFATAL\tgateway\t"
     "gateway/main.go:91\tcannot start\t{\"error\": \"boom\"}", 2, "caller: gateway/main.go:91"),
    ("I1127 06:00:00.000000       1 main.go:40] starting\nF1127 06:00:01.000000       1 main.go:52] cannot start: boom",
     2, "caller: main.go:52"),
    ('time="2025-11-27T06:00:00Z" level=fatal msg="cannot start" error=boom', 1, None),
    ("exec /usr/local/bin/gateway: input/output error", 1, None),
    ("Traceback (most recent call last):\n  File \"/app/x.py\", line 3, in <module>\nKeyError: 'x'", 1, None),
])
def test_an_unrecognised_crash_line_still_gives_a_finding(text: str, fatal_line_no: int, caller: str | None) -> None:
    findings = match_text(text, "svc.log")
    assert [f.signature_id for f in findings] == ["unrecognised-crash"]
    finding = findings[0]
    assert diagnosis.is_problem(finding)
    fatal = text.splitlines()[fatal_line_no - 1].strip()
    assert finding.evidence[0] == f"line {fatal_line_no}: {fatal}"
    assert finding.cause.startswith("it crashed with: ")
    assert finding.fix.startswith("unrecognised crash: ")
    if caller:
        assert caller in finding.evidence


def test_the_generic_finding_names_the_first_application_frame_of_a_go_trace() -> None:
    text = ("panic: something unusual\n\ngoroutine 1 [running]:\nsync.(*Once).doSlow(0x0)\n"
            "\t/usr/local/go/src/sync/once.go:78 +0xab\nmain.main()\n\t/src/cmd/x/main.go:12 +0x1d\n")
    finding = match_text(text, "x")[0]
    assert "first non-runtime frame: main.main at /src/cmd/x/main.go:12" in finding.evidence


def test_no_generic_finding_when_a_signature_explains_the_crash() -> None:
    text = f"{REFUSED}\n" + '{"level":"fatal","msg":"cannot start without redis"}'
    assert ids(match_text(text, "x")) == {"dependency-unreachable"}


def test_a_container_that_died_without_any_fatal_line_still_gets_a_finding() -> None:
    previous = ('{"level":"info","msg":"starting"}\n{"level":"error","caller":"datastorage/main.go:98",'
                '"msg":"Failed to create server","error":"something nobody anticipated"}\n')
    crashed = container(name="datastorage", restart_count=3, waiting_reason="CrashLoopBackOff",
                        terminated_reason="Error", exit_code=1, previous_log=previous)
    findings = diagnose_pod(pod(crashed))
    assert [f.signature_id for f in findings] == ["unrecognised-crash", "container-crash-loop"]
    generic = findings[0]
    assert generic.severity == "error"
    assert evidence_text(generic).startswith("last error line, previous log line 2: ")
    assert "caller: datastorage/main.go:98" in generic.evidence
    assert "container datastorage: last exit code 1 (Error)" in generic.evidence
    assert "restarted 3 times" in generic.evidence


def test_a_container_that_cannot_start_is_critical_even_when_unrecognised() -> None:
    message = 'failed to create containerd task: OCI runtime create failed: unable to start container process: odd'
    stuck = container(waiting_reason="RunContainerError", waiting_message=message)
    finding = only(diagnose_pod(pod(stuck)), "unrecognised-crash")
    assert finding.severity == "critical"
    assert "waiting message: " in finding.evidence[0] and "unable to start container process" in finding.evidence[0]


def test_a_restart_explained_by_a_recovered_dependency_is_only_a_note() -> None:
    previous = f"{REFUSED}\n" + '{"level":"error","msg":"Failed to create Gateway server","error":"redis unavailable"}\n'
    ready = container(ready=True, restart_count=2, terminated_reason="Error", exit_code=1, previous_log=previous,
                      log='{"level":"info","msg":"redis connected"}\n')
    findings = diagnose_pod(pod(ready))
    assert findings and not any(diagnosis.is_problem(f) for f in findings)
    assert "ready now" in findings[0].cause


def test_an_unexplained_restart_of_a_ready_container_is_a_warning() -> None:
    returned = container(ready=True, restart_count=1, terminated_reason="Completed", exit_code=0)
    assert only(diagnose_pod(pod(returned)), "unrecognised-crash").severity == "warning"
    # A non-zero exit is a crash even if the next instance is ready: it may well happen again.
    crashed = container(ready=True, restart_count=1, terminated_reason="Error", exit_code=2)
    assert only(diagnose_pod(pod(crashed)), "unrecognised-crash").severity == "error"


def mk(signature_id: str, severity: str, subject: str, depends_on: tuple[str, ...] = (), symptom: bool = False) -> Finding:
    return Finding(signature_id, signature_id, severity, subject, "m", (), "f", depends_on=depends_on, symptom=symptom)


def test_a_dependency_that_never_came_up_outranks_what_it_caused() -> None:
    found = [
        mk("dependency-unreachable", "error", "pod ns/gateway-1 container gateway", ("datastorage",)),
        mk("go-lfstack-amd64-emulated", "critical", "pod ns/other-1 container other"),
        mk("dependency-unreachable", "error", "pod ns/datastorage-1 container datastorage", ("postgresql",)),
        mk("container-crash-loop", "error", "pod ns/datastorage-1 container datastorage", symptom=True),
        mk("dependency-not-ready", "info", "pod ns/datastorage-1 container datastorage", ("redis",)),
        mk("file-permission-denied", "warning", "pod ns/postgresql-0 container postgresql"),
    ]
    order = [(f.signature_id, f.subject.split()[1]) for f in sort_findings(found)]
    assert order == [
        ("go-lfstack-amd64-emulated", "ns/other-1"),
        ("file-permission-denied", "ns/postgresql-0"),
        ("dependency-unreachable", "ns/datastorage-1"),
        ("container-crash-loop", "ns/datastorage-1"),
        ("dependency-unreachable", "ns/gateway-1"),
        ("dependency-not-ready", "ns/datastorage-1"),
    ]


def test_component_of_uses_the_most_specific_part_of_the_subject() -> None:
    assert diagnosis.component_of("gateway-e2e-worker/pods/ns_datastorage-5f_uid/datastorage/0.log") == "datastorage"
    assert diagnosis.component_of("pod kubernaut-system/postgresql-0 container postgresql") == "postgresql"
    assert diagnosis.component_of("pod ns/gateway-6c container gateway") == "gateway"
    assert diagnosis.component_of("build-gateway.log") == "gateway"
    assert diagnosis.component_of("kind-version.txt") is None


def test_knowledge_base_schema_errors_are_named(tmp_path: Path) -> None:
    base = "    title: t\n    severity: error\n    patterns: ['abc']\n    meaning: m\n    fix: f\n"
    bad = tmp_path / "kb.yaml"
    bad.write_text(f"signatures:\n  - id: x\n    supersedes: [nope]\n{base}")
    with pytest.raises(diagnosis.SignatureError, match="supersedes unknown ids"):
        diagnosis.load_knowledge(bad)
    bad.write_text(f"colours: []\nsignatures:\n  - id: x\n{base}")
    with pytest.raises(diagnosis.SignatureError, match="unknown top-level keys"):
        diagnosis.load_knowledge(bad)
    bad.write_text(f"crash_lines: [{{id: c, what: w, severity: info, pattern: x}}]\nsignatures:\n  - id: x\n{base}")
    with pytest.raises(diagnosis.SignatureError, match="crash line c"):
        diagnosis.load_knowledge(bad)
    bad.write_text(f"signatures:\n  - id: x\n    cause: 'a {{b'\n{base}")
    with pytest.raises(diagnosis.SignatureError, match="bad template"):
        diagnosis.load_knowledge(bad)
