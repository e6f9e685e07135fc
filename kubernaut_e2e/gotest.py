"""Parse a `go test -json` (test2json) event stream into counts, live progress and JUnit XML.

The Gateway E2E suite is run as `go test ./test/e2e/gateway/... -v -json` (or with ginkgo). Its
pass/fail verdict and counts are read from the events, never guessed from the exit code alone.

Decisions (documented here because callers and the JUnit report depend on them):

* Every test event name is its own case: a subtest `TestX/sub` is a `TestCase` next to its parent
  `TestX`, as `go test` and gotestsum count them. A failing subtest also fails its parent, so
  both are counted in `failed`.
* A test that started (`run`) but never reached pass/fail/skip -- the suite was killed or timed
  out -- has status "unknown", is counted in `failed` and is named in `SuiteResult.interrupted`.
* Ginkgo runs all its specs inside one Go test (`TestGatewayE2E`), so the test counts say little
  about specs. When Ginkgo's summary line (`SUCCESS! -- 5 Passed | 0 Failed | 0 Pending |
  0 Skipped`) appears in the output -- of the JSON events, or in non-JSON lines when the suite ran
  under the ginkgo CLI -- its counts are exposed as `SuiteResult.specs` (summed over suites).
* Lines that are not test2json events (go's `# pkg` build headers, warnings, ginkgo CLI output)
  never break parsing: they are kept, in order, in `SuiteResult.non_json`.
* `build_failures` holds import paths (the ` [pkg.test]` suffix removed) whose build failed,
  seen either as a `build-fail` event (go >= 1.24) or as a package failing with `[build failed]`.
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

Status = Literal["pass", "fail", "skip", "unknown"]

#: test2json actions that end a test or a package.
_TERMINAL = ("pass", "fail", "skip")

#: ANSI escape sequences (Ginkgo colours its output even under `go test`): CSI, OSC, and the
#: two-character ESC forms. Removed before matching text and before writing XML.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")

#: Characters XML 1.0 forbids (everything outside Char production, lone surrogates included).
_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

#: Ginkgo v2's end-of-suite line, after ANSI stripping. Flaked/Repeated appear only when non-zero.
_GINKGO_SUMMARY = re.compile(
    r"(?:SUCCESS!|FAIL!).*?--\s*(\d+) Passed \| (\d+) Failed"
    r"(?: \| \d+ Flaked)?(?: \| \d+ Repeated)? \| (\d+) Pending \| (\d+) Skipped")

#: A `t.Log`/`t.Error` line (`    file_test.go:42: message`) or a Ginkgo failure heading.
_MESSAGE = re.compile(
    r"^\s*(?:\S+\.go:\d+: (?P<go>.+)|(?P<ginkgo>\[(?:FAIL|PANICKED|TIMEDOUT)\].*))$")

#: Names of the synthetic JUnit cases that make a package-level failure visible to CI.
BUILD_FAILED_CASE = "[build failed]"
PACKAGE_FAILED_CASE = "[package failed]"
PACKAGE_INTERRUPTED_CASE = "[package interrupted]"


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest test class, despite the name

    package: str
    name: str
    status: Status
    elapsed: float
    output: str

    @property
    def is_subtest(self) -> bool:
        return "/" in self.name


@dataclass(frozen=True)
class PackageResult:
    name: str
    status: Status
    elapsed: float
    #: Output not attributed to any test (`ok  pkg 1.2s`, `FAIL pkg [build failed]`, panics
    #: outside tests, `[no test files]`).
    output: str


class SpecCounts(NamedTuple):
    """Ginkgo's own spec counts; a tuple, equal to `(passed, failed, pending, skipped)`."""

    passed: int
    failed: int
    pending: int
    skipped: int


