"""Say *why* a pod or a log failed, using the knowledge base in signatures.yaml.

The knowledge (patterns, meanings, fixes, what recovery and crashes look like, which services
depend on which) lives in the YAML file so it can grow without code changes; this module only
matches it against log text, container state and events. Everything here is pure: callers
fetch pods, logs and events and hand them over as plain data, so the engine works the same on
a live cluster, a `kind export logs` bundle or a CI artifact.

Three rules keep the diagnosis honest:
- never silent about a crash: a fatal line, a container that exited with an error or
  restarted always yields a finding, the generic "unrecognised crash" one when no signature
  explains it;
- never crying wolf about a recovery: a transient failure (a dependency that was not up yet)
  followed in the same log by the recovery is only an informational note;
- causes first: a dependency that never came up ranks above the errors it caused downstream,
  and symptoms (crash loops, failing probes) rank below the cause found for the same pod.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import os
import re
import string
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import yaml

SIGNATURES_FILE = Path(__file__).with_name("signatures.yaml")

SEVERITIES: tuple[str, ...] = ("critical", "error", "warning", "info")
# Severities that make `e2e.diagnose` exit 1; "info" findings are notes (a recovered error).
PROBLEM_SEVERITIES: tuple[str, ...] = ("critical", "error", "warning")
_SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

# Quoting two lines is enough to recognise the failure; the rest is in the log itself.
MAX_QUOTED_LINES = 2
MAX_QUOTED_CHARS = 240
DEFAULT_EVIDENCE_LIMIT = 3
MAX_EVIDENCE = 12
# Beyond this, only the tail of a file is read: crashes are at the end of logs.
MAX_FILE_BYTES = 16 * 1024 * 1024
# A goroutine trace starts right after the panic; do not wander through a whole log for it.
MAX_TRACE_LINES = 400
# Evidence is capped anyway; a log repeating the same error 100k times needs no more lines.
MAX_HITS_PER_SIGNATURE = 200
# The cause is one sentence; a fatal line quoted inside it is cut to this length.
MAX_CAUSE_QUOTE = 160

# What kubelet, `kubectl logs --timestamps/--prefix` and CI runners put in front of what the
# program printed. Removing it lets signatures anchor on `^panic: ` and friends.
_LINE_PREFIX = re.compile(
    r"^(?:\[[^\]\s]+\] )?"
    r"(?:\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}) )?"
    r"(?:(?:stdout|stderr) [FP] )?"
)

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "x64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "arm64/v8": "arm64",
    "armv8": "arm64",
}

_BINARY_SUFFIXES = frozenset(
    {".tar", ".tgz", ".zip", ".bz2", ".xz", ".zst", ".png", ".jpg", ".jpeg", ".gif",
     ".so", ".a", ".o", ".bin", ".exe", ".db", ".sqlite", ".pyc", ".whl", ".pdf"}
)

# Container states that mean the process could not even be started.
_START_FAILURES = frozenset({"RunContainerError", "CreateContainerError", "StartError", "ContainerCannotRun"})
# Exit codes of a process that could not be executed (126 not executable, 127 not found,
# 128 runtime start error).
_START_EXIT_CODES = frozenset({126, 127, 128})


class SignatureError(ValueError):
    """signatures.yaml does not follow the schema documented at its top."""


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class ContainerFacts:
    name: str
    image: str
    ready: bool
    restart_count: int
    waiting_reason: str | None
    waiting_message: str | None
    # Current termination if the container is terminated now, else the last one.
    terminated_reason: str | None
    exit_code: int | None
    termination_message: str | None
    log: str = ""
    previous_log: str = ""
    image_arch: str | None = None


@dataclass(frozen=True)
class EventFacts:
    type: str
    reason: str
    message: str
    count: int = 1


@dataclass(frozen=True)
class PodFacts:
    namespace: str
    name: str
    node: str | None
    node_arch: str | None
    phase: str | None
    containers: tuple[ContainerFacts, ...]
    events: tuple[EventFacts, ...]


@dataclass(frozen=True)
class Finding:
    """One problem (or, with severity "info", one note): where, why, the evidence and the fix.

    `subject` names where (pod/container or file); `cause` says what went wrong in one
    sentence; `depends_on` names the services of the stack the finding is downstream of;
    `symptom` marks consequences (crash loops, failing probes) that rank below their cause.
    """

    signature_id: str
    title: str
    severity: str
    subject: str
    meaning: str
    evidence: tuple[str, ...]
    fix: str
    cause: str = ""
    depends_on: tuple[str, ...] = ()
    symptom: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature_id": self.signature_id,
            "title": self.title,
            "severity": self.severity,
            "subject": self.subject,
            "cause": self.cause,
            "meaning": self.meaning,
            "evidence": list(self.evidence),
            "fix": self.fix,
            "depends_on": list(self.depends_on),
        }


def is_problem(finding: Finding) -> bool:
    """True for findings that make a diagnosis fail (not informational notes)."""
    return finding.severity in PROBLEM_SEVERITIES


@dataclass(frozen=True)
class EvidenceRule:
    template: str
    fields: tuple[str, ...]
    search: re.Pattern[str] | None = None
    extractor: str | None = None
    requires: tuple[str, ...] = ()
    when: tuple[tuple[str, re.Pattern[str]], ...] = ()
    limit: int = DEFAULT_EVIDENCE_LIMIT


@dataclass(frozen=True)
class LinePattern:
    regex: re.Pattern[str]
    # A substring every matching line contains. Finding it with str.find and running the regex
    # on that line only is far faster on big logs than a regex that must try every position.
    literal: str | None


@dataclass(frozen=True)
class Signature:
    id: str
    title: str
    severity: str
    patterns: tuple[LinePattern, ...]
    exclude: tuple[re.Pattern[str], ...]
    facts: tuple[tuple[tuple[str, re.Pattern[str]], ...], ...]
    meaning: str
    evidence: tuple[EvidenceRule, ...]
    fix: str
    family: str = ""
    cause: tuple[str, ...] = ()
    transient: bool = False
    symptom: bool = False
    downstream: bool = False
    supersedes: tuple[str, ...] = ()
    recovery: tuple[re.Pattern[str], ...] = ()


@dataclass(frozen=True)
class Dependency:
    """A service of the stack: `component` matches a subject, `mentions` a log line."""

    name: str
    component: re.Pattern[str]
    mentions: re.Pattern[str]


@dataclass(frozen=True)
class CrashLine:
    """A line that proves a crash on its own (see `crash_lines` in signatures.yaml)."""

    id: str
    what: str
    severity: str
    pattern: LinePattern
    tail: bool = False  # the message is the first unindented line after it


@dataclass(frozen=True)
class Fallback:
    """Texts of the generic finding for a crash no signature explains."""

    id: str
    family: str
    title: str
    meaning: str
    cause: str
    fix: str


@dataclass(frozen=True)
class KnowledgeBase:
    signatures: tuple[Signature, ...]
    dependencies: tuple[Dependency, ...]
    recovery_dependency: re.Pattern[str]
    recovery_service: re.Pattern[str]
    recovery_never: re.Pattern[str]
    crash_lines: tuple[CrashLine, ...]
    error_lines: re.Pattern[str]
    fallback: Fallback
    structured: re.Pattern[str]
    payload: re.Pattern[str]
    by_id: Mapping[str, Signature] = field(default_factory=dict)


@dataclass(frozen=True)
class _Hit:
    """One reason a signature matched: a log line or a fact record, with its fields."""

    values: Mapping[str, str]
    line_no: int | None = None  # 0-based index into the cleaned lines
    line: str | None = None


@dataclass(frozen=True)
class _Text:
    """A text prepared once for all signatures."""

    clean: str  # the scanned lines joined: what patterns search
    lines: tuple[str, ...]  # what the program printed (prefixes removed): what evidence quotes
    scan: tuple[str, ...]  # the same lines with payload fields blanked: what patterns match
    starts: tuple[int, ...]  # offset of each line in `clean`
    nonblank: int = 0  # lines with text: a one-line text (an event message) is quoted without "line 1"

    def line_index(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1


# --------------------------------------------------------------------------- loading


_SIGNATURE_KEYS = {"id", "title", "severity", "family", "patterns", "exclude", "facts", "meaning", "evidence",
                   "fix", "cause", "transient", "symptom", "downstream", "supersedes", "recovery"}
_RULE_KEYS = {"template", "search", "extractor", "requires", "when", "limit"}
_TOP_KEYS = {"signatures", "dependencies", "recovery", "crash_lines", "error_lines", "fallback", "payload"}


def _compile(regex: Any, where: str, flags: int = 0) -> re.Pattern[str]:
    if not isinstance(regex, str):
        raise SignatureError(f"{where}: regex must be a string, got {regex!r}")
    try:
        return re.compile(regex, flags)
    except re.error as exc:
        raise SignatureError(f"{where}: bad regex {regex!r}: {exc}") from exc


def _union(regexes: Sequence[Any], where: str) -> re.Pattern[str]:
    """One regex that matches where any of `regexes` does (a leading (?i) stays scoped)."""
    parts = []
    for regex in regexes:
        _compile(regex, where)
        body = str(regex)
        parts.append(f"(?i:{body[4:]})" if body.startswith("(?i)") else f"(?:{body})")
    return _compile("|".join(parts) or r"(?!)", where, re.MULTILINE)


def _required_literal(regex: re.Pattern[str]) -> str | None:
    """Longest run of plain characters at the top level of a regex, or None.

    Uses the stdlib's regex parser (private, hence the defensive fallback): a wrong guess only
    costs speed, never a match, because then no literal is used.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                from re import _parser as parser  # type: ignore[attr-defined]
            except ImportError:  # pragma: no cover - Python < 3.11
                import sre_parse as parser  # type: ignore[no-redef]
            parsed = parser.parse(regex.pattern, regex.flags)
            literal_op = parser.LITERAL
        if parsed.state.flags & re.IGNORECASE:
            return None
        best, run = "", ""
        for op, value in parsed:
            if op is literal_op:
                run += chr(value)
                best = max(best, run, key=len)
            else:
                run = ""
    except Exception:  # noqa: BLE001 - any parser surprise just disables the shortcut
        return None
    return best if len(best) >= 3 else None


