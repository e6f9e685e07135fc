"""What a step body gets: the run's config, tools, runner, and a log of its own."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.preflight import Tools
from kubernaut_e2e.redact import Redactor
from kubernaut_e2e.runner import Cancellation, CommandResult, Runner


@dataclass
class RunContext:
    """Shared by every step of one run. Passed down explicitly; there are no globals."""

    cfg: E2EConfig
    tools: Tools
    runner: Runner
    run_dir: Path
    cancellation: Cancellation
    dry: bool = False
    recreate: bool = False
    echo: Callable[[str], None] = print
    redactor: Redactor = field(default_factory=Redactor)
    selected: frozenset[str] = frozenset()  # names of the steps in this run's graph
    #: Gets (step, masked output line) while a step runs: the live view's latest line and progress.
    on_output: Callable[[str, str], None] | None = None
    results: dict[str, Any] = field(default_factory=dict)
    generated: dict[str, str] = field(default_factory=dict)  # the stack's credentials, this run
    generated_lock: threading.Lock = field(default_factory=threading.Lock)
    _cleanups: list[Callable[[], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_exit(self, fn: Callable[[], None]) -> None:
        """Run `fn` when the run ends, whatever happened (e.g. delete a temp archive)."""
        with self._lock:
            self._cleanups.append(fn)

    def run_cleanups(self) -> list[str]:
        """Run the registered cleanups, newest first; return the errors they raised."""
        errors: list[str] = []
        with self._lock:
            cleanups, self._cleanups = list(reversed(self._cleanups)), []
        for fn in cleanups:
            try:
                fn()
            except Exception as exc:  # a cleanup must not hide the run's real outcome
                errors.append(f"{getattr(fn, '__name__', 'cleanup')}: {exc}")
        return errors


@dataclass
class StepContext:
    run: RunContext
    step: str

    @property
    def cfg(self) -> E2EConfig:
        return self.run.cfg

    @property
    def tools(self) -> Tools:
        return self.run.tools

    @property
    def log_path(self) -> Path | None:
        return None if self.run.dry else self.run.run_dir / f"{self.step}.log"

    def sh(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        capture: bool = False,
        check: bool = True,
        timeout: float | None = None,
        log_stdout: bool = True,
    ) -> CommandResult:
        """Run a command with its output in this step's log file (and e2e.command_timeout)."""
        # Output kept out of the log (a kubeconfig) is kept out of the live view too.
        on_line = self._show if log_stdout else None
        return self.run.runner.run(argv, log=self.log_path, env=env, capture=capture, check=check,
                                   timeout=timeout or self.cfg.command_timeout, log_stdout=log_stdout,
                                   on_line=on_line)

    def _show(self, line: str) -> None:
        if self.run.on_output is not None:
            self.run.on_output(self.step, self.run.redactor.redact(line))

    def log(self, text: str) -> None:
        text = self.run.redactor.redact(text)
        if self.run.on_output is not None:
            self.run.on_output(self.step, text.rstrip("\n").splitlines()[-1] if text.strip() else "")
        if self.log_path is not None:
            with self.log_path.open("a") as fh:
                fh.write(text.rstrip("\n") + "\n")
        else:
            self.run.echo(f"# {self.step}: {text}")

    def result(self, step: str) -> Any:
        return self.run.results[step]


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable by the owner only: it holds credentials."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