@dataclass(frozen=True)
class SuiteResult:
    cases: tuple[TestCase, ...] = ()
    packages: tuple[PackageResult, ...] = ()
    build_failures: tuple[str, ...] = ()
    non_json: tuple[str, ...] = ()
    specs: SpecCounts | None = None
    #: (import path, compiler output) per failed build; `dict(result.build_output)` to look up.
    build_output: tuple[tuple[str, str], ...] = ()

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cases if c.status == "pass")

    @property
    def failed(self) -> int:
        # An unfinished test is a failure: the suite did not prove it passes.
        return sum(1 for c in self.cases if c.status in ("fail", "unknown"))

    @property
    def skipped(self) -> int:
        return sum(1 for c in self.cases if c.status == "skip")

    @property
    def interrupted(self) -> tuple[str, ...]:
        """Names of the tests that started but never finished (killed or timed out)."""
        return tuple(c.name for c in self.cases if c.status == "unknown")

    @property
    def failed_packages(self) -> tuple[str, ...]:
        """Packages that failed or never finished, with or without a failing test."""
        return tuple(p.name for p in self.packages if p.status in ("fail", "unknown"))

    @property
    def ok(self) -> bool:
        """True only if something ran and nothing failed: tests, packages, builds and specs."""
        if self.failed or self.build_failures or self.failed_packages:
            return False
        if self.specs is not None:
            # A suite where every spec was filtered out ("Ran 0 of 7 Specs") proves nothing.
            return self.specs.failed == 0 and self.specs.passed > 0
        return self.passed > 0


@dataclass(frozen=True)
class ProgressEvent:
    """A test or package finished (pass/fail/skip), or a build failed (`build-fail`)."""

    action: str
    package: str
    test: str | None
    elapsed: float


def progress_line(event: ProgressEvent) -> str:
    """One human line for live progress, e.g. `PASS TestGatewayE2E (12.34s)`."""
    if event.action == "build-fail":
        return f"FAIL {event.package} [build failed]"
    what = event.test if event.test is not None else event.package
    return f"{event.action.upper():<4} {what} ({event.elapsed:.2f}s)"


@dataclass
class _Open:
    """Mutable state of a test or package while the stream is read."""

    package: str
    name: str
    status: Status | None = None
    elapsed: float = 0.0
    started: datetime | None = None
    output: list[str] = field(default_factory=list)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _seconds(value: Any) -> float:
    # A malformed Elapsed must not abort the parse of a 30-minute suite's report.
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _strip_build_suffix(import_path: str) -> str:
    # go names a test build "pkg [pkg.test]"; report the package itself.
    return import_path.split(" [", 1)[0]