def _line_pattern(regex: Any, where: str) -> LinePattern:
    compiled = _compile(regex, where, re.MULTILINE)
    return LinePattern(regex=compiled, literal=_required_literal(compiled))


def _template_fields(template: str, where: str) -> tuple[str, ...]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise SignatureError(f"{where}: bad template {template!r}: {exc}") from exc
    return tuple(name for _, name, _, _ in parsed if name)


def _parse_rule(raw: Any, where: str) -> EvidenceRule:
    if not isinstance(raw, dict) or "template" not in raw:
        raise SignatureError(f"{where}: an evidence rule is a mapping with a template")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise SignatureError(f"{where}: unknown keys {sorted(unknown)}")
    extractor = raw.get("extractor")
    if extractor is not None and extractor not in _EXTRACTORS:
        raise SignatureError(f"{where}: unknown extractor {extractor!r}")
    when = raw.get("when") or {}
    return EvidenceRule(
        template=str(raw["template"]),
        fields=_template_fields(str(raw["template"]), where),
        search=_compile(raw["search"], where, re.MULTILINE) if "search" in raw else None,
        extractor=extractor,
        requires=tuple(raw.get("requires") or ()),
        when=tuple((str(k), _compile(str(v), f"{where} when.{k}")) for k, v in when.items()),
        limit=int(raw.get("limit", DEFAULT_EVIDENCE_LIMIT)),
    )


def _strings(raw: Any, where: str) -> tuple[str, ...]:
    """A string or a list of strings, as a tuple."""
    items = [raw] if isinstance(raw, str) else list(raw or ())
    if not all(isinstance(item, str) and item.strip() for item in items):
        raise SignatureError(f"{where}: expected a string or a list of strings")
    return tuple(" ".join(item.split()) for item in items)


