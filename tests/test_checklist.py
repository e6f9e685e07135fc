from __future__ import annotations

from kubernaut_e2e.checklist import checklist
from kubernaut_e2e.scheduler import DONE, FAILED, Noted, StepRecord


def _rec(name, start, end, status=DONE, result=None):  # type: ignore[no-untyped-def]
    return StepRecord(name, (), status, start, end, result=result)


HEALTHY = Noted("ok", {"gateway_pod_ready": True, "gateway_pod": "gateway-1",
                       "checks": {"gateway": {"url": "http://localhost:1/health", "ok": True, "outcome": "HTTP 200"}}})


def test_all_pass_when_measured_so():
    records = {"build-gateway": _rec("build-gateway", 0, 10), "build-datastorage": _rec("build-datastorage", 1, 12),
               "health": _rec("health", 12, 13, result=HEALTHY)}
    checks = checklist(records, budget=360)
    assert all(c.passed for c in checks), checks
    assert next(c for c in checks if "parallel" in c.name).detail == "overlapped 9.0s"


def test_sequential_builds_fail_the_parallel_check_and_budget_is_enforced():
    records = {"build-gateway": _rec("build-gateway", 0, 10), "build-datastorage": _rec("build-datastorage", 10, 20),
               "health": _rec("health", 20, 400, result=HEALTHY)}
    by_name = {c.name: c for c in checklist(records, budget=360)}
    assert not by_name["image builds ran in parallel"].passed
    assert not by_name["total time within budget (360s)"].passed


def test_failed_health_and_missing_pod():
    records = {"build-gateway": _rec("build-gateway", 0, 1), "build-datastorage": _rec("build-datastorage", 0, 1),
               "health": _rec("health", 1, 2, status=FAILED)}
    by_name = {c.name: c for c in checklist(records, budget=360)}
    assert not by_name["health check passed"].passed
    assert not by_name["gateway pod Running and ready"].passed
    assert not by_name["no step errors"].passed and "health" in by_name["no step errors"].detail
