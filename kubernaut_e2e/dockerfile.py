"""Pure Dockerfile analysis for the `toolchain` check.

Why it exists: the Gateway's lfstack.push crash was blamed on Go 1.24 on ARM64, but the real
cause was `GOARCH=amd64` hard-coded in the Dockerfile, so an amd64 binary ran emulated on an
arm64 node. These checks catch that (and the ADR-028 base-image policy) before a 10-minute
build, by reading the Dockerfile instead of running it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Mapping, Sequence

APPROVED_REGISTRIES: tuple[str, ...] = ("registry.access.redhat.com",)

# Platform ARGs that BuildKit fills in; BUILD* depend on the build host, which we do not know.
_BUILD_PLATFORM_ARGS = ("BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT")

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}

_FIX_ARCH = (
    "use ${TARGETARCH}: declare `ARG TARGETARCH` in the build stage and build with "
    "`GOARCH=${TARGETARCH} go build`; drop hard-coded GOARCH values and --platform pins "
    "(`FROM --platform=$BUILDPLATFORM` for the builder is fine). Changing the Go version does not "
    "fix an architecture mismatch."
)
_FIX_REGISTRY = (
    "use registry.access.redhat.com/ubi9/go-toolset:<go version> as the builder and "
    "registry.access.redhat.com/ubi9/ubi-minimal as the runtime base (ADR-028)"
)

_VAR = re.compile(r"\\\$|\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?(?P<op>[-+])(?P<word>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
_TARGETARCH_REF = re.compile(r"\$(?:\{TARGETARCH(?:[:}\-+])|TARGETARCH\b)")
_GOARCH_IN_RUN = re.compile(r"\bGOARCH=(?P<value>\"[^\"]*\"|'[^']*'|[^\s;&|)]+)")
_GO_BUILD = re.compile(r"\bgo\s+(?:build|install)\b")
# `(?<!<)` and `(?!<)` keep shell here-strings (`<<<`) from passing for heredocs.
_HEREDOC = re.compile(r"(?<!<)<<(?!<)-?\s*[\"']?(?P<delim>[A-Za-z_][A-Za-z0-9_]*)[\"']?")
_DIRECTIVE = re.compile(r"^#\s*(?P<key>[A-Za-z_]+)\s*=\s*(?P<value>\S+)\s*$")
_GO_VERSION_IN_IMAGE = re.compile(
    r"(?:^|/)(?:go-toolset|golang):v?(?P<version>\d+\.\d+(?:\.\d+)?)(?:[-@_.]|$)"
)
_GO_IMAGE = re.compile(r"(?:^|/)(?:go-toolset|golang)(?::|@|$)")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper-case, e.g. "FROM"
    args: str  # continuation lines joined; heredoc bodies appended after a newline
    line: int  # 1-based line where the instruction starts


@dataclass(frozen=True)
class Stage:
    index: int
    name: str | None
    raw_image: str  # as written, before ARG substitution
    image: str  # after substitution; may still hold `$VAR` when unresolvable
    platform: str | None  # --platform value as written
    line: int
    instructions: tuple[Instruction, ...]  # the stage's instructions after FROM


@dataclass(frozen=True)
class Dockerfile:
    global_args: tuple[tuple[str, str | None], ...]  # ARGs before the first FROM
    stages: tuple[Stage, ...]
    global_arg_lines: tuple[int, ...] = ()  # the line of each global ARG, in the same order

    @property
    def first_line(self) -> int:
        return self.stages[0].line if self.stages else 1


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail"
    detail: str
    fix: str = ""


# --------------------------------------------------------------------------- parsing


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction text) with continuations, comments and heredocs handled."""
    lines = text.replace("\r\n", "\n").split("\n")
    escape = "\\"
    for raw in lines:  # parser directives must come first, before any other line
        directive = _DIRECTIVE.match(raw.strip())
        if directive is None:
            break
        if directive["key"].lower() == "escape":
            escape = directive["value"]
    result: list[tuple[int, str]] = []
    buffer: str | None = None
    start = 0
    i = 0
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        i += 1
        # Comment lines are dropped even inside a continuation, as Docker does; so are blanks.
        if not stripped or stripped.startswith("#"):
            continue
        if buffer is None:
            buffer, start = "", i
        if raw.rstrip().endswith(escape):
            buffer += raw.rstrip()[: -len(escape)] + " "
            continue
        buffer += raw
        heredoc = _HEREDOC.search(buffer) if buffer.lstrip().upper().startswith(("RUN", "COPY")) else None
        if heredoc is not None:
            body: list[str] = []
            while i < len(lines) and lines[i].strip() != heredoc["delim"]:
                body.append(lines[i])
                i += 1
            i += 1  # the delimiter line
            buffer += "\n" + "\n".join(body)
        result.append((start, buffer.strip()))
        buffer = None
    if buffer:
        result.append((start, buffer.strip()))
    return result