def _parse_signature(raw: Any, index: int) -> Signature:
    if not isinstance(raw, dict):
        raise SignatureError(f"signature #{index}: must be a mapping")
    sig_id = raw.get("id")
    where = f"signature {sig_id or '#' + str(index)}"
    unknown = set(raw) - _SIGNATURE_KEYS
    if unknown:
        raise SignatureError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("id", "title", "severity", "meaning", "fix"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise SignatureError(f"{where}: {key} is required")
    if raw["severity"] not in SEVERITIES:
        raise SignatureError(f"{where}: severity must be one of {SEVERITIES}")
    patterns = tuple(_line_pattern(p, f"{where} pattern") for p in raw.get("patterns") or ())
    facts = tuple(
        tuple((str(k), _compile(str(v), f"{where} facts.{k}")) for k, v in alt.items())
        for alt in raw.get("facts") or ()
    )
    if not patterns and not facts:
        raise SignatureError(f"{where}: needs patterns or facts")
    causes = _strings(raw.get("cause"), f"{where} cause")
    for cause in causes:
        _template_fields(cause, f"{where} cause")
    return Signature(
        id=sig_id,
        title=raw["title"].strip(),
        severity=raw["severity"],
        patterns=patterns,
        exclude=tuple(_compile(p, f"{where} exclude") for p in raw.get("exclude") or ()),
        facts=facts,
        meaning=" ".join(raw["meaning"].split()),
        evidence=tuple(_parse_rule(r, f"{where} evidence") for r in raw.get("evidence") or ()),
        fix=" ".join(raw["fix"].split()),
        family=str(raw.get("family") or ""),
        cause=causes,
        transient=bool(raw.get("transient", False)),
        symptom=bool(raw.get("symptom", False)),
        downstream=bool(raw.get("downstream", False)),
        supersedes=tuple(str(s) for s in raw.get("supersedes") or ()),
        recovery=tuple(_compile(p, f"{where} recovery") for p in raw.get("recovery") or ()),
    )


def _parse_dependency(raw: Any, index: int) -> Dependency:
    if not isinstance(raw, dict) or not {"name", "component", "mentions"} <= set(raw):
        raise SignatureError(f"dependency #{index}: needs name, component and mentions")
    where = f"dependency {raw['name']}"
    return Dependency(str(raw["name"]), _compile(raw["component"], where), _compile(raw["mentions"], where))


def _parse_crash_line(raw: Any, index: int) -> CrashLine:
    if not isinstance(raw, dict) or not {"id", "what", "severity", "pattern"} <= set(raw):
        raise SignatureError(f"crash line #{index}: needs id, what, severity and pattern")
    unknown = set(raw) - {"id", "what", "severity", "pattern", "tail"}
    if unknown:
        raise SignatureError(f"crash line {raw['id']}: unknown keys {sorted(unknown)}")
    if raw["severity"] not in PROBLEM_SEVERITIES:
        raise SignatureError(f"crash line {raw['id']}: severity must be one of {PROBLEM_SEVERITIES}")
    return CrashLine(str(raw["id"]), str(raw["what"]), raw["severity"],
                     _line_pattern(raw["pattern"], f"crash line {raw['id']}"), bool(raw.get("tail", False)))


def _parse_fallback(raw: Any) -> Fallback:
    keys = ("id", "family", "title", "meaning", "cause", "fix")
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) for k in keys):
        raise SignatureError(f"fallback: needs {', '.join(keys)}")
    _template_fields(raw["cause"], "fallback cause")
    return Fallback(**{k: " ".join(raw[k].split()) for k in keys})


