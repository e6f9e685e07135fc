"""Say *why* a pod or a log failed, using the signatures in signatures.yaml.

The knowledge (patterns, meanings, fixes) lives in the YAML file so it can grow without code
changes; this module only matches it against log text, container state and events. Everything
here is pure: callers fetch pods, logs and events and hand them over as plain data, so the
engine works the same on a live cluster, a `kind export logs` bundle or a CI artifact.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import os
import re
import string
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import yaml

SIGNATURES_FILE = Path(__file__).with_name("signatures.yaml")

SEVERITIES: tuple[str, ...] = ("critical", "error", "warning")
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
    signature_id: str
    title: str
    severity: str
    subject: str
    meaning: str
    evidence: tuple[str, ...]
    fix: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature_id": self.signature_id,
            "title": self.title,
            "severity": self.severity,
            "subject": self.subject,
            "meaning": self.meaning,
            "evidence": list(self.evidence),
            "fix": self.fix,
        }


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


@dataclass(frozen=True)
class _Hit:
    """One reason a signature matched: a log line or a fact record, with its fields."""

    values: Mapping[str, str]
    line_no: int | None = None  # 0-based index into the cleaned lines
    line: str | None = None


@dataclass(frozen=True)
class _Text:
    """A text prepared once for all signatures."""

    clean: str
    lines: tuple[str, ...]
    starts: tuple[int, ...]  # offset of each line in `clean`

    def line_index(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1


# --------------------------------------------------------------------------- loading


_SIGNATURE_KEYS = {"id", "title", "severity", "patterns", "exclude", "facts", "meaning", "evidence", "fix"}
_RULE_KEYS = {"template", "search", "extractor", "requires", "when", "limit"}


def _compile(regex: Any, where: str, flags: int = 0) -> re.Pattern[str]:
    if not isinstance(regex, str):
        raise SignatureError(f"{where}: regex must be a string, got {regex!r}")
    try:
        return re.compile(regex, flags)
    except re.error as exc:
        raise SignatureError(f"{where}: bad regex {regex!r}: {exc}") from exc


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
    compiled = [_compile(p, f"{where} pattern", re.MULTILINE) for p in raw.get("patterns") or ()]
    patterns = tuple(LinePattern(regex=c, literal=_required_literal(c)) for c in compiled)
    facts = tuple(
        tuple((str(k), _compile(str(v), f"{where} facts.{k}")) for k, v in alt.items())
        for alt in raw.get("facts") or ()
    )
    if not patterns and not facts:
        raise SignatureError(f"{where}: needs patterns or facts")
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
    )


@functools.cache
def load_signatures(path: Path = SIGNATURES_FILE) -> tuple[Signature, ...]:
    """Parse and compile the knowledge base once per process."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("signatures"), list):
        raise SignatureError(f"{path}: expected a top-level 'signatures' list")
    signatures = tuple(_parse_signature(raw, i) for i, raw in enumerate(document["signatures"]))
    ids = [s.id for s in signatures]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SignatureError(f"{path}: duplicate ids {duplicates}")
    return signatures


# --------------------------------------------------------------------------- extractors


_GOROUTINE_HEADER = re.compile(r"^goroutine \d+ \[")
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
    for func, location in frames[panics[-1] + 1 if panics else 0 :]:
        if not _is_runtime_frame(func, location):
            return {"frame_func": func, "frame_file": location}
    return {}


_EXTRACTORS: dict[str, Callable[[Sequence[str], int], dict[str, str]]] = {
    "go_first_app_frame": _go_first_app_frame,
}


# --------------------------------------------------------------------------- matching


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


def _prepare(text: str) -> _Text:
    raw_lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = tuple(_LINE_PREFIX.sub("", line, count=1) for line in raw_lines)
    starts: list[int] = []
    offset = 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    return _Text(clean="\n".join(lines), lines=lines, starts=tuple(starts))


def _next_candidate(pattern: LinePattern, text: str, pos: int) -> int:
    """Offset of the next place worth a look at or after `pos`, or -1."""
    if pattern.literal is not None:
        return text.find(pattern.literal, pos)
    candidate = pattern.regex.search(text, pos)
    return -1 if candidate is None else candidate.start()


