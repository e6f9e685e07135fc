"""Tests for kubernaut_e2e/diagnosis.py and the knowledge base in kubernaut_e2e/signatures.yaml."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

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
        assert signature.severity in ("critical", "error", "warning")
        assert signature.meaning and signature.fix and signature.title


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
        {"go-fatal-error"},
        ["concurrent map writes", "metrics.(*Recorder).Observe", "recorder.go:57"],
        ["mutex"],
    ),
    "datastorage-postgres-refused.log": (
        {"dependency-unreachable"},
        ["cannot reach 10.96.118.40:5432: connection refused", "DNS lookup of redis failed: no such host", "PostgreSQL"],
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
    assert set(data) == {"signature_id", "title", "severity", "subject", "meaning", "evidence", "fix"}
    assert json.loads(json.dumps(data))["evidence"] == list(finding.evidence)