@functools.cache
def load_knowledge(path: Path = SIGNATURES_FILE) -> KnowledgeBase:
    """Parse and compile the knowledge base once per process."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("signatures"), list):
        raise SignatureError(f"{path}: expected a top-level 'signatures' list")
    unknown = set(document) - _TOP_KEYS
    if unknown:
        raise SignatureError(f"{path}: unknown top-level keys {sorted(unknown)}")
    signatures = tuple(_parse_signature(raw, i) for i, raw in enumerate(document["signatures"]))
    ids = [s.id for s in signatures]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SignatureError(f"{path}: duplicate ids {duplicates}")
    for sig in signatures:
        missing = [other for other in sig.supersedes if other not in ids]
        if missing:
            raise SignatureError(f"signature {sig.id}: supersedes unknown ids {missing}")
    recovery = document.get("recovery") or {}
    fallback = _parse_fallback(document.get("fallback") or {
        "id": "unrecognised-crash", "family": "fallback", "title": "Unrecognised crash",
        "meaning": "The program crashed and no known signature says why.",
        "cause": "it crashed with: {fatal_line}", "fix": "unrecognised crash: read the quoted fatal line."})
    if fallback.id in ids:
        raise SignatureError(f"fallback: id {fallback.id} is also a signature id")
    payload = document.get("payload") or {}
    fields = [re.escape(str(f)) for f in payload.get("fields") or ()]
    keys = "|".join(fields) or r"(?!)"
    return KnowledgeBase(
        structured=_union(payload.get("structured") or (), "payload.structured"),
        # "key":"value" (JSON, escaped quotes inside) or key="value" (logfmt).
        payload=_compile(rf'(?P<key>"(?:{keys})": ?"|\b(?:{keys})=")(?P<value>(?:[^"\\]|\\.)*)"', "payload.fields"),
        signatures=signatures,
        dependencies=tuple(_parse_dependency(raw, i) for i, raw in enumerate(document.get("dependencies") or ())),
        recovery_dependency=_union(recovery.get("dependency") or (), "recovery.dependency"),
        recovery_service=_union(recovery.get("service") or (), "recovery.service"),
        recovery_never=_union(recovery.get("never") or (), "recovery.never"),
        crash_lines=tuple(_parse_crash_line(raw, i) for i, raw in enumerate(document.get("crash_lines") or ())),
        error_lines=_union(document.get("error_lines") or (), "error_lines"),
        fallback=fallback,
        by_id={s.id: s for s in signatures},
    )


def load_signatures(path: Path = SIGNATURES_FILE) -> tuple[Signature, ...]:
    """The signatures of the knowledge base (parsed once per process)."""
    return load_knowledge(path).signatures


# --------------------------------------------------------------------------- extractors


_GOROUTINE_HEADER = re.compile(r"^goroutine \d+ (?:gp=\S+ m=\S+ (?:mp=\S+ )?)?\[")
_FRAME_FILE = re.compile(r"^\s+(?P<file>\S+?\.(?:go|s|c)):(?P<line>\d+)\b")
_RUNTIME_PREFIXES = ("runtime.", "runtime/", "internal/runtime/")


def _strip_call_args(frame: str) -> str:
    """`pkg.(*T).M(0x0, {0x1})` -> `pkg.(*T).M`: drop the trailing balanced argument list."""
    if not frame.endswith(")"):
        return frame
    depth = 0
    for i in range(len(frame) - 1, -1, -1):
        if frame[i] == ")":
            depth += 1
        elif frame[i] == "(":
            depth -= 1
            if depth == 0:
                return frame[:i] if i else frame
    return frame


def _is_runtime_frame(func: str, file: str) -> bool:
    # `panic({...})` is the builtin's frame; its arguments are already stripped here.
    return (
        func == "panic"
        or func.startswith(_RUNTIME_PREFIXES)
        or "/src/runtime/" in file
        or "/src/internal/runtime/" in file
    )


def _goroutine_frames(lines: Sequence[str], header: int, end: int) -> list[tuple[str, str]]:
    """(function, file:line) pairs of the goroutine trace that starts after line `header`."""
    frames: list[tuple[str, str]] = []
    i = header + 1
    while i + 1 < end:
        func = lines[i].strip()
        if not func:
            break  # a blank line ends this goroutine's trace
        location = _FRAME_FILE.match(lines[i + 1])
        if location is None:
            i += 1
            continue
        if func.startswith("created by "):
            func = func[len("created by "):].split(" in goroutine ")[0]
        frames.append((_strip_call_args(func), f"{location['file']}:{location['line']}"))
        i += 2
    return frames


def _go_first_app_frame(lines: Sequence[str], start: int) -> dict[str, str]:
    """The first frame outside the Go runtime in the trace that follows line `start`."""
    end = min(len(lines), start + MAX_TRACE_LINES)
    header = next((i for i in range(start + 1, end) if _GOROUTINE_HEADER.match(lines[i])), None)
    if header is None:
        return {}
    frames = _goroutine_frames(lines, header, end)
    # Frames above the last `panic(...)` are deferred handlers (net/http's recover, for one);
    # the code that panicked is the first one below it.
    panics = [i for i, (func, _) in enumerate(frames) if func == "panic"]
    candidates = [(f, loc) for f, loc in frames[panics[-1] + 1 if panics else 0 :] if not _is_runtime_frame(f, loc)]
    # Prefer the application's own code over the standard library it called (sync, net/http).
    chosen = next((c for c in candidates if _is_application_frame(*c)), candidates[0] if candidates else None)
    return {"frame_func": chosen[0], "frame_file": chosen[1]} if chosen else {}


def _is_application_frame(func: str, file: str = "") -> bool:
    """The program's own code: `main.run` or a package path with a domain (github.com/...),
    not the standard library and not a dependency (module cache or vendor directory)."""
    if "/pkg/mod/" in file or "/vendor/" in file:
        return False
    if func.startswith("main."):
        return True
    return "/" in func and "." in func.split("/")[0]


_EXTRACTORS: dict[str, Callable[[Sequence[str], int], dict[str, str]]] = {
    "go_first_app_frame": _go_first_app_frame,
}


# --------------------------------------------------------------------------- text preparation


def normalize_arch(arch: str) -> str:
    """`x86_64`, `linux/amd64` -> `amd64`; `aarch64`, `arm64/v8` -> `arm64`."""
    value = arch.strip().lower()
    if value.startswith("linux/"):
        value = value[len("linux/"):]
    return _ARCH_ALIASES.get(value, value)


def _base_values(context: Mapping[str, Any] | None) -> dict[str, str]:
    """Context as template fields, with architectures normalised and `emulated` derived."""
    values = {k: str(v) for k, v in (context or {}).items() if v is not None and str(v) != ""}
    for key in ("node_arch", "image_arch"):
        if key in values:
            values[key] = normalize_arch(values[key])
    if "node_arch" in values and "image_arch" in values and values["node_arch"] != values["image_arch"]:
        values["emulated"] = "true"
    return values


def _mask_payload(line: str, kb: KnowledgeBase) -> str:
    """The line with the values of payload fields blanked (same length, so offsets hold).

    A service that ingests failure reports (the Gateway receives alerts and Kubernetes events)
    logs their text in fields such as description or message; that text is about someone
    else's failure, not this service's.
    """
    if '"' not in line or not kb.structured.search(line):
        return line
    return kb.payload.sub(lambda m: m.group("key") + " " * len(m.group("value")) + '"', line)


def _prepare(text: str, kb: KnowledgeBase | None = None) -> _Text:
    kb = kb or load_knowledge()
    raw_lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = tuple(_LINE_PREFIX.sub("", line, count=1) for line in raw_lines)
    scan = tuple(_mask_payload(line, kb) for line in lines)
    starts: list[int] = []
    offset = 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    return _Text(clean="\n".join(scan), lines=lines, scan=scan, starts=tuple(starts),
                 nonblank=sum(1 for line in lines if line.strip()))


def _next_candidate(pattern: LinePattern, text: str, pos: int) -> int:
    """Offset of the next place worth a look at or after `pos`, or -1."""
    if pattern.literal is not None:
        return text.find(pattern.literal, pos)
    candidate = pattern.regex.search(text, pos)
    return -1 if candidate is None else candidate.start()


# --------------------------------------------------------------------------- matching


def _matching_lines(pattern: LinePattern, text: _Text, limit: int) -> Iterator[tuple[int, re.Match[str]]]:
    """(line index, match) of the lines `pattern` matches, in order, at most `limit`."""
    pos, found = 0, 0
    # Search the whole text (fast, in C) but judge each candidate on its own line, and
    # resume at the next line so a match can never span or swallow lines.
    while found < limit and pos <= len(text.clean):
        offset = _next_candidate(pattern, text.clean, pos)
        if offset < 0:
            return
        index = text.line_index(offset)
        pos = text.starts[index + 1] if index + 1 < len(text.starts) else len(text.clean) + 1
        match = pattern.regex.search(text.scan[index])
        if match is not None:
            found += 1
            yield index, match


def _line_hits(sig: Signature, text: _Text, base: Mapping[str, str]) -> list[_Hit]:
    """Lines matched by the signature, in line order; the first pattern to match a line wins."""
    by_line: dict[int, _Hit] = {}
    for pattern in sig.patterns:
        for index, match in _matching_lines(pattern, text, MAX_HITS_PER_SIGNATURE):
            if len(by_line) >= MAX_HITS_PER_SIGNATURE:
                break
            line = text.lines[index]
            if index in by_line or any(x.search(text.scan[index]) for x in sig.exclude):
                continue
            groups = {k: v for k, v in match.groupdict().items() if v}
            by_line[index] = _Hit(values={**base, **groups}, line_no=index, line=line)
    return [by_line[i] for i in sorted(by_line)]


def _render(rule: EvidenceRule, values: Mapping[str, str]) -> str | None:
    if any(key not in values for key in rule.requires):
        return None
    for key, pattern in rule.when:
        if key not in values or not pattern.fullmatch(values[key]):
            return None
    if any(name not in values for name in rule.fields):
        return None
    return rule.template.format_map(values)


def _already_said(line: str, lines: Sequence[str]) -> bool:
    """True when `line` repeats an earlier one, e.g. a quoted log line that says the same."""
    return any(existing == line or existing.endswith(": " + line) or existing.startswith(line + " ")
               for existing in lines)


def _quote(line: str, limit: int = MAX_QUOTED_CHARS) -> str:
    quoted = line.strip()
    return quoted if len(quoted) <= limit else quoted[: limit - 3] + "..."


def _where(line_no: int, text: _Text, source: str | None) -> str:
    """How a quoted line is labelled: `previous log line 12`, `line 12`, or the source alone."""
    if source and text.nonblank <= 1:
        return source
    return f"{source + ' ' if source else ''}line {line_no + 1}"


def _evidence(
    sig: Signature, hits: Sequence[_Hit], text: _Text | None, base: Mapping[str, str]
) -> tuple[tuple[str, ...], dict[str, str]]:
    """The evidence lines, and every field they were rendered from (for the cause sentence)."""
    lines: list[str] = []
    fields: dict[str, str] = dict(hits[0].values) if hits else dict(base)
    source = base.get("source")
    for hit in [h for h in hits if h.line is not None][:MAX_QUOTED_LINES]:
        lines.append(f"{_where(hit.line_no, text, source)}: {_quote(hit.line)}")  # type: ignore[arg-type]
    for rule in sig.evidence:
        rendered: list[str] = []
        if rule.search is not None:
            candidates: Iterable[Mapping[str, str]] = (
                {**base, **{k: v for k, v in m.groupdict().items() if v}}
                for m in (rule.search.finditer(text.clean) if text is not None else ())
            )
        elif rule.extractor is not None:
            extract = _EXTRACTORS[rule.extractor]
            candidates = (
                {**hit.values, **extract(text.lines, hit.line_no)}
                for hit in hits
                if text is not None and hit.line_no is not None
            )
        else:
            candidates = (hit.values for hit in hits)
        for values in candidates:
            line = _render(rule, values)
            if line is not None and line not in rendered and not _already_said(line, lines):
                if not rendered:
                    fields.update({k: v for k, v in values.items() if k not in fields})
                rendered.append(line)
                if len(rendered) >= rule.limit:
                    break
        lines.extend(rendered)
    return tuple(lines[:MAX_EVIDENCE]), fields


def _cause(templates: Sequence[str], fields: Mapping[str, str], default: str) -> str:
    """The first cause template whose fields are all known, else `default`."""
    for template in templates:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
        if all(name in fields for name in names):
            return template.format_map({name: _quote(str(fields[name]), MAX_CAUSE_QUOTE) for name in names})
    return default


def _mentioned(lines: Iterable[str], kb: KnowledgeBase) -> set[str]:
    """Names of the stack's services that the lines mention."""
    lines = list(lines)
    return {dep.name for dep in kb.dependencies if any(dep.mentions.search(line) for line in lines)}


