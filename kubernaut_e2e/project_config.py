"""Checks the e2e settings' sources (invoke.yaml, INVOKE_E2E_*, `-f FILE`) before Invoke reads them.

Invoke loads the project config after importing tasks.py: a YAML error is a traceback there,
an alias bomb takes minutes and gigabytes in its merge, and INVOKE_E2E_JOBS=abc dies in its
int() cast. tasks.py calls `exit_on_problem` at import so each of these is one line naming the
key and where it was set, with exit code 2, before Invoke sees anything. Only when Invoke is
the importer: a test that imports tasks.py (pytest collection) must not be killed by a broken
invoke.yaml.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from kubernaut_e2e.errors import EXIT_USAGE


def problem(folder: Path, prefixes: Sequence[str] | None = None) -> str | None:
    """What is wrong with the settings' sources for a project in `folder` (one line), or None.

    `prefixes`: the config files to check, without their suffix (default: invoke's own).
    """
    from kubernaut_e2e.config_sources import problem as sources_problem

    return sources_problem(folder, sys.argv, os.environ, prefixes)


def loaded_by_invoke() -> bool:
    """Whether Invoke's program is importing the caller now (`invoke ...`), not a test or a script."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "load_collection" and frame.f_globals.get("__name__") == "invoke.program":
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def exit_on_problem(folder: Path, prefixes: Sequence[str] | None = None, program: str = "invoke", *,
                    always: bool = False) -> None:
    """Exit 2 with one line when a config source is unusable. Under `invoke` only while Invoke
    itself imports tasks.py (tests import it too); `always` for the kubernaut-e2e command."""
    if not always and not loaded_by_invoke():
        return  # the tasks check their config again when they run (e2e.py)
    found = problem(folder, prefixes)
    if found:
        print(f"{program}: {found}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
