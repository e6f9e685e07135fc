"""One `up`/`clean`/`ci` per cluster at a time: an flock on <state_dir>/locks/<cluster>.lock.

The kernel drops an flock when its holder dies, so a lock left by a crashed run is free to
take. But a run killed with SIGKILL leaves its commands running (each has a process group of
its own, which is what lets a normal stop kill a whole `podman build` tree), and a re-run
must not start a second `kind create` next to the dead run's. So the lock file also records,
while the run lives, the process group of every command it runs; a new run refuses (exit 2,
naming the groups) while any of them is still alive. It also records the image references
the run uses, so `clean` of another cluster can tell which images a live run needs.

File format, one item per line: `<pid> e2e.<what>`, then `images <ref> ...`, then
`group <pgid> <start time> <command>` per running command.
"""
from __future__ import annotations

import fcntl
import os
import shlex
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from kubernaut_e2e.errors import UsageError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_time(pid: int) -> str:
    """The kernel's start time of a process (Linux), to tell a reused PID apart; "" elsewhere."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def group_alive(pgid: int, start_time: str = "") -> bool:
    """Whether any process of the group still runs (zombies do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():  # macOS: ask the kernel, zombies included
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    leader_start = _start_time(pgid)
    if start_time and leader_start and leader_start != start_time:
        return False  # the PID was reused by an unrelated process
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


@dataclass(frozen=True)
class LockRecord:
    """What a lock file says: who holds (or held) it, its images, its commands' groups."""

    pid: int | None
    what: str
    images: tuple[str, ...]
    groups: tuple[tuple[int, str, str], ...]  # (pgid, start time, command)

    @classmethod
    def parse(cls, text: str) -> LockRecord:
        pid, what, images, groups = None, "", (), []
        for number, line in enumerate(text.splitlines()):
            words = line.split()
            if not words:
                continue
            if number == 0 and words[0].isdigit():
                pid, what = int(words[0]), " ".join(words[1:])
            elif words[0] == "images":
                images = tuple(words[1:])
            elif words[0] == "group" and len(words) >= 3 and words[1].isdigit():
                start = words[2] if words[2] != "-" else ""
                groups.append((int(words[1]), start, " ".join(words[3:])))
        return cls(pid, what, images, tuple(groups))

    def live_groups(self) -> list[tuple[int, str]]:
        return [(pgid, command) for pgid, start, command in self.groups if group_alive(pgid, start)]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


class ClusterLock:
    """The cluster's lock; also a ProcessWatcher (see runner.Cancellation.add_watcher)."""

    def __init__(self, locks_dir: Path, cluster: str, what: str) -> None:
        self.path = locks_dir / f"{cluster}.lock"
        self.cluster = cluster
        self.what = what
        self.stale_pid: int | None = None  # set when a dead run's lock was taken over
        self.images: tuple[str, ...] = ()
        self._groups: dict[int, tuple[str, str]] = {}
        self._fd: int | None = None
        self._mutex = threading.Lock()

    def acquire(self) -> ClusterLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise UsageError(f"config e2e.state_dir: cannot create the lock {self.path}: "
                             f"{exc.strerror or exc}") from None
        previous = LockRecord.parse(os.read(fd, 65536).decode(errors="replace"))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = f"PID {previous.pid}" if previous.pid else "another process"
            doing = f" ({previous.what})" if previous.what else ""
            raise UsageError(f"cluster {self.cluster!r} is locked by {holder}{doing}; "
                             f"wait for it to finish or stop it (lock: {self.path})") from None
        if previous.pid is not None and previous.pid != os.getpid() and not _alive(previous.pid):
            left = previous.live_groups()
            if left:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                groups = ", ".join(f"process group {pgid} (`{command}`)" for pgid, command in left)
                kill = " ".join(f"-{pgid}" for pgid, _ in left)
                raise UsageError(f"cluster {self.cluster!r}: the run PID {previous.pid} ({previous.what}) died "
                                 f"but its commands still run: {groups}; wait for them or stop them "
                                 f"(`kill -- {kill}`), then retry (lock: {self.path})")
            self.stale_pid = previous.pid
        self._fd = fd
        self._save()
        return self

    def record_images(self, refs: Sequence[str]) -> None:
        """The image references this run builds and loads (read by another cluster's clean)."""
        self.images = tuple(refs)
        self._save()

    # --- ProcessWatcher --------------------------------------------------------------------

    def group_started(self, pgid: int, argv: Sequence[str]) -> None:
        with self._mutex:
            self._groups[pgid] = (_start_time(pgid) or "-", shlex.join(list(argv)[:4]).replace("\n", " "))
        self._save()

    def group_ended(self, pgid: int) -> None:
        with self._mutex:
            self._groups.pop(pgid, None)
        self._save()

    def _save(self) -> None:
        with self._mutex:
            if self._fd is None:
                return
            lines = [f"{os.getpid()} e2e.{self.what}"]
            if self.images:
                lines.append("images " + " ".join(self.images))
            lines += [f"group {pgid} {start} {command}" for pgid, (start, command) in self._groups.items()]
            data = ("\n".join(lines) + "\n").encode()
            try:
                os.ftruncate(self._fd, 0)
                os.pwrite(self._fd, data, 0)
            except OSError:  # disk full: the flock still protects; only the record is short
                pass

    @property
    def warning(self) -> str | None:
        """What to tell the user when a dead run's lock was taken over."""
        if self.stale_pid is None:
            return None
        return f"warning: took over the lock of PID {self.stale_pid}, which is no longer running"

    def release(self) -> None:
        with self._mutex:
            fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> ClusterLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def live_runs(locks_dir: Path, *, except_cluster: str = "") -> dict[str, LockRecord]:
    """Clusters whose lock a live run holds now, with what their lock file records."""
    found: dict[str, LockRecord] = {}
    if not locks_dir.is_dir():
        return found
    for path in sorted(locks_dir.glob("*.lock")):
        cluster = path.name[: -len(".lock")]
        if cluster == except_cluster:
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            found[cluster] = LockRecord.parse(_read(path))
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    return found