def component_of(subject: str, kb: KnowledgeBase | None = None) -> str | None:
    """The stack's service a finding's subject (pod or file name) belongs to, if any."""
    kb = kb or load_knowledge()
    # The most specific part names it: the container in "pod ns/x container c", the file's
    # directory in "node/pods/ns_x_uid/c/0.log" (the node's name may well contain "gateway").
    for part in reversed(re.split(r"[\s/]+", subject)):
        name = next((dep.name for dep in kb.dependencies if dep.component.search(part)), None)
        if name is not None:
            return name
    return None


def _depends_on(hits: Sequence[_Hit], subject: str, kb: KnowledgeBase) -> tuple[str, ...]:
    own = component_of(subject, kb)
    named = _mentioned((h.line for h in hits if h.line is not None), kb)
    return tuple(sorted(name for name in named if name != own))


_TOKEN_FIELDS = ("address", "host", "service")


def _recovery_line(sig: Signature, hits: Sequence[_Hit], text: _Text, kb: KnowledgeBase) -> int | None:
    """Index of a later line saying that what the hits complain about works again, or None.

    A service-level line (server listening, ready, HTTP 200) always counts; a dependency-level
    line (connected, ping ok) counts when it names the same dependency, address or host.
    """
    line_hits = [h for h in hits if h.line_no is not None]
    if not line_hits:
        return None
    last = max(h.line_no for h in line_hits)  # type: ignore[type-var]
    if last + 1 >= len(text.lines):
        return None
    named = _mentioned((h.line for h in line_hits), kb)  # type: ignore[misc]
    mentions = [dep.mentions for dep in kb.dependencies if dep.name in named]
    tokens = {h.values[k] for h in line_hits for k in _TOKEN_FIELDS if k in h.values}
    dependency_level = [kb.recovery_dependency, *sig.recovery]
    for index in range(last + 1, len(text.lines)):
        line = text.scan[index]
        if not line.strip() or kb.recovery_never.search(line):
            continue
        if kb.recovery_service.search(line):
            return index
        if any(p.search(line) for p in dependency_level):
            if any(m.search(line) for m in mentions) or any(t in line for t in tokens) or not (mentions or tokens):
                return index
    return None


def _text_finding(sig: Signature, hits: Sequence[_Hit], text: _Text, subject: str,
                  base: Mapping[str, str], kb: KnowledgeBase) -> Finding:
    evidence, fields = _evidence(sig, hits, text, base)
    severity, cause = sig.severity, _cause(sig.cause, fields, sig.title)
    if sig.transient and sig.severity in PROBLEM_SEVERITIES:
        recovered = _recovery_line(sig, hits, text, kb)
        if recovered is not None:
            severity, cause = "info", f"{cause} (then it recovered)"
            note = f"recovered: {_where(recovered, text, base.get('source'))}: {_quote(text.lines[recovered])}"
            quoted = min(MAX_QUOTED_LINES, sum(1 for h in hits if h.line is not None))
            evidence = (*evidence[:quoted], note, *evidence[quoted:])[:MAX_EVIDENCE]
    return replace(_finding(sig, subject, evidence), severity=severity, cause=cause,
                   depends_on=_depends_on(hits, subject, kb) if sig.downstream else ())


def _finding(sig: Signature, subject: str, evidence: tuple[str, ...]) -> Finding:
    return Finding(
        signature_id=sig.id,
        title=sig.title,
        severity=sig.severity,
        subject=subject,
        meaning=sig.meaning,
        evidence=evidence,
        fix=sig.fix,
        symptom=sig.symptom,
    )


def _signature_findings(text: _Text, subject: str, base: Mapping[str, str], kb: KnowledgeBase) -> list[Finding]:
    hits = {sig.id: _line_hits(sig, text, base) for sig in kb.signatures}
    # A line a more specific signature explains no longer counts for the general ones.
    for sig in kb.signatures:
        claimed = {h.line_no for h in hits[sig.id]}
        for other in sig.supersedes if claimed else ():
            hits[other] = [h for h in hits[other] if h.line_no not in claimed]
    return [_text_finding(sig, hits[sig.id], text, subject, base, kb) for sig in kb.signatures if hits[sig.id]]


def _is_cause(finding: Finding) -> bool:
    """A problem that explains itself: not a note, not a symptom of something else."""
    return is_problem(finding) and not finding.symptom


# --------------------------------------------------------------------------- generic crash


_CALLER = re.compile(r'"caller": ?"(?P<caller>[^"]+)"|(?<![\w./@+-])(?P<file>[\w./@+-]+\.go:\d+)')


