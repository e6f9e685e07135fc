"""Where each `e2e` setting comes from, every source checked by the same code as the merge.

Invoke merges its config levels (defaults < /etc/invoke.yaml < ~/.invoke.yaml < the project's
invoke.yaml < INVOKE_E2E_* < the `-f` file) and forgets where a value came from. Its own
reading of INVOKE_E2E_* casts with `int()` (INVOKE_E2E_JOBS=abc was a traceback) and ignores
names it does not know (INVOKE_E2E_BOGUS was silently accepted). So each source is read here,
its YAML with bounds (kubernaut_e2e.safe_yaml), and checked on its own by `config.load_config`,
the one validation every value goes through; the merged values are then checked once more
with each key's source, so any error names the key and where it was set, in one line.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernaut_e2e.config import PROJECT_ROOT, ConfigError, E2EConfig, load_config
from kubernaut_e2e.errors import UsageError

ENV_PREFIX = "INVOKE_E2E_"
#: Invoke's config file suffixes, in its order of preference (`.py` files are code: not read).
_SUFFIXES = ("yaml", "yml", "json")


@dataclass(frozen=True)
class Source:
    """One place settings come from: a file, the environment, the task's flags."""

    label: str  # what the user sees: a path, "environment", "flags"
    values: Mapping[str, Any]
    key_labels: Mapping[str, str] = field(default_factory=dict)  # per key, e.g. INVOKE_E2E_JOBS

    def label_of(self, key: str) -> str:
        return self.key_labels.get(key, self.label)


def read_file(path: Path) -> Source:
    """The `e2e:` section of an Invoke config file; UsageError (one line) when it is unusable."""
    from kubernaut_e2e import safe_yaml

    loaded = safe_yaml.load_path(path, str(path))
    if loaded is None:
        return Source(str(path), {})
    if not isinstance(loaded, dict):
        raise UsageError(f"{path}: must be a mapping of settings, got {type(loaded).__name__}")
    section = loaded.get("e2e")
    if section is not None and not isinstance(section, dict):
        raise UsageError(f"{path}: e2e must be a mapping of settings")
    return Source(str(path), dict(section or {}))


def _first_existing(prefix: str) -> Path | None:
    """Invoke's rule: the first of <prefix>yaml, yml, json that exists."""
    for suffix in _SUFFIXES:
        path = Path(f"{prefix}{suffix}").expanduser()
        if path.is_file():
            return path
    return None


def runtime_file(argv: Sequence[str], environ: Mapping[str, str]) -> Path | None:
    """The `invoke -f FILE` (or --config FILE, or $INVOKE_RUNTIME_CONFIG) file, if any."""
    for i, arg in enumerate(argv):
        if arg in ("-f", "--config") and i + 1 < len(argv):
            return Path(argv[i + 1]).expanduser()
        if arg.startswith("--config="):
            return Path(arg.split("=", 1)[1]).expanduser()
    value = environ.get("INVOKE_RUNTIME_CONFIG")
    return Path(value).expanduser() if value else None


def env_source(environ: Mapping[str, str]) -> Source:
    found = {name[len(ENV_PREFIX):].lower(): (name, value) for name, value in sorted(environ.items())
             if name.startswith(ENV_PREFIX)}
    return Source("environment", {key: value for key, (_, value) in found.items()},
                  {key: name for key, (name, _) in found.items()})


def flag_source(overrides: Mapping[str, Any]) -> Source:
    given = {key: value for key, value in overrides.items() if value is not None}
    return Source("flags", given, {key: "--" + key.replace("_", "-") for key in given})


def invoke_prefixes(project_dir: Path) -> tuple[str, ...]:
    """Where `invoke` looks for config files (it adds yaml, yml or json), lowest precedence first."""
    return ("/etc/invoke.", "~/.invoke.", f"{project_dir}/invoke.")


def collect(project_dir: Path = PROJECT_ROOT, argv: Sequence[str] = (),
            environ: Mapping[str, str] | None = None, prefixes: Sequence[str] | None = None) -> list[Source]:
    """Every source of `e2e` settings, lowest precedence first (Invoke's order), flags excluded.

    `prefixes` are the config files' paths without their suffix (default: invoke's, see
    invoke_prefixes); the kubernaut-e2e command reads files of its own name instead.
    """
    environ = os.environ if environ is None else environ
    sources: list[Source] = []
    for prefix in prefixes if prefixes is not None else invoke_prefixes(project_dir):
        path = _first_existing(prefix)
        if path is not None:
            sources.append(read_file(path))
    sources.append(env_source(environ))
    runtime = runtime_file(argv, environ)
    if runtime is not None and runtime.suffix in (".yaml", ".yml", ".json"):
        if not runtime.is_file():
            raise UsageError(f"{runtime}: no such config file (invoke -f)")
        sources.append(read_file(runtime))
    return sources


def check(sources: Sequence[Source], *, root: Path = PROJECT_ROOT) -> None:
    """Each source on its own (over the defaults), by load_config: unknown keys, types, values.

    Values that name parts of the stack (host_ports) are checked against the stack the merge
    will use: the last source that sets e2e.stack, else the default.
    """
    stacks = [s.values["stack"] for s in sources if isinstance(s.values.get("stack"), str)]
    for source in sources:
        if source.values:
            values = dict(source.values)
            if stacks and "stack" not in values:
                values["stack"] = stacks[-1]
            load_config(values, root=root, sources={key: source.label_of(key) for key in source.values})


def provenance(sources: Sequence[Source]) -> dict[str, str]:
    """For each key, the source whose value wins (the last one, by precedence, that sets it)."""
    labels: dict[str, str] = {}
    for source in sources:
        for key in source.values:
            labels[key] = source.label_of(key)
    return labels


def resolve(merged: Mapping[str, Any], overrides: Mapping[str, Any], *, project_dir: Path = PROJECT_ROOT,
            argv: Sequence[str] = (), environ: Mapping[str, str] | None = None,
            root: Path = PROJECT_ROOT, prefixes: Sequence[str] | None = None) -> E2EConfig:
    """The task's config: every source checked, then Invoke's merged values plus the flags.

    `project_dir` is where invoke.yaml is read from (or `prefixes` say which files are read);
    `root` is what relative paths are relative to.
    """
    sources = [*collect(project_dir, argv, environ, prefixes), flag_source(overrides)]
    check(sources, root=root)
    return load_config(merged, overrides, root=root, sources=provenance(sources))


def problem(project_dir: Path, argv: Sequence[str] = (), environ: Mapping[str, str] | None = None,
            prefixes: Sequence[str] | None = None) -> str | None:
    """What is wrong with the files and environment variables, in one line, or None."""
    try:
        check(collect(project_dir, argv, environ, prefixes))
    except (ConfigError, UsageError) as exc:
        return str(exc)
    return None
