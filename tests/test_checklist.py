from __future__ import annotations

from kubernaut_e2e.checklist import checklist
from kubernaut_e2e.scheduler import DONE, FAILED, Noted, StepRecord


def _rec(name, start, end, status=DONE, result=None):  # type: ignore[no-untyped-def]
    return StepRecord(name, (), status, start, end, result=result)


HEALTHY = Noted("ok", {"pods": {"gateway": "gateway-1", "datastorage": "datastorage-1"},
                       "checks": {"gateway": {"url": "http://127.0.0.1:1/readyz", "ok": True, "outcome": "HTTP 200"}}})


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
    assert not by_name["every service has a Running, ready pod"].passed
    assert not by_name["no step errors"].passed and "health" in by_name["no step errors"].detail


def test_a_service_without_a_ready_pod_is_named():
    health = Noted("ok", {"pods": {"gateway": None, "datastorage": "ds-1"}, "checks": {}})
    records = {"health": _rec("health", 0, 1, result=health)}
    check = {c.name: c for c in checklist(records, budget=360)}["every service has a Running, ready pod"]
    assert not check.passed and check.detail == "not ready: gateway"


def test_one_build_has_no_parallel_line_and_three_builds_need_one_overlap():
    assert all("parallel" not in c.name for c in checklist({"build-a": _rec("build-a", 0, 1)}, budget=9))
    records = {f"build-{n}": _rec(f"build-{n}", s, e) for n, s, e in (("a", 0, 1), ("b", 1, 2), ("c", 1.5, 3))}
    check = {c.name: c for c in checklist(records, budget=9)}["image builds ran in parallel"]
    assert check.passed and check.detail == "overlapped 0.5s"