def _caller(lines: Sequence[str], index: int) -> str | None:
    """Where the crash was raised: the first Go frame after a trace header, else a caller on the line."""
    frame = _go_first_app_frame(lines, index)
    if frame:
        return f"first non-runtime frame: {frame['frame_func']} at {frame['frame_file']}"
    match = _CALLER.search(lines[index])
    if match:
        return f"caller: {match['caller'] or match['file']}"
    return None


@dataclass(frozen=True)
class _Crash:
    """The crash lines found in one text."""

    severity: str
    first: int
    last: int
    kind: CrashLine


def _crash_lines(text: _Text, kb: KnowledgeBase) -> _Crash | None:
    found: list[tuple[int, CrashLine]] = []
    for crash in kb.crash_lines:
        found.extend((index, crash) for index, _ in _matching_lines(crash.pattern, text, MAX_HITS_PER_SIGNATURE))
    if not found:
        return None
    found.sort(key=lambda item: item[0])
    severity = min((c.severity for _, c in found), key=lambda s: _SEVERITY_RANK[s])
    return _Crash(severity=severity, first=found[0][0], last=found[-1][0], kind=found[0][1])


def _last_error_line(text: _Text, kb: KnowledgeBase) -> int | None:
    matches = list(kb.error_lines.finditer(text.clean))
    return text.line_index(matches[-1].start()) if matches else None


def _fallback_finding(subject: str, severity: str, evidence: Sequence[str], fatal_line: str | None,
                      kb: KnowledgeBase) -> Finding:
    fb = kb.fallback
    cause = (fb.cause.format_map({"fatal_line": _quote(fatal_line, MAX_CAUSE_QUOTE)}) if fatal_line
             else "the container exited or restarted and its logs do not say why")
    return Finding(signature_id=fb.id, title=fb.title, severity=severity, subject=subject, meaning=fb.meaning,
                   evidence=tuple(evidence)[:MAX_EVIDENCE], fix=fb.fix, cause=cause)


def _crash_evidence(crash: _Crash, text: _Text, source: str | None) -> tuple[list[str], str]:
    """Quoted fatal line(s) with line numbers, what kind of line, and the frame/caller."""
    lines = [f"{_where(crash.first, text, source)}: {_quote(text.lines[crash.first])}"]
    fatal = text.lines[crash.first]
    end = len(text.lines)
    tail = (next((i for i in range(crash.first + 1, min(end, crash.first + MAX_TRACE_LINES))
                  if text.lines[i].strip() and not text.lines[i][0].isspace()), None) if crash.kind.tail else None)
    if tail is not None:
        lines.append(f"{_where(tail, text, source)}: {_quote(text.lines[tail])}")
        fatal = text.lines[tail]
    elif crash.last != crash.first and text.lines[crash.last].strip() != text.lines[crash.first].strip():
        lines.append(f"{_where(crash.last, text, source)}: {_quote(text.lines[crash.last])}")
    lines.append(f"fatal line: {crash.kind.what}")
    caller = _caller(text.lines, crash.first)
    if caller:
        lines.append(caller)
    return lines, fatal


def _text_crash_finding(text: _Text, subject: str, base: Mapping[str, str], kb: KnowledgeBase) -> Finding | None:
    crash = _crash_lines(text, kb)
    if crash is None:
        return None
    evidence, fatal = _crash_evidence(crash, text, base.get("source"))
    return _fallback_finding(subject, crash.severity, evidence, fatal, kb)


def _prepared_finding_list(text: _Text, subject: str, base: Mapping[str, str], kb: KnowledgeBase,
                           fallback: bool) -> list[Finding]:
    findings = _signature_findings(text, subject, base, kb)
    if fallback and not any(_is_cause(f) for f in findings):
        crash = _text_crash_finding(text, subject, base, kb)
        if crash is not None:
            findings.append(crash)
    return findings


def match_text(text: str, subject: str, context: Mapping[str, str] | None = None) -> list[Finding]:
    """Findings for one log (or message) text, causes first.

    `context` may carry node, node_arch, image, image_arch, container and any container fact
    (restart_count, exit_code, ...) to enrich the evidence, and `source` (e.g. "previous log")
    to label quoted lines. A text with a crash line that no signature explains still yields
    the generic finding; a transient failure followed by its recovery is an "info" note.
    """
    if not text or not text.strip():
        return []
    kb = load_knowledge()
    return sort_findings(_prepared_finding_list(_prepare(text, kb), subject, _base_values(context), kb, fallback=True))


def _match_record(record: Mapping[str, str], subject: str, kb: KnowledgeBase) -> list[Finding]:
    """Findings from a container or event record (see the facts schema in signatures.yaml)."""
    findings = []
    for sig in kb.signatures:
        hits = []
        for alternative in sig.facts:
            groups: dict[str, str] = {}
            for key, pattern in alternative:
                value = record.get(key)
                if value is None:
                    break
                match = pattern.search(value) if key.endswith("_message") else pattern.fullmatch(value)
                if match is None:
                    break
                groups.update({k: v for k, v in match.groupdict().items() if v})
            else:
                hits.append(_Hit(values={**record, **groups}))
        if hits:
            evidence, fields = _evidence(sig, hits, None, record)
            findings.append(replace(_finding(sig, subject, evidence), cause=_cause(sig.cause, fields, sig.title)))
    return findings


# --------------------------------------------------------------------------- combining


def _level(index: int, findings: Sequence[Finding], components: Sequence[str | None], seen: frozenset[int]) -> int:
    """How far downstream a finding is: 0, or 1 + the level of the findings it depends on."""
    finding = findings[index]
    upstream = [j for j, other in enumerate(findings)
                if j not in seen and j != index and _is_cause(other) and components[j] is not None
                and components[j] in finding.depends_on and components[j] != components[index]]
    return 1 + max((_level(j, findings, components, seen | {index}) for j in upstream), default=-1) if upstream else 0


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Causes first: upstream before downstream, then most severe, then causes before symptoms.

    A finding about a dependency (e.g. "cannot reach postgresql:5432") ranks below the
    findings of that dependency's own pod or log: the dependency that never came up is the
    cause. Notes ("info") come last; equal ranks keep their order (the order of discovery).
    """
    findings = list(findings)
    kb = load_knowledge()
    components = [component_of(f.subject, kb) for f in findings]
    levels = [_level(i, findings, components, frozenset()) if f.depends_on else 0 for i, f in enumerate(findings)]
    # A symptom sits at the level of the causes found for the same pod or file.
    groups = [f.subject.split(" container ")[0] for f in findings]
    for i, finding in enumerate(findings):
        if finding.symptom:
            levels[i] = max((levels[j] for j, other in enumerate(findings)
                             if groups[j] == groups[i] and _is_cause(other)), default=0)
    order = sorted(range(len(findings)), key=lambda i: (
        not is_problem(findings[i]), levels[i], _SEVERITY_RANK.get(findings[i].severity, len(SEVERITIES)),
        findings[i].symptom, i))
    return [findings[i] for i in order]


def _merge_evidence(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    merged = list(first)
    merged.extend(line for line in second if line not in merged)
    return tuple(merged[:MAX_EVIDENCE])


def _merge(old: Finding, new: Finding) -> Finding:
    """One finding from two of the same signature and subject: the worse severity wins."""
    worse = min(old, new, key=lambda f: _SEVERITY_RANK.get(f.severity, len(SEVERITIES)))
    return replace(worse, evidence=_merge_evidence(old.evidence, new.evidence),
                   depends_on=tuple(sorted({*old.depends_on, *new.depends_on})))


def _dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per (signature, subject), evidence merged in order of discovery."""
    merged: dict[tuple[str, str], Finding] = {}
    for finding in findings:
        key = (finding.signature_id, finding.subject)
        merged[key] = _merge(merged[key], finding) if key in merged else finding
    return list(merged.values())


