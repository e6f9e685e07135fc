"""Sending a source tree to a folder on a remote host, only what changed since the last time.

Builds on a remote host need the Kubernaut checkout there. Sending all of it every run would
cost minutes on a slow link, so each sync compares a content manifest of the local tree (path,
kind, size, mode, sha256; hashes reused while size and mtime are unchanged) with the manifest
of the previous sync and sends only the difference: one gzip'd tar stream of new and changed
entries, and a list of paths to delete. The previous manifest is kept locally (`record`); the
remote folder holds a marker with the id of the last completed sync, so a folder that another
machine synced, or that was wiped, or a sync that was interrupted, is detected and the folder
is rebuilt from scratch (emptied, then everything sent).

The remote folder belongs to this tool: everything it holds is what the last sync put there.
Nothing outside it is touched: paths are relative, never contain `..`, and are never reached
through a symbolic link (links are sent as links, and not followed when walking the tree).
Directories named in fingerprint.SKIP_DIRS (.git, ...) are not sent, as they are not part of
an image's inputs either. Files are sent with their modification times (whole seconds).

`scan_tree` and the IO are apart from `plan_sync`, which is pure.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from kubernaut_e2e.errors import E2EError, UsageError
from kubernaut_e2e.fingerprint import SKIP_DIRS

if TYPE_CHECKING:
    from fabric import Connection

    from kubernaut_e2e.runner import Cancellation

#: The file in the remote folder naming the last completed sync.
MARKER = ".kubernaut-e2e-sync"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Entry:
    """One path of a tree, as far as a build can tell the difference."""

    kind: str  # "file", "link" or "dir"
    mode: int  # permission bits
    size: int = 0  # files only
    digest: str = ""  # sha256 of a file's content; a link's target
    mtime_ns: int = field(default=0, compare=False)  # for reusing hashes and for the copy; not content


Manifest = Mapping[str, Entry]  # POSIX path relative to the tree -> entry


@dataclass(frozen=True)
class SyncPlan:
    """What one sync does: delete (top-most paths; directories go with their content), then send."""

    send: tuple[str, ...]  # parents before children
    delete: tuple[str, ...]
    full: bool  # the remote folder is emptied first (its state was unknown)


@dataclass(frozen=True)
class SyncResult:
    bytes_sent: int  # payload written to the host: the compressed tar stream and the deletion list
    sent: int  # entries sent
    deleted: int  # top-most paths deleted
    full: bool  # the folder was rebuilt from scratch


class SyncFailed(E2EError):
    """A remote command of the sync failed; the message has its stderr."""


def _depth_order(path: str) -> tuple[str, ...]:
    return PurePosixPath(path).parts


def plan_sync(old: Manifest | None, new: Manifest) -> SyncPlan:
    """Compare the previous manifest (None: the remote state is unknown) with the new one. Pure.

    A changed file or link is deleted before it is sent again, so nothing is ever written
    through an existing path; a directory is deleted only when it is gone or stopped being a
    directory, and resent (for its mode) when only its mode changed.
    """
    if old is None:
        return SyncPlan(send=tuple(sorted(new, key=_depth_order)), delete=(), full=True)
    doomed = {path for path, entry in old.items()
              if path not in new or new[path].kind != entry.kind or (entry.kind != "dir" and new[path] != entry)}
    delete = sorted((p for p in doomed if not any(str(a) in doomed for a in PurePosixPath(p).parents)),
                    key=_depth_order)
    send = sorted((p for p, entry in new.items() if old.get(p) != entry or p in doomed), key=_depth_order)
    return SyncPlan(send=tuple(send), delete=tuple(delete), full=False)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scan_tree(root: Path, previous: Manifest | None = None) -> dict[str, Entry]:
    """The manifest of `root`: regular files, symbolic links (not followed) and directories.

    A file's hash is taken from `previous` while its size and mtime are unchanged (the check
    rsync makes), so an unchanged tree costs a walk, not a read. Special files are skipped.
    """
    previous = previous or {}
    found: dict[str, Entry] = {}

    def walk(folder: Path, rel: str) -> None:
        with os.scandir(folder) as entries:
            items = sorted(entries, key=lambda e: e.name)
        for item in items:
            path = f"{rel}{item.name}"
            try:
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed while we walk: it is not part of the tree
                continue
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                found[path] = Entry("link", mode, digest=os.readlink(item.path), mtime_ns=st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                if item.name in SKIP_DIRS:
                    continue
                found[path] = Entry("dir", mode, mtime_ns=st.st_mtime_ns)
                walk(Path(item.path), f"{path}/")
            elif stat.S_ISREG(st.st_mode):
                before = previous.get(path)
                if before and before.kind == "file" and before.size == st.st_size and before.mtime_ns == st.st_mtime_ns:
                    digest = before.digest
                else:
                    try:
                        digest = _sha256(Path(item.path))
                    except OSError as exc:
                        raise UsageError(f"cannot read {item.path}: {exc.strerror or exc}") from None
                found[path] = Entry("file", mode, size=st.st_size, digest=digest, mtime_ns=st.st_mtime_ns)

    walk(root, "")
    return found


def check_remote_dir(remote_dir: str) -> str:
    """The remote folder, normalised; UsageError when it could be a home, root or outside one."""
    path = PurePosixPath(remote_dir)
    if not remote_dir or ".." in path.parts or str(path) in (".", "/") or len(path.parts) < 2 or "~" in remote_dir:
        raise UsageError(f"remote folder {remote_dir!r}: must be a dedicated folder at least two levels deep "
                         "(relative paths are taken from the remote home), without '..' or '~'")
    return str(path)


@dataclass(frozen=True)
class _Record:
    sync_id: str
    remote_dir: str
    entries: dict[str, Entry]


def _load_record(path: Path) -> _Record | None:
    try:
        data = json.loads(path.read_text())
        return _Record(data["sync_id"], data["remote_dir"],
                       {p: Entry(**fields) for p, fields in data["entries"].items()})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_record(path: Path, record: _Record) -> None:
    from kubernaut_e2e.context import write_private

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_private(tmp, json.dumps({"sync_id": record.sync_id, "remote_dir": record.remote_dir,
                                   "entries": {p: asdict(e) for p, e in record.entries.items()}}))
    os.replace(tmp, path)  # whole or not at all


class _GzipChunks(io.RawIOBase):
    """A write-only file for tarfile: gzip-compresses what it is given into a list of chunks."""

    def __init__(self) -> None:
        self._zip = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip container
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        out = self._zip.compress(bytes(data))
        if out:
            self.chunks.append(out)
        return len(data)

    def finish(self) -> None:
        self.chunks.append(self._zip.flush())


def _tar_stream(root: Path, paths: tuple[str, ...], entries: Manifest, marker: str) -> Iterator[bytes]:
    """The gzip'd tar of `paths` (owner root, mtimes kept) and, last, the marker. Streamed."""
    sink = _GzipChunks()
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for path in paths:
            entry = entries[path]
            info = tarfile.TarInfo(path)
            info.mode, info.mtime, info.uid, info.gid = entry.mode, entry.mtime_ns // 10**9, 0, 0
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, entry.digest
                tar.addfile(info)
            else:
                info.size = entry.size
                with (root / path).open("rb") as fh:
                    tar.addfile(info, fh)
            yield from sink.chunks
            sink.chunks.clear()
        info = tarfile.TarInfo(MARKER)
        info.size, info.mode = len(marker), 0o600
        tar.addfile(info, io.BytesIO(marker.encode()))
    sink.finish()
    yield from sink.chunks


