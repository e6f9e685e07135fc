"""Errors the tasks raise, each carrying the exit code the user sees.

Exit codes are part of the interface (CI scripts branch on them):
0 success, 1 a step or check failed, 2 usage/config/preflight error, 130 interrupted.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class E2EError(Exception):
    """Base class: an error with a one-line message and an exit code."""

    exit_code = EXIT_FAILED


class UsageError(E2EError):
    """Bad flags, bad configuration or a failed preflight: nothing was started."""

    exit_code = EXIT_USAGE


class StepFailed(E2EError):
    """A step of the graph failed; the message names the step and its log."""

    exit_code = EXIT_FAILED


class Cancelled(E2EError):
    """A step was stopped because another step failed or the user interrupted."""

    exit_code = EXIT_FAILED


class Interrupted(E2EError):
    """The user pressed Ctrl-C or the process got SIGTERM."""

    exit_code = EXIT_INTERRUPTED