# --------------------------------------------------------------------------- pods


def _container_ok(container: ContainerFacts) -> bool:
    if container.restart_count or container.waiting_reason:
        return False
    if container.ready:
        return True
    # Init containers and jobs end Completed with exit code 0 and are never "ready".
    return container.terminated_reason == "Completed" and container.exit_code == 0


def _pod_looks_healthy(pod: PodFacts) -> bool:
    # Logs of a healthy pod legitimately hold transient errors (a dependency that came up a
    # second later); diagnosing them would cry wolf, so a healthy pod is not examined at all.
    return (
        pod.phase != "Failed"
        and all(_container_ok(c) for c in pod.containers)
        and not any(e.type == "Warning" for e in pod.events)
    )


def _container_record(pod: PodFacts, container: ContainerFacts) -> dict[str, str]:
    raw: dict[str, Any] = {
        "container": container.name,
        "image": container.image,
        "image_arch": container.image_arch,
        "node": pod.node,
        "node_arch": pod.node_arch,
        "ready": "true" if container.ready else "false",
        "restart_count": container.restart_count,
        "waiting_reason": container.waiting_reason,
        "waiting_message": container.waiting_message,
        "terminated_reason": container.terminated_reason,
        "exit_code": container.exit_code,
        "termination_message": container.termination_message,
    }
    return _base_values(raw)


def _crash_facts(container: ContainerFacts) -> tuple[str | None, list[str]]:
    """Severity and evidence of a crash from the container's state alone (None: no crash)."""
    evidence: list[str] = []
    severity: str | None = None
    cannot_start = (container.waiting_reason in _START_FAILURES or container.terminated_reason in _START_FAILURES
                    or container.exit_code in _START_EXIT_CODES)
    exited_badly = container.exit_code not in (None, 0)
    if cannot_start:
        severity = "critical"
    elif exited_badly or container.waiting_reason == "CrashLoopBackOff" or (
            container.restart_count and not container.ready):
        severity = "error"
    elif container.restart_count:
        severity = "warning"  # it restarted, but runs and is ready now
    if container.exit_code is not None and (exited_badly or container.restart_count):
        evidence.append(f"container {container.name}: last exit code {container.exit_code}"
                        + (f" ({container.terminated_reason})" if container.terminated_reason else ""))
    if container.restart_count:
        evidence.append(f"restarted {container.restart_count} times"
                        + (", ready now" if container.ready else ""))
    if container.waiting_reason and severity:
        evidence.append(f"waiting: {container.waiting_reason}"
                        + (f": {_quote(container.waiting_message)}" if container.waiting_message else ""))
    if container.termination_message and severity:
        evidence.append(f"termination message: {_quote(container.termination_message)}")
    return severity, evidence


def _container_crash_finding(subject: str, container: ContainerFacts, texts: Sequence[tuple[str, _Text]],
                             kb: KnowledgeBase) -> Finding | None:
    """The generic finding for a container that crashed (state or fatal line) without a known cause."""
    fact_severity, fact_evidence = _crash_facts(container)
    crash_evidence: list[str] = []
    fatal: str | None = None
    line_severity: str | None = None
    for source, text in texts:
        crash = _crash_lines(text, kb)
        if crash is not None:
            crash_evidence, fatal = _crash_evidence(crash, text, source)
            line_severity = crash.severity
            break
    if fact_severity is None and line_severity is None:
        return None
    if fatal is None:  # died without a crash line: the last error-level line is the best clue
        for source, text in texts:
            index = _last_error_line(text, kb)
            if index is not None:
                crash_evidence = [f"last error line, {_where(index, text, source)}: {_quote(text.lines[index])}"]
                caller = _caller(text.lines, index)
                crash_evidence.extend([caller] if caller else [])
                fatal = text.lines[index]
                break
    severity = min((s for s in (fact_severity, line_severity) if s), key=lambda s: _SEVERITY_RANK[s])
    return _fallback_finding(subject, severity, [*crash_evidence, *fact_evidence], fatal, kb)


def _settled(finding: Finding, kb: KnowledgeBase) -> Finding:
    """A transient failure of a previous instance, now that the container is ready again: a note."""
    sig = kb.by_id.get(finding.signature_id)
    if sig is None or not sig.transient or not is_problem(finding):
        return finding
    return replace(finding, severity="info", cause=f"{finding.cause} (before a restart; the container is ready now)")


def _container_findings(pod: PodFacts, container: ContainerFacts, subject: str, kb: KnowledgeBase) -> list[Finding]:
    record = _container_record(pod, container)
    sources = (
        ("previous log", container.previous_log),
        ("termination message", container.termination_message),
        ("waiting message", container.waiting_message),
        ("log", container.log),
    )
    texts = [(source, _prepare(text, kb)) for source, text in sources if text and text.strip()]
    found: list[Finding] = []
    for source, text in texts:
        findings = _prepared_finding_list(text, subject, {**record, "source": source}, kb, fallback=False)
        if source == "previous log" and container.ready:
            findings = [_settled(f, kb) for f in findings]
        found.extend(findings)
    # Facts after logs: the log usually names the cause, the state the symptom (crash loop).
    found.extend(_match_record(record, subject, kb))
    # A ready container whose previous instance died of a transient failure has recovered:
    # the restart is explained by that note, not an unrecognised crash.
    recovered = container.ready and any(
        not is_problem(f) and getattr(kb.by_id.get(f.signature_id), "transient", False) for f in found)
    if not recovered and not any(_is_cause(f) for f in found):
        crash = _container_crash_finding(subject, container, texts, kb)
        if crash is not None:
            found.append(crash)
    return found