#: Run on the host before sending: drop the marker (a cut-off sync must look unknown next time),
#: empty the folder when its state is unknown, then delete the NUL-separated paths on stdin.
PREPARE_SCRIPT = r"""
set -e
d=$1
rm -f -- "$d/.kubernaut-e2e-sync"
if [ "$2" = full ]; then rm -rf -- "$d"; fi
mkdir -p -- "$d"
cd -- "$d"
xargs -0 rm -rf --
"""


def sync_tree(connection: Connection, source: Path, remote_dir: str, record: Path, *,
              timeout: float | None = None, cancellation: Cancellation | None = None) -> SyncResult:
    """Make `remote_dir` on the host a copy of `source`, sending only what changed.

    `record` is a local file (written 0600) remembering what the last sync sent to that host
    folder; without it, or when the remote folder's marker does not match it, the folder is
    rebuilt. Returns the bytes sent: 0 for an unchanged tree, about one file for a one-file
    change (compressed). A failure on the host (or `timeout` seconds per remote command) is a
    SyncFailed; the next sync then rebuilds the folder.
    """
    remote_dir = check_remote_dir(remote_dir)
    if not source.is_dir():
        raise UsageError(f"source folder {source} does not exist")
    try:
        return _sync(connection, source, remote_dir, record, timeout, cancellation)
    except TimeoutError as exc:
        raise SyncFailed(f"sending {source} to {remote_dir} on {connection.host}: {exc}") from None


def _sync(connection: Connection, source: Path, remote_dir: str, record: Path, timeout: float | None,
          cancellation: Cancellation | None) -> SyncResult:
    from kubernaut_e2e.remote import run_simple

    previous = _load_record(record)
    if previous is not None and previous.remote_dir != remote_dir:
        previous = None
    current = scan_tree(source, previous.entries if previous else None)
    marker = run_simple(connection, ["cat", "--", f"{remote_dir}/{MARKER}"], timeout=timeout,
                        cancellation=cancellation)
    known = previous if previous is not None and marker.returncode == 0 and \
        marker.stdout.strip() == previous.sync_id else None
    plan = plan_sync(known.entries if known else None, current)
    if known is not None and not plan.send and not plan.delete:
        if current != known.entries or any(current[p].mtime_ns != known.entries[p].mtime_ns for p in current):
            _save_record(record, _Record(known.sync_id, remote_dir, current))  # keep the hash cache fresh
        return SyncResult(bytes_sent=0, sent=0, deleted=0, full=False)
    deletions = b"".join(p.encode() + b"\0" for p in plan.delete)
    prepared = run_simple(connection, ["sh", "-c", PREPARE_SCRIPT, "sh", remote_dir, "full" if plan.full else "-"],
                          input=[deletions], timeout=timeout, cancellation=cancellation)
    if prepared.returncode != 0:
        raise SyncFailed(f"preparing {remote_dir} on {connection.host} failed: {prepared.stderr.strip()}")
    sync_id = uuid.uuid4().hex
    sent = run_simple(connection, ["tar", "-x", "-z", "-f", "-", "-C", remote_dir],
                      input=_tar_stream(source, plan.send, current, sync_id), timeout=timeout,
                      cancellation=cancellation)
    if sent.returncode != 0:
        raise SyncFailed(f"unpacking into {remote_dir} on {connection.host} failed: {sent.stderr.strip()}")
    _save_record(record, _Record(sync_id, remote_dir, current))
    return SyncResult(bytes_sent=prepared.bytes_sent + sent.bytes_sent, sent=len(plan.send),
                      deleted=len(plan.delete), full=plan.full)


def fetch_tree(connection: Connection, remote_dir: str, target: Path, *, timeout: float | None = None,
               cancellation: Cancellation | None = None) -> int:
    """Copy the folder `remote_dir` on the host into the local folder `target`; the bytes received.

    The way back for what commands leave on the host (`kind export logs`): one gzip'd tar
    stream, unpacked with tarfile's "data" filter, so nothing in it can land outside `target`
    or be a device, a setuid file or a link pointing out of it. A failure is a SyncFailed.
    """
    import tempfile

    from kubernaut_e2e.remote import run_simple

    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as spool:
        try:
            got = run_simple(connection, ["tar", "-c", "-z", "-f", "-", "-C", remote_dir, "."], timeout=timeout,
                             cancellation=cancellation, stdout_to=spool)
        except TimeoutError as exc:
            raise SyncFailed(f"fetching {remote_dir} from {connection.host}: {exc}") from None
        if got.returncode != 0:
            raise SyncFailed(f"fetching {remote_dir} from {connection.host} failed: {got.stderr.strip()}")
        size = spool.tell()
        spool.seek(0)
        try:
            with tarfile.open(fileobj=spool, mode="r:gz") as tar:
                tar.extractall(target, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise SyncFailed(f"unpacking {remote_dir} from {connection.host} into {target}: {exc}") from None
    return size