def _line_hits(sig: Signature, text: _Text, base: Mapping[str, str]) -> list[_Hit]:
    """Lines matched by the signature, in line order; the first pattern to match a line wins."""
    by_line: dict[int, _Hit] = {}
    for pattern in sig.patterns:
        pos = 0
        # Search the whole text (fast, in C) but judge each candidate on its own line, and
        # resume at the next line so a match can never span or swallow lines.
        while len(by_line) < MAX_HITS_PER_SIGNATURE and pos <= len(text.clean):
            offset = _next_candidate(pattern, text.clean, pos)
            if offset < 0:
                break
            index = text.line_index(offset)
            pos = text.starts[index + 1] if index + 1 < len(text.starts) else len(text.clean) + 1
            if index in by_line:
                continue
            line = text.lines[index]
            match = pattern.regex.search(line)
            if match is None or any(x.search(line) for x in sig.exclude):
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
    return any(existing == line or existing.endswith(": " + line) for existing in lines)


def _evidence(
    sig: Signature, hits: Sequence[_Hit], text: _Text | None, base: Mapping[str, str]
) -> tuple[str, ...]:
    lines: list[str] = []
    source = base.get("source")
    single_line = source is not None and text is not None and sum(1 for l in text.lines if l.strip()) <= 1
    for hit in [h for h in hits if h.line is not None][:MAX_QUOTED_LINES]:
        quoted = hit.line.strip()
        if len(quoted) > MAX_QUOTED_CHARS:
            quoted = quoted[: MAX_QUOTED_CHARS - 3] + "..."
        if source and single_line:
            lines.append(f"{source}: {quoted}")
        else:
            lines.append(f"{source + ' ' if source else ''}line {hit.line_no + 1}: {quoted}")
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
                rendered.append(line)
                if len(rendered) >= rule.limit:
                    break
        lines.extend(rendered)
    return tuple(lines[:MAX_EVIDENCE])


def _finding(sig: Signature, subject: str, evidence: tuple[str, ...]) -> Finding:
    return Finding(
        signature_id=sig.id,
        title=sig.title,
        severity=sig.severity,
        subject=subject,
        meaning=sig.meaning,
        evidence=evidence,
        fix=sig.fix,
    )


def match_text(text: str, subject: str, context: Mapping[str, str] | None = None) -> list[Finding]:
    """Findings for one log (or message) text.

    `context` may carry node, node_arch, image, image_arch, container and any container fact
    (restart_count, exit_code, ...) to enrich the evidence, and `source` (e.g. "previous log")
    to label quoted lines.
    """
    if not text or not text.strip():
        return []
    prepared = _prepare(text)
    base = _base_values(context)
    findings = []
    for sig in load_signatures():
        hits = _line_hits(sig, prepared, base)
        if hits:
            findings.append(_finding(sig, subject, _evidence(sig, hits, prepared, base)))
    return findings


def _match_record(record: Mapping[str, str], subject: str) -> list[Finding]:
    """Findings from a container or event record (see the facts schema in signatures.yaml)."""
    findings = []
    for sig in load_signatures():
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
            findings.append(_finding(sig, subject, _evidence(sig, hits, None, record)))
    return findings


# --------------------------------------------------------------------------- combining


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Most severe first; equal severities keep their order (the order of discovery)."""
    return sorted(findings, key=lambda f: _SEVERITY_RANK.get(f.severity, len(SEVERITIES)))


def _merge_evidence(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    merged = list(first)
    merged.extend(line for line in second if line not in merged)
    return tuple(merged[:MAX_EVIDENCE])


def _dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per (signature, subject), evidence merged in order of discovery."""
    merged: dict[tuple[str, str], Finding] = {}
    for finding in findings:
        key = (finding.signature_id, finding.subject)
        if key in merged:
            old = merged[key]
            merged[key] = replace(old, evidence=_merge_evidence(old.evidence, finding.evidence))
        else:
            merged[key] = finding
    return list(merged.values())


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


def diagnose_pod(pod: PodFacts) -> list[Finding]:
    """Findings for one pod from container states, exit codes, events and logs."""
    if _pod_looks_healthy(pod):
        return []
    pod_subject = f"pod {pod.namespace}/{pod.name}"
    found: list[Finding] = []
    for container in pod.containers:
        subject = f"{pod_subject} container {container.name}"
        record = _container_record(pod, container)
        texts = (
            ("waiting message", container.waiting_message),
            ("termination message", container.termination_message),
            ("previous log", container.previous_log),
            ("log", container.log),
        )
        for source, text in texts:
            if text:
                found.extend(match_text(text, subject, {**record, "source": source}))
        # Facts after logs: the log usually names the cause, the state the symptom (crash
        # loop), and equal severities keep the order of discovery.
        found.extend(_match_record(record, subject))
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
        pod_level.extend(_match_record(record, pod_subject))
        if event.message:
            pod_level.extend(match_text(event.message, pod_subject, {**record, "source": f"event {event.reason}"}))
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
