"""What a step body gets: the run's config, tools, runner, where things are, and a log of its own.

A run's commands may run on this machine or on a remote host (`--host`). The `Site` says
where: it makes the runner, and it holds the config *as the commands see it* (`site.cfg`: the
source tree, Dockerfiles, archives, kind config and the kubeconfig kind writes, at their paths
there) and the file operations on those paths. The run's own `cfg` stays what the local side
reads: the kubeconfig the Kubernetes client uses, records, logs, and the ports health checks
and the suite reach. On this machine (`LocalSite`) both configs are the same object and every
file operation is the plain local one, so steps are written once, without `if remote:`.
"""
from __future__ import annotations

import os
import platform
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.preflight import Tools
from kubernaut_e2e.redact import Redactor
from kubernaut_e2e.runner import Cancellation, CommandResult, LocalRunner, Runner

if TYPE_CHECKING:
    from kubernaut_e2e.graph import Graph


class Site(Protocol):
    """Where a run's commands run and where the files they are given live."""

    #: "" for this machine, else the host as the user named it (messages, summaries).
    label: str
    #: The config as the commands see it: paths on the site, the host ports kind publishes there.
    cfg: E2EConfig
    #: The folder on the site that belongs to this tool and this cluster beyond the run state
    #: (a host: the synced source tree, Dockerfiles, kind's files); `e2e.clean` removes it.
    folder: Path | None

    def runner(self, cancellation: Cancellation, *, dry: bool = False, echo: Callable[[str], None] = print,
               redactor: Redactor | None = None) -> Runner:
        """The runner for commands on the site."""
        ...

    def which(self, tool: str) -> str | None:
        """The tool's path on the site, or None."""
        ...

    def platform(self) -> tuple[str, str]:
        """The site's OS (`uname -s`) and normalised architecture."""
        ...

    def graph(self, graph: Graph) -> Graph:
        """The stack's step graph with the steps this site needs added (a host: sync-source)."""
        ...

    def busy_ports(self, ports: Iterable[int]) -> set[int]:
        """Which of `ports` something on the site already listens on."""
        ...

    def private_dir(self, path: Path) -> None:
        """Create a folder (and parents) on the site, readable by the owner only."""
        ...

    def makedirs(self, path: Path) -> None:
        """Create a folder (and parents) on the site."""
        ...

    def exists(self, path: Path) -> bool:
        ...

    def remove(self, path: Path) -> None:
        """Delete a file on the site; absent is fine."""
        ...

    def remove_tree(self, path: Path) -> None:
        """Delete a folder and everything in it on the site; absent is fine."""
        ...

    def write_private(self, path: Path, text: str) -> None:
        """Write a file on the site, mode 0600."""
        ...

    def collect(self, target: Path, produce: Callable[[Path], None]) -> None:
        """`produce(folder)` has commands write into a folder on the site; its files end up in
        the local folder `target` (on a host: written to a scratch folder there, then fetched)."""
        ...

    def adopt_kubeconfig(self, text: str | None = None) -> bool:
        """Make the run's local kubeconfig (`cfg.kubeconfig`) reach the cluster kind made.

        `text`: a kubeconfig kind printed; None: the file kind wrote at `site.cfg.kubeconfig`
        (False when there is none). On a host the local copy points at an SSH tunnel.
        """
        ...


@dataclass
class LocalSite:
    """This machine: commands run here, and their paths are the run's own."""

    cfg: E2EConfig
    label: str = ""
    folder: Path | None = None  # everything here is in the run state, which clean removes anyway

    def runner(self, cancellation: Cancellation, *, dry: bool = False, echo: Callable[[str], None] = print,
               redactor: Redactor | None = None) -> Runner:
        return LocalRunner(cancellation, dry=dry, echo=echo, redactor=redactor)

    def which(self, tool: str) -> str | None:
        return shutil.which(tool)

    def platform(self) -> tuple[str, str]:
        from kubernaut_e2e.podman import normalize_arch

        return platform.system(), normalize_arch(platform.machine())

    def graph(self, graph: Graph) -> Graph:
        return graph

    def busy_ports(self, ports: Iterable[int]) -> set[int]:
        from kubernaut_e2e.preflight import can_bind

        return {port for port in ports if not can_bind(port)}

    def private_dir(self, path: Path) -> None:
        private_dir(path)

    def makedirs(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)

    def exists(self, path: Path) -> bool:
        return path.exists()

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def remove_tree(self, path: Path) -> None:
        if path.exists():
            shutil.rmtree(path)

    def write_private(self, path: Path, text: str) -> None:
        write_private(path, text)

    def collect(self, target: Path, produce: Callable[[Path], None]) -> None:
        produce(target)

    def adopt_kubeconfig(self, text: str | None = None) -> bool:
        if text is not None:
            write_private(self.cfg.kubeconfig, text)
            return True
        if not self.cfg.kubeconfig.is_file():
            return False
        self.cfg.kubeconfig.chmod(0o600)
        return True


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
    #: Where the commands run and their files are (None: this machine, with `cfg`'s paths).
    site: Site = None  # type: ignore[assignment]
    _cleanups: list[Callable[[], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.site is None:
            self.site = LocalSite(self.cfg)

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
    def site(self) -> Site:
        return self.run.site

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