def _instructions(text: str) -> list[Instruction]:
    out = []
    for line, logical in _logical_lines(text):
        keyword, _, args = logical.partition(" ")
        out.append(Instruction(keyword=keyword.upper(), args=args.strip(), line=line))
    return out


def _split_words(args: str) -> list[str]:
    try:
        return shlex.split(args, posix=True)
    except ValueError:  # unbalanced quotes: fall back rather than refuse the file
        return args.split()


def _parse_assignments(args: str, legacy_form: bool) -> list[tuple[str, str | None]]:
    """`K=V K2="v 2"` pairs; `K` alone (ARG without default); `ENV K value` legacy form."""
    words = _split_words(args)
    if legacy_form and words and "=" not in words[0]:
        return [(words[0], args.strip()[len(words[0]):].strip())]
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        key, sep, value = word.partition("=")
        pairs.append((key, value if sep else None))
    return pairs


def substitute(value: str, variables: Mapping[str, str | None]) -> str:
    """Expand `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR:+alt}` like Docker.

    Unknown variables are left as written so callers can tell "unresolvable" from "empty".
    """

    def expand(match: re.Match[str]) -> str:
        if match.group(0) == "\\$":
            return "$"
        name = match["braced"] or match["bare"]
        current = variables.get(name)
        if match["op"] == "-":
            return current if current else substitute(match["word"], variables)
        if match["op"] == "+":
            return substitute(match["word"], variables) if current else ""
        return current if current is not None else match.group(0)

    return _VAR.sub(expand, value)


def _parse_from(args: str) -> tuple[str | None, str, str | None]:
    """(platform, image, stage name) of a FROM instruction's arguments."""
    words = args.split()
    platform = None
    while words and words[0].startswith("--"):
        flag = words.pop(0)
        if flag.startswith("--platform="):
            platform = flag.split("=", 1)[1]
        elif flag == "--platform" and words:
            platform = words.pop(0)
    image = words[0] if words else ""
    name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
    return platform, image, name


def platform_args(target_arch: str, target_os: str = "linux") -> dict[str, str]:
    """The automatic TARGET* ARGs BuildKit provides for one target platform."""
    return {
        "TARGETPLATFORM": f"{target_os}/{target_arch}",
        "TARGETOS": target_os,
        "TARGETARCH": target_arch,
        "TARGETVARIANT": "",
    }


def parse_dockerfile(
    text: str, target_arch: str = "amd64", build_args: Mapping[str, str] | None = None
) -> Dockerfile:
    """Split a Dockerfile into stages, resolving ARGs in each FROM for `target_arch`."""
    instructions = _instructions(text)
    global_args: list[tuple[str, str | None]] = []
    global_lines: list[int] = []
    scope: dict[str, str | None] = {}
    first_from = next((i for i, ins in enumerate(instructions) if ins.keyword == "FROM"), len(instructions))
    for ins in instructions[:first_from]:
        if ins.keyword == "ARG":
            for key, default in _parse_assignments(ins.args, legacy_form=False):
                global_args.append((key, default))
                global_lines.append(ins.line)
                scope[key] = substitute(default, scope) if default is not None else None
    # Build args beat ARG defaults; BuildKit's platform ARGs beat both.
    scope.update(build_args or {})
    scope.update(platform_args(target_arch))
    stages: list[Stage] = []
    body: list[Instruction] = []
    header: Instruction | None = None

    def close() -> None:
        if header is None:
            return
        platform, raw_image, name = _parse_from(header.args)
        stages.append(
            Stage(
                index=len(stages),
                name=name,
                raw_image=raw_image,
                image=substitute(raw_image, scope),
                platform=platform,
                line=header.line,
                instructions=tuple(body),
            )
        )

    for ins in instructions[first_from:]:
        if ins.keyword == "FROM":
            close()
            header, body = ins, []
        else:
            body.append(ins)
    close()
    return Dockerfile(global_args=tuple(global_args), stages=tuple(stages), global_arg_lines=tuple(global_lines))