def diagnose_pod(pod: PodFacts) -> list[Finding]:
    """Findings for one pod from container states, exit codes, events and logs, causes first."""
    if _pod_looks_healthy(pod):
        return []
    kb = load_knowledge()
    pod_subject = f"pod {pod.namespace}/{pod.name}"
    found: list[Finding] = []
    for container in pod.containers:
        found.extend(_container_findings(pod, container, f"{pod_subject} container {container.name}", kb))
    pod_level: list[Finding] = []
    for event in pod.events:
        record = _base_values(
            {
                "node": pod.node,
                "node_arch": pod.node_arch,
                "event_type": event.type,
                "event_reason": event.reason,
                "event_message": event.message,
                "event_count": event.count,
            }
        )
        pod_level.extend(_match_record(record, pod_subject, kb))
        if event.message:
            pod_level.extend(_prepared_finding_list(_prepare(event.message, kb), pod_subject,
                                                    {**record, "source": f"event {event.reason}"}, kb, fallback=False))
    findings = _dedupe(found)
    # An event usually restates a container's state (ErrImageNeverPull, BackOff): fold it into
    # that container's finding instead of reporting the same problem twice.
    for finding in _dedupe(pod_level):
        index = next((i for i, f in enumerate(findings) if f.signature_id == finding.signature_id), None)
        if index is None:
            findings.append(finding)
        else:
            target = findings[index]
            findings[index] = replace(target, evidence=_merge_evidence(target.evidence, finding.evidence))
    return sort_findings(findings)


# --------------------------------------------------------------------------- offline logs


def _read_text(path: Path) -> str | None:
    """A file's text, or None when it is binary, empty or unreadable."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES)
        else:
            size = path.stat().st_size
            with path.open("rb") as handle:
                if size > MAX_FILE_BYTES:
                    handle.seek(size - MAX_FILE_BYTES)
                data = handle.read(MAX_FILE_BYTES)
                if size > MAX_FILE_BYTES:
                    data = data[data.find(b"\n") + 1 :]  # drop the cut-off first line
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    if not data or b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def _walk(root: Path) -> Iterator[Path]:
    for directory, dirnames, filenames in os.walk(root):  # does not follow symlinked dirs
        dirnames[:] = sorted(d for d in dirnames if d not in {".git", "__pycache__"})
        for name in sorted(filenames):
            path = Path(directory, name)
            if path.is_symlink() or path.suffix.lower() in _BINARY_SUFFIXES:
                continue
            yield path


def diagnose_path(path: Path) -> list[Finding]:
    """Findings for a log file or a directory tree of logs (kind export logs, CI artifacts).

    The subject of each finding is the file's path relative to the directory given (or the
    path as given for a single file).
    """
    path = Path(path)
    if path.is_file():
        files = [(path, str(path))]
    else:
        files = [(p, p.relative_to(path).as_posix()) for p in _walk(path)]
    findings: list[Finding] = []
    for file, subject in files:
        text = _read_text(file)
        if text is not None:
            findings.extend(match_text(text, subject))
    return sort_findings(findings)


# --------------------------------------------------------------------------- API objects


def _state_parts(status: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """(waiting, terminated) of a container status; terminated falls back to lastState."""
    state = status.get("state") or {}
    last = status.get("lastState") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or last.get("terminated") or {}
    return waiting, terminated


def _container_facts(
    spec: Mapping[str, Any],
    status: Mapping[str, Any] | None,
    logs: Mapping[tuple[str, bool], str],
    image_archs: Mapping[str, str],
) -> ContainerFacts:
    name = spec.get("name") or (status or {}).get("name", "")
    status = status or {}
    waiting, terminated = _state_parts(status)
    # The spec's image is the ref that was deployed; the status may show a resolved ref.
    image = spec.get("image") or status.get("image") or ""
    exit_code = terminated.get("exitCode")
    return ContainerFacts(
        name=name,
        image=image,
        ready=bool(status.get("ready", False)),
        restart_count=int(status.get("restartCount") or 0),
        waiting_reason=waiting.get("reason") or None,
        waiting_message=waiting.get("message") or None,
        terminated_reason=terminated.get("reason") or None,
        exit_code=int(exit_code) if exit_code is not None else None,
        termination_message=terminated.get("message") or None,
        log=logs.get((name, False), "") or "",
        previous_log=logs.get((name, True), "") or "",
        image_arch=image_archs.get(image) or image_archs.get(status.get("image", "")) or None,
    )


def _event_facts(event: Mapping[str, Any]) -> EventFacts:
    # Accepts core/v1 Events and events.k8s.io/v1 Events (note, series.count, deprecatedCount).
    series = event.get("series") or {}
    count = event.get("count") or series.get("count") or event.get("deprecatedCount") or 1
    return EventFacts(
        type=event.get("type") or "",
        reason=event.get("reason") or "",
        message=event.get("message") or event.get("note") or "",
        count=int(count),
    )


def _event_is_about(event: Mapping[str, Any], pod_name: str) -> bool:
    target = event.get("involvedObject") or event.get("regarding") or {}
    if not target or target.get("kind", "Pod") != "Pod":
        return not target
    return target.get("name") in (None, pod_name)


def pod_facts_from_api(
    pod: Mapping[str, Any],
    node_arch: str | None,
    logs: Mapping[tuple[str, bool], str],
    events: Sequence[Mapping[str, Any]],
    image_archs: Mapping[str, str] | None = None,
) -> PodFacts:
    """PodFacts from a Pod in its API (camelCase JSON) form; no client calls.

    `logs` maps (container name, previous) to log text; `image_archs` optionally maps an image
    ref to its recorded architecture (from `podman image inspect`).
    """
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    archs = image_archs or {}
    containers: list[ContainerFacts] = []
    for spec_key, status_key in (("initContainers", "initContainerStatuses"), ("containers", "containerStatuses")):
        statuses = {s.get("name"): s for s in status.get(status_key) or ()}
        specs = list(spec.get(spec_key) or ())
        names = {c.get("name") for c in specs}
        # A status without a spec entry (odd, but seen in trimmed dumps) still carries facts.
        specs.extend({"name": n} for n in statuses if n not in names)
        for container_spec in specs:
            containers.append(_container_facts(container_spec, statuses.get(container_spec.get("name")), logs, archs))
    name = metadata.get("name", "")
    return PodFacts(
        namespace=metadata.get("namespace", ""),
        name=name,
        node=spec.get("nodeName") or None,
        node_arch=node_arch,
        phase=status.get("phase") or None,
        containers=tuple(containers),
        events=tuple(_event_facts(e) for e in events if _event_is_about(e, name)),
    )