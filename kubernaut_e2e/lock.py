"""One `up`/`clean`/`ci` per cluster at a time: an flock on <state_dir>/locks/<cluster>.lock.

The kernel drops an flock when its holder dies, so a lock left by a crashed or killed run is
free to take; the PID it recorded is only used to name the holder (or the stale previous one).
"""
from __future__ import annotations

import fcntl
import os
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


class ClusterLock:
    def __init__(self, locks_dir: Path, cluster: str, what: str) -> None:
        self.path = locks_dir / f"{cluster}.lock"
        self.cluster = cluster
        self.what = what
        self.stale_pid: int | None = None  # set when a dead run's lock was taken over
        self._fd: int | None = None

    def acquire(self) -> ClusterLock:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        previous = os.read(fd, 200).decode(errors="replace").split()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = f"PID {previous[0]}" if previous else "another process"
            doing = f" ({' '.join(previous[1:])})" if len(previous) > 1 else ""
            raise UsageError(f"cluster {self.cluster!r} is locked by {holder}{doing}; "
                             f"wait for it to finish or stop it (lock: {self.path})") from None
        if previous and previous[0].isdigit() and int(previous[0]) != os.getpid() and not _alive(int(previous[0])):
            self.stale_pid = int(previous[0])
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()} e2e.{self.what}\n".encode())
        self._fd = fd
        return self

    @property
    def warning(self) -> str | None:
        """What to tell the user when a dead run's lock was taken over."""
        if self.stale_pid is None:
            return None
        return f"warning: took over the lock of PID {self.stale_pid}, which is no longer running"

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ClusterLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