class EventParser:
    """Incremental test2json parser: `feed` one line at a time, `result()` whenever needed."""

    def __init__(self) -> None:
        self._cases: list[_Open] = []
        self._open_cases: dict[tuple[str, str], _Open] = {}
        self._packages: dict[str, _Open] = {}
        self._build_failures: list[str] = []
        self._build_output: dict[str, list[str]] = {}
        self._non_json: list[str] = []
        self._last_time: datetime | None = None

    def feed(self, line: str) -> ProgressEvent | None:
        text = line.rstrip("\r\n")
        event = self._decode(text)
        if event is None:
            if text.strip():
                self._non_json.append(text)
            return None
        when = _parse_time(event.get("Time"))
        if when is not None:
            self._last_time = when
        action = event["Action"]
        if action in ("build-output", "build-fail"):
            return self._build_event(action, event)
        package = str(event.get("Package") or "")
        test = event.get("Test")
        if not package and not test:
            # Not tied to any package (test2json always names one): keep the text, drop the rest.
            output = str(event.get("Output") or "").rstrip("\r\n")
            if output.strip():
                self._non_json.append(output)
            return None
        pkg = self._package(package, when)
        if isinstance(test, str) and test:
            return self._test_event(action, pkg, test, event, when)
        if action in ("output", "bench"):
            pkg.output.append(str(event.get("Output") or ""))
        elif action in _TERMINAL:
            pkg.status = action  # type: ignore[assignment]
            pkg.elapsed = _seconds(event.get("Elapsed"))
            failed_build = event.get("FailedBuild")
            if isinstance(failed_build, str) and failed_build:
                self._add_build_failure(failed_build)
            elif action == "fail" and "[build failed]" in "".join(pkg.output):
                # go < 1.24: no build-fail event, only this line in the package output.
                self._add_build_failure(package)
            return ProgressEvent(action, package, None, pkg.elapsed)
        return None

    def result(self) -> SuiteResult:
        """A snapshot; unfinished tests and packages are reported as "unknown"."""
        cases = tuple(TestCase(c.package, c.name, c.status or "unknown", self._elapsed(c),
                               "".join(c.output)) for c in self._cases)
        packages = tuple(PackageResult(p.name, p.status or "unknown", self._elapsed(p),
                                       "".join(p.output)) for p in self._packages.values())
        texts = [*(p.output for p in packages), *(c.output for c in cases),
                 "\n".join(self._non_json)]
        return SuiteResult(
            cases=cases,
            packages=packages,
            build_failures=tuple(self._build_failures),
            non_json=tuple(self._non_json),
            specs=ginkgo_specs(texts),
            build_output=tuple((k, "".join(v)) for k, v in self._build_output.items()),
        )

    @staticmethod
    def _decode(text: str) -> dict[str, Any] | None:
        if not text.startswith("{"):
            return None
        try:
            event = json.loads(text)
        except ValueError:
            return None
        # Valid JSON that is not a test2json event (no Action) is treated as plain output.
        if not isinstance(event, dict) or not isinstance(event.get("Action"), str):
            return None
        return event

    def _package(self, name: str, when: datetime | None) -> _Open:
        pkg = self._packages.get(name)
        if pkg is None:
            pkg = self._packages[name] = _Open(name, name, started=when)
        return pkg

    def _test_event(self, action: str, pkg: _Open, test: str, event: dict[str, Any],
                    when: datetime | None) -> ProgressEvent | None:
        key = (pkg.name, test)
        case = self._open_cases.get(key)
        # A second `run` of a finished test (-count=2, ginkgo retries) is a new case.
        if case is None or (action == "run" and case.status is not None):
            case = _Open(pkg.name, test, started=when)
            self._open_cases[key] = case
            self._cases.append(case)
        if action in ("output", "bench"):  # bench events carry log output too
            case.output.append(str(event.get("Output") or ""))
        elif action in _TERMINAL:
            case.status = action  # type: ignore[assignment]
            case.elapsed = _seconds(event.get("Elapsed"))
            return ProgressEvent(action, pkg.name, test, case.elapsed)
        return None

    def _build_event(self, action: str, event: dict[str, Any]) -> ProgressEvent | None:
        path = _strip_build_suffix(str(event.get("ImportPath") or event.get("Package") or ""))
        if action == "build-output":
            self._build_output.setdefault(path, []).append(str(event.get("Output") or ""))
            return None
        self._add_build_failure(path)
        return ProgressEvent(action, path, None, 0.0)

    def _add_build_failure(self, import_path: str) -> None:
        path = _strip_build_suffix(import_path)
        if path not in self._build_failures:
            self._build_failures.append(path)

    def _elapsed(self, item: _Open) -> float:
        if item.status is not None:
            return item.elapsed
        # Unfinished: the best measure is how long it ran before the stream stopped.
        if item.started is None or self._last_time is None:
            return 0.0
        try:
            return max(0.0, (self._last_time - item.started).total_seconds())
        except TypeError:  # one stamp had a zone, the other not: no trustworthy duration
            return 0.0


def parse_stream(lines: Iterable[str]) -> SuiteResult:
    parser = EventParser()
    for line in lines:
        parser.feed(line)
    return parser.result()


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def xml_safe(text: str) -> str:
    """Text that can go into an XML 1.0 document: no ANSI escapes, no forbidden characters."""
    return _XML_ILLEGAL.sub("", strip_ansi(text))


def ginkgo_specs(texts: Iterable[str]) -> SpecCounts | None:
    """Sum every Ginkgo summary line found in `texts`; None if there is none."""
    found: list[SpecCounts] = []
    for text in texts:
        for line in strip_ansi(text).splitlines():
            match = _GINKGO_SUMMARY.search(line)
            if match:
                found.append(SpecCounts(*(int(g) for g in match.groups())))
    if not found:
        return None
    return SpecCounts(*(sum(column) for column in zip(*found)))


def _message(output: str, default: str) -> str:
    for line in strip_ansi(output).splitlines():
        match = _MESSAGE.match(line)
        if match:
            return (match.group("go") or match.group("ginkgo")).strip()[:300]
    return default


@dataclass
class _Suite:
    name: str
    time: float = 0.0
    output: str = ""
    cases: list[ET.Element] = field(default_factory=list)
    failures: int = 0
    skipped: int = 0


def _case_element(classname: str, name: str, elapsed: float) -> ET.Element:
    return ET.Element("testcase", classname=xml_safe(classname), name=xml_safe(name),
                      time=f"{elapsed:.3f}")


def _failure(case: ET.Element, message: str, body: str, kind: str | None = None) -> None:
    failure = ET.SubElement(case, "failure", message=xml_safe(message))
    if kind:
        failure.set("type", kind)
    failure.text = xml_safe(body)


def _iter_suites(result: SuiteResult) -> Iterator[_Suite]:
    suites: dict[str, _Suite] = {}

    def suite(name: str) -> _Suite:
        if name not in suites:
            suites[name] = _Suite(name)
        return suites[name]

    for pkg in result.packages:
        s = suite(pkg.name)
        s.time, s.output = pkg.elapsed, pkg.output
    for c in result.cases:
        s = suite(c.package)
        el = _case_element(c.package, c.name, c.elapsed)
        if c.status == "fail":
            _failure(el, _message(c.output, "Failed"), c.output)
            s.failures += 1
        elif c.status == "unknown":
            _failure(el, "test did not finish (suite interrupted or timed out)", c.output,
                     "interrupted")
            s.failures += 1
        else:
            if c.status == "skip":
                ET.SubElement(el, "skipped", message=xml_safe(_message(c.output, "skipped")))
                s.skipped += 1
            if c.output:
                ET.SubElement(el, "system-out").text = xml_safe(c.output)
        s.cases.append(el)
    # Failures outside any test would be invisible in JUnit: give each its own failing case.
    build_output = dict(result.build_output)
    for path in result.build_failures:
        s = suite(path)
        el = _case_element(path, BUILD_FAILED_CASE, 0.0)
        _failure(el, f"build failed: {path}", build_output.get(path, "") or s.output, "build")
        s.cases.append(el)
        s.failures += 1
    for pkg in result.packages:
        s = suite(pkg.name)
        if pkg.status not in ("fail", "unknown") or s.failures:
            continue
        name = PACKAGE_FAILED_CASE if pkg.status == "fail" else PACKAGE_INTERRUPTED_CASE
        el = _case_element(pkg.name, name, pkg.elapsed)
        what = "failed" if pkg.status == "fail" else "did not finish"
        _failure(el, f"package {pkg.name}: {what}", pkg.output, "package")
        s.cases.append(el)
        s.failures += 1
    yield from suites.values()


def junit_xml(result: SuiteResult, suite_name: str = "gateway-e2e") -> str:
    """A JUnit XML document: one <testsuite> per package, one <testcase> per test.

    Its counts include the synthetic `[build failed]` / `[package failed]` cases that stand for
    failures outside any test, so they can exceed `result.failed`.
    """
    root = ET.Element("testsuites", name=xml_safe(suite_name))
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    total_time = 0.0
    for s in _iter_suites(result):
        el = ET.SubElement(root, "testsuite", name=xml_safe(s.name), tests=str(len(s.cases)),
                           failures=str(s.failures), errors="0", skipped=str(s.skipped),
                           time=f"{s.time:.3f}")
        el.extend(s.cases)
        if s.output:
            ET.SubElement(el, "system-out").text = xml_safe(s.output)
        totals["tests"] += len(s.cases)
        totals["failures"] += s.failures
        totals["skipped"] += s.skipped
        total_time += s.time
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("errors", "0")
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def summary_line(result: SuiteResult) -> str:
    """e.g. `tests: 5 passed, 1 failed, 2 skipped; specs: 4 passed, 1 failed, 0 pending, 1 skipped`.

    Build failures and interrupted tests are appended when there are any.
    """
    parts = [f"tests: {result.passed} passed, {result.failed} failed, {result.skipped} skipped"]
    if result.specs is not None:
        sp = result.specs
        parts.append(f"specs: {sp.passed} passed, {sp.failed} failed, {sp.pending} pending, "
                     f"{sp.skipped} skipped")
    if result.build_failures:
        parts.append("build failed: " + ", ".join(result.build_failures))
    if result.interrupted:
        parts.append("interrupted: " + ", ".join(result.interrupted))
    return "; ".join(parts)
