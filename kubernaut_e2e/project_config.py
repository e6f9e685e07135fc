"""Checks the project's invoke.yaml before Invoke reads it.

Invoke loads the project config after importing tasks.py and dies with a traceback on a YAML
error; checking it here turns that into one line naming the file, with exit code 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

from kubernaut_e2e.errors import EXIT_USAGE


#: The project config files Invoke reads in a folder (the kubernaut-e2e command reads its own).
INVOKE_FILES = ("invoke.yaml", "invoke.yml")


def problem(folder: Path, names: tuple[str, ...] = INVOKE_FILES) -> str | None:
    for name in names:
        path = folder / name
        if not path.is_file():
            continue
        import yaml

        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            return f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}"
        if data is not None and not isinstance(data, dict):
            return f"{path}: must be a mapping of settings, got {type(data).__name__}"
        if isinstance(data, dict) and "e2e" in data and not isinstance(data["e2e"], (dict, type(None))):
            return f"{path}: e2e must be a mapping of settings"
    return None


def exit_on_problem(folder: Path, names: tuple[str, ...] = INVOKE_FILES, program: str = "invoke") -> None:
    found = problem(folder, names)
    if found:
        print(f"{program}: {found}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