def parse_go_mod(text: str) -> tuple[str | None, str | None]:
    """(`go` directive, `toolchain` directive) of a go.mod, as written: ("1.24.6", "go1.25.4")."""
    go_line = toolchain_line = None
    for raw in text.splitlines():
        words = raw.split("//", 1)[0].split()
        if len(words) == 2 and words[0] == "go":
            go_line = words[1]
        elif len(words) == 2 and words[0] == "toolchain":
            toolchain_line = words[1]
    return go_line, toolchain_line


# --------------------------------------------------------------------------- helpers


def normalize_arch(arch: str) -> str:
    value = arch.strip().lower()
    return _ARCH_ALIASES.get(value, value)


def go_version_of_image(image: str) -> str | None:
    """Go version from a builder image tag: `ubi9/go-toolset:1.24` -> "1.24",
    `golang:1.24-alpine` -> "1.24", `go-toolset:1.24.6-1754467841` -> "1.24.6"."""
    match = _GO_VERSION_IN_IMAGE.search(image)
    return match["version"] if match else None


def is_go_image(image: str) -> bool:
    return _GO_IMAGE.search(image.split("@", 1)[0]) is not None


def registry_of(image: str) -> str:
    """Registry host of an image ref; refs without one come from docker.io."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _full_ref(image: str) -> str:
    if registry_of(image) != "docker.io" or image.startswith("docker.io/"):
        return image
    return f"docker.io/{image}" if "/" in image else f"docker.io/library/{image}"


def _approved(image: str, approved: Sequence[str]) -> bool:
    registry = registry_of(image)
    return any(registry == entry or image.startswith(entry.rstrip("/") + "/") for entry in approved)


def _stage_label(stage: Stage) -> str:
    return f"stage {stage.name}" if stage.name else f"stage {stage.index}"


def _arch_of_platform(platform: str) -> str | None:
    parts = platform.split("/")
    return normalize_arch(parts[1]) if len(parts) >= 2 and parts[1] else None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version.removeprefix("go"))[:3])


# --------------------------------------------------------------------------- checks


def _check_registries(dockerfile: Dockerfile, path: str, approved: Sequence[str]) -> list[Check]:
    checks = []
    names: set[str] = set()
    for stage in dockerfile.stages:
        where = f"{path}:{stage.line}: {_stage_label(stage)}"
        image = stage.image
        if image.lower() == "scratch" or image in names:
            checks.append(Check("base-image", "ok", f"{where}: FROM {image} needs no registry"))
        elif "$" in image:
            checks.append(
                Check("base-image", "warn", f"{where}: cannot resolve FROM {stage.raw_image}", "give the ARG a default")
            )
        elif _approved(image, approved):
            checks.append(Check("base-image", "ok", f"{where}: FROM {image} is from an approved registry"))
        else:
            checks.append(
                Check(
                    "base-image",
                    "fail",
                    f"{where}: FROM {stage.raw_image} resolves to {_full_ref(image)}, from {registry_of(image)}, "
                    f"not an approved registry ({', '.join(approved)})",
                    _FIX_REGISTRY,
                )
            )
        if stage.name:
            names.add(stage.name)
    return checks


def _root_stage(dockerfile: Dockerfile, stage: Stage) -> Stage:
    """The stage whose FROM is an external image, following `FROM <earlier stage>` links."""
    by_name = {s.name: s for s in dockerfile.stages[: stage.index] if s.name}
    seen = set()
    while stage.image in by_name and stage.index not in seen:
        seen.add(stage.index)
        stage = by_name[stage.image]
        by_name = {s.name: s for s in dockerfile.stages[: stage.index] if s.name}
    return stage


def _builds_go(stage: Stage) -> bool:
    return any(ins.keyword == "RUN" and _GO_BUILD.search(ins.args) for ins in stage.instructions)


def _check_go_version(dockerfile: Dockerfile, path: str) -> Check:
    go_stages = [s for s in dockerfile.stages if is_go_image(s.image) or _builds_go(s)]
    reported = []
    for stage in go_stages:
        root = _root_stage(dockerfile, stage)
        version = go_version_of_image(root.image)
        if version is None and is_go_image(root.image):
            return Check(
                "go-version",
                "warn",
                f"{path}:{root.line}: {_stage_label(root)} uses {root.image} without a Go version tag",
                "pin the builder to a Go version, e.g. registry.access.redhat.com/ubi9/go-toolset:1.24",
            )
        if version is None:
            return Check(
                "go-version",
                "warn",
                f"{path}:{stage.line}: {_stage_label(stage)} runs go build on {root.image}, whose Go version is unknown",
                "build in registry.access.redhat.com/ubi9/go-toolset:<go version>",
            )
        entry = f"{root.line}: {_stage_label(root)} builds with Go {version} ({root.image})"
        if entry not in reported:
            reported.append(entry)
    if not reported:
        return Check("go-version", "ok", f"{path}:{dockerfile.first_line}: no Go builder stage")
    return Check("go-version", "ok", f"{path}:" + "; ".join(reported))


#: What TARGET* ARGs resolve to when the question is "does this follow the target?": kept as
#: references, so `ARG GOARCH=${TARGETARCH}` and then `GOARCH=${GOARCH}` still show where they
#: come from instead of turning into today's literal architecture.
_SYMBOLIC_PLATFORM = {"TARGETPLATFORM": "${TARGETPLATFORM}", "TARGETOS": "${TARGETOS}",
                      "TARGETARCH": "${TARGETARCH}", "TARGETVARIANT": "${TARGETVARIANT}"}


def _stage_variables(
    dockerfile: Dockerfile, stage: Stage, upto: int | None, target_arch: str, symbolic: bool = True
) -> tuple[dict[str, str | None], dict[str, str], bool]:
    """(ARG values, raw ENV values, TARGETARCH declared) in a stage before instruction `upto`.

    With `symbolic`, the TARGET* ARGs stay `${TARGETARCH}`-style references (see above).
    """
    globals_ = dict(dockerfile.global_args)
    auto = dict(_SYMBOLIC_PLATFORM) if symbolic else platform_args(target_arch)
    args: dict[str, str | None] = {}
    env: dict[str, str] = {}
    declared = False
    parent = next((s for s in dockerfile.stages[: stage.index] if s.name and s.name == stage.image), None)
    if parent is not None:  # ENV (not ARG) is inherited from the stage FROM names
        env.update(_stage_variables(dockerfile, parent, None, target_arch, symbolic)[1])
    for ins in stage.instructions[:upto]:
        if ins.keyword == "ARG":
            for key, default in _parse_assignments(ins.args, legacy_form=False):
                declared = declared or key == "TARGETARCH"
                if key in auto:
                    args[key] = auto[key]
                elif default is not None:
                    args[key] = substitute(default, {**args, **env})
                else:
                    args[key] = globals_.get(key)
        elif ins.keyword == "ENV":
            for key, value in _parse_assignments(ins.args, legacy_form=True):
                if value is not None:
                    env[key] = value
    return args, env, declared


def _goarch_verdict(raw: str, variables: Mapping[str, str | None], target_arch: str) -> tuple[str, str] | None:
    """(status, resolved value) when `raw` hard-codes an architecture, None when it is dynamic."""
    value = raw.strip("\"'")
    if _TARGETARCH_REF.search(value):
        return None
    resolved = substitute(value, variables)
    if _TARGETARCH_REF.search(resolved):
        return None  # follows the target through another ARG or ENV
    if not resolved or "$" in resolved:
        return None  # set by a --build-arg at build time: not hard-coded here
    return ("warn" if normalize_arch(resolved) == target_arch else "fail"), resolved


def _goarch_message(where: str, how: str, raw: str, resolved: str, status: str, target_arch: str) -> str:
    value = raw if raw == resolved else f"{raw} (= {resolved})"
    if status == "fail":
        return f"{where}: {how} hard-codes GOARCH={value} but the target is {target_arch}: the binary will run emulated or not at all"
    return f"{where}: {how} hard-codes GOARCH={value}; right for {target_arch} today, wrong on any other architecture"


def _check_goarch(dockerfile: Dockerfile, path: str, target_arch: str) -> list[Check]:
    checks = []
    lines = dockerfile.global_arg_lines or (dockerfile.first_line,) * len(dockerfile.global_args)
    for (key, default), line in zip(dockerfile.global_args, lines):
        if key == "GOARCH" and default:
            verdict = _goarch_verdict(default, {}, target_arch)
            if verdict:
                checks.append(Check("goarch", verdict[0], _goarch_message(f"{path}:{line}", "global ARG default", default, verdict[1], verdict[0], target_arch), _FIX_ARCH))
    for stage in dockerfile.stages:
        for position, ins in enumerate(stage.instructions):
            where = f"{path}:{ins.line}: {_stage_label(stage)}"
            args, env, _ = _stage_variables(dockerfile, stage, position, target_arch)
            variables = {**args, **env}
            candidates: list[tuple[str, str]] = []
            if ins.keyword == "ENV":
                candidates = [("ENV", v) for k, v in _parse_assignments(ins.args, legacy_form=True) if k == "GOARCH" and v]
            elif ins.keyword == "ARG":
                candidates = [("ARG default", v) for k, v in _parse_assignments(ins.args, legacy_form=False) if k == "GOARCH" and v]
            elif ins.keyword == "RUN":
                candidates = [("RUN", m["value"]) for m in _GOARCH_IN_RUN.finditer(ins.args)]
            for how, raw in candidates:
                verdict = _goarch_verdict(raw, variables, target_arch)
                if verdict:
                    status, resolved = verdict
                    checks.append(Check("goarch", status, _goarch_message(where, how, raw.strip("\"'"), resolved, status, target_arch), _FIX_ARCH))
    return checks or [Check("goarch", "ok", f"{path}:{dockerfile.first_line}: no hard-coded GOARCH")]


def _check_platforms(dockerfile: Dockerfile, path: str, target_arch: str) -> list[Check]:
    checks = []
    scope = {**dict(dockerfile.global_args), **platform_args(target_arch)}
    for stage in dockerfile.stages:
        if stage.platform is None:
            continue
        where = f"{path}:{stage.line}: {_stage_label(stage)}"
        if any(name in stage.platform for name in _BUILD_PLATFORM_ARGS) or "TARGET" in stage.platform:
            checks.append(Check("platform", "ok", f"{where}: --platform={stage.platform} follows the build"))
            continue
        resolved = substitute(stage.platform, scope)
        arch = _arch_of_platform(resolved)
        if arch is None or "$" in resolved:
            checks.append(Check("platform", "warn", f"{where}: cannot resolve --platform={stage.platform}", _FIX_ARCH))
        elif arch != target_arch:
            checks.append(
                Check(
                    "platform",
                    "fail",
                    f"{where}: FROM --platform={stage.platform} pins {arch} but the target is {target_arch}: "
                    "the image will run emulated (Go binaries crash with lfstack.push) or not at all",
                    _FIX_ARCH,
                )
            )
        else:
            checks.append(
                Check(
                    "platform",
                    "warn",
                    f"{where}: FROM --platform={stage.platform} pins {arch}; right today, wrong on any other architecture",
                    _FIX_ARCH,
                )
            )
    return checks or [Check("platform", "ok", f"{path}:{dockerfile.first_line}: no FROM pins a platform")]


def _check_targetarch(dockerfile: Dockerfile, path: str, target_arch: str) -> list[Check]:
    fix = "declare `ARG TARGETARCH` in the build stage and run `GOARCH=${TARGETARCH} go build ...` (or ENV GOARCH=${TARGETARCH})"
    checks = []
    for stage in dockerfile.stages:
        for position, ins in enumerate(stage.instructions):
            if ins.keyword != "RUN" or not _GO_BUILD.search(ins.args):
                continue
            where = f"{path}:{ins.line}: {_stage_label(stage)}"
            args, env, declared = _stage_variables(dockerfile, stage, position, target_arch)
            variables = {**args, **env}

            def follows_target(value: str) -> bool:
                return bool(_TARGETARCH_REF.search(substitute(value.strip("\"'"), variables)))

            in_env = follows_target(env.get("GOARCH", "")) or (
                "GOARCH" in args and follows_target(args.get("GOARCH") or "")
                and not _GOARCH_IN_RUN.search(ins.args))
            in_run = any(follows_target(m["value"]) for m in _GOARCH_IN_RUN.finditer(ins.args))
            cross = stage.platform is not None and "BUILDPLATFORM" in stage.platform
            if declared and (in_env or in_run):
                checks.append(Check("targetarch", "ok", f"{where}: go build gets GOARCH=${{TARGETARCH}}"))
            elif not declared and (in_env or in_run):
                checks.append(Check("targetarch", "warn", f"{where}: GOARCH uses $TARGETARCH but the stage never declares `ARG TARGETARCH`, so it is empty", fix))
            else:
                consequence = (
                    "the stage runs on the build platform, so the binary is built for the build host's architecture"
                    if cross
                    else "the binary's architecture depends on where the build runs"
                )
                missing = "TARGETARCH is declared but does not reach go build" if declared else "`ARG TARGETARCH` is not declared"
                checks.append(Check("targetarch", "warn", f"{where}: {missing}; {consequence}", fix))
    return checks or [
        Check("targetarch", "warn", f"{path}:{dockerfile.first_line}: no `go build` found: cannot tell which architecture the binary is built for", fix)
    ]


def _check_user(dockerfile: Dockerfile, path: str) -> Check:
    if not dockerfile.stages:
        return Check("user", "warn", f"{path}: no stages")
    final = dockerfile.stages[-1]
    users = [ins for ins in final.instructions if ins.keyword == "USER"]
    if not users:
        return Check("user", "warn", f"{path}:{final.line}: the final {_stage_label(final)} sets no USER and runs as root", "add `USER 65532` (or another non-root UID)")
    user = users[-1].args.split(":")[0].strip()
    if user in {"0", "root"}:
        return Check("user", "warn", f"{path}:{users[-1].line}: the final stage runs as {user}", "add `USER 65532` (or another non-root UID)")
    return Check("user", "ok", f"{path}:{users[-1].line}: the final stage runs as {user}")


def check_dockerfile(
    text: str,
    path: str,
    target_arch: str,
    approved_registries: tuple[str, ...] = APPROVED_REGISTRIES,
) -> list[Check]:
    """All checks for one Dockerfile built for `target_arch` (the kind node's architecture)."""
    target = normalize_arch(target_arch)
    dockerfile = parse_dockerfile(text, target)
    if not dockerfile.stages:
        return [Check("parse", "fail", f"{path}: no FROM instruction", "is this a Dockerfile?")]
    checks = [
        *_check_registries(dockerfile, path, approved_registries),
        _check_go_version(dockerfile, path),
        *_check_goarch(dockerfile, path, target),
        *_check_platforms(dockerfile, path, target),
        *_check_targetarch(dockerfile, path, target),
        _check_user(dockerfile, path),
    ]
    # One RUN may hold several `go build`s (e.g. a coverage and a release branch): one row each
    # finding, not one per occurrence.
    return list(dict.fromkeys(checks))


def builder_go_version(text: str, target_arch: str = "amd64") -> str | None:
    """The Go version of the image the binary is built in (the stage running `go build`)."""
    dockerfile = parse_dockerfile(text, normalize_arch(target_arch))
    for stage in dockerfile.stages:
        if _builds_go(stage) or is_go_image(stage.image):
            version = go_version_of_image(_root_stage(dockerfile, stage).image)
            if version:
                return version
    return None


def check_go_mod(builder_go: str | None, go_mod_text: str, path: str = "go.mod") -> Check:
    """Does the builder image's Go satisfy go.mod's `go` and `toolchain` lines?"""
    go_line, toolchain_line = parse_go_mod(go_mod_text)
    if go_line is None:
        return Check("go-mod", "warn", f"{path}: no `go` directive", "add `go <version>` to go.mod")
    if builder_go is None:
        return Check("go-mod", "ok", f"{path}: go {go_line}" + (f", toolchain {toolchain_line}" if toolchain_line else ""))
    builder, required = _version_tuple(builder_go), _version_tuple(go_line)
    width = min(len(builder), len(required))
    if builder[:width] < required[:width]:
        return Check(
            "go-mod",
            "fail",
            f"{path}: go {go_line} needs a newer Go than the builder's {builder_go}: the build downloads a toolchain "
            "(no network in CI) or fails with GOTOOLCHAIN=local",
            f"use a go-toolset tag >= {go_line}",
        )
    if len(builder) < len(required) and builder[:width] == required[:width]:
        detail = f"{path}: go {go_line}; builder tag {builder_go} floats, its current patch release must be >= {go_line}"
    else:
        detail = f"{path}: go {go_line} is satisfied by the builder's Go {builder_go}"
    if toolchain_line and _version_tuple(toolchain_line)[:width] > builder[:width]:
        return Check(
            "go-mod",
            "warn",
            f"{detail}; toolchain {toolchain_line} is newer than the builder, so GOTOOLCHAIN=auto tries to download it",
            "align the toolchain line with the builder image or set GOTOOLCHAIN=local",
        )
    return Check("go-mod", "ok", detail)
