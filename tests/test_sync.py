"""Source sync: the diff is pure; over a real sshd only changes are sent, deletions propagate,
links are not followed, nothing outside the folder is touched, unknown remote state rebuilds."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from kubernaut_e2e.errors import UsageError
from kubernaut_e2e.sync import MARKER, Entry, check_remote_dir, plan_sync, scan_tree, sync_tree
from tests.sshd import ssh_connection, sshd  # noqa: F401


def _file(digest: str, size: int = 1, mode: int = 0o644) -> Entry:
    return Entry("file", mode, size=size, digest=digest)


DIR = Entry("dir", 0o755)


def test_an_unknown_remote_gets_everything_parents_first():
    plan = plan_sync(None, {"a/b.txt": _file("1"), "a": DIR, "z": _file("2")})
    assert plan.full and plan.delete == ()
    assert set(plan.send) == {"a", "a/b.txt", "z"} and plan.send.index("a") < plan.send.index("a/b.txt")


def test_only_changes_are_sent_and_gone_paths_deleted_top_most():
    old = {"a": DIR, "a/keep": _file("k"), "a/edit": _file("1"), "gone": DIR, "gone/x": _file("x"),
           "gone/y": DIR, "gone/y/z": _file("z"), "mode": DIR}
    new = {"a": DIR, "a/keep": _file("k"), "a/edit": _file("2"), "a/new": _file("n"),
           "mode": Entry("dir", 0o700)}
    plan = plan_sync(old, new)
    assert not plan.full
    assert set(plan.send) == {"a/edit", "a/new", "mode"}
    assert set(plan.delete) == {"gone", "a/edit"}  # a changed file is removed before it is written again


def test_a_path_that_changes_kind_is_deleted_then_sent():
    old = {"p": _file("1"), "d": DIR, "d/x": _file("x"), "l": Entry("link", 0o777, digest="t")}
    new = {"p": DIR, "p/inner": _file("i"), "d": Entry("link", 0o777, digest="elsewhere"),
           "l": Entry("link", 0o777, digest="t2")}
    plan = plan_sync(old, new)
    assert set(plan.delete) == {"p", "d", "l"}
    assert plan.send == ("d", "l", "p", "p/inner")


def test_mtime_alone_is_not_a_change():
    old = {"f": Entry("file", 0o644, 1, "h", mtime_ns=1)}
    assert plan_sync(old, {"f": Entry("file", 0o644, 1, "h", mtime_ns=2)}).send == ()


def test_scan_skips_build_irrelevant_folders_and_keeps_links_as_links(tmp_path: Path):
    (tmp_path / "src" / ".git").mkdir(parents=True)
    (tmp_path / "src" / ".git" / "HEAD").write_text("ref")
    (tmp_path / "src" / "pkg").mkdir()
    (tmp_path / "src" / "pkg" / "main.go").write_text("package main\n")
    os.symlink("/etc", tmp_path / "src" / "outside")
    os.mkfifo(tmp_path / "src" / "fifo")
    found = scan_tree(tmp_path / "src")
    assert set(found) == {"pkg", "pkg/main.go", "outside"}
    assert found["outside"] == Entry("link", found["outside"].mode, digest="/etc")
    assert found["pkg/main.go"].size == 13 and len(found["pkg/main.go"].digest) == 64


def test_hashes_are_reused_while_size_and_mtime_are_unchanged(tmp_path: Path):
    path = tmp_path / "f"
    path.write_text("aaaa")
    first = scan_tree(tmp_path)
    st = path.stat()
    path.write_text("bbbb")  # same size; put the old mtime back: the quick check cannot tell
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert scan_tree(tmp_path, first)["f"].digest == first["f"].digest
    assert scan_tree(tmp_path)["f"].digest != first["f"].digest  # without the cache it reads the file


@pytest.mark.parametrize("bad", ["", "/", ".", "single", "a/../b", "~/x/y", "/a/.."])
def test_a_remote_folder_that_could_be_a_home_or_root_is_refused(bad: str):
    with pytest.raises(UsageError, match="remote folder"):
        check_remote_dir(bad)


def _tree(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """Everything under root (links not followed) as (kind, mode, content or target)."""
    out: dict[str, tuple[str, int, bytes | str]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), b"")
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return out


def _source(root: Path) -> Path:
    src = root / "kubernaut"
    (src / "cmd" / "gateway").mkdir(parents=True)
    (src / "cmd" / "gateway" / "main.go").write_text("package main\n" * 50)
    (src / "vendor" / "big").mkdir(parents=True)
    for i in range(20):
        (src / "vendor" / "big" / f"f{i}.go").write_bytes(os.urandom(4096))
    (src / "hack").mkdir()
    (src / "hack" / "build.sh").write_text("#!/bin/sh\necho build\n")
    (src / "hack" / "build.sh").chmod(0o755)
    (src / "empty").mkdir()
    (src / ".git").mkdir()
    (src / ".git" / "objects").write_bytes(os.urandom(100_000))
    os.symlink("cmd/gateway", src / "gw")
    return src


def test_sync_sends_only_changes_and_propagates_deletions(ssh_connection, tmp_path: Path):
    src = _source(tmp_path)
    remote = tmp_path / "host" / "clusters" / "gateway-e2e" / "source"
    record = tmp_path / "state" / "sync.json"

    first = sync_tree(ssh_connection, src, str(remote), record)
    assert first.full and first.sent == len(scan_tree(src))
    expected = _tree(src)
    del expected[".git"], expected[".git/objects"]
    got = _tree(remote)
    assert got.pop(MARKER)[0] == "file"
    assert got == expected
    assert stat.S_IMODE(record.stat().st_mode) == 0o600

    unchanged = sync_tree(ssh_connection, src, str(remote), record)
    assert (unchanged.bytes_sent, unchanged.sent, unchanged.deleted, unchanged.full) == (0, 0, 0, False)

    changed = os.urandom(50_000)  # incompressible: the bytes sent are about the file's size
    (src / "vendor" / "big" / "f3.go").write_bytes(changed)
    one = sync_tree(ssh_connection, src, str(remote), record)
    assert (one.sent, one.full) == (1, False)
    assert len(changed) <= one.bytes_sent <= len(changed) + 4096, one.bytes_sent
    assert (remote / "vendor" / "big" / "f3.go").read_bytes() == changed

    (src / "hack" / "build.sh").unlink()
    (src / "empty").rmdir()
    for path in (src / "vendor" / "big").iterdir():
        path.unlink()
    (src / "vendor" / "big").rmdir()
    (src / "gw").unlink()
    os.symlink("hack", src / "gw")
    gone = sync_tree(ssh_connection, src, str(remote), record)
    assert gone.bytes_sent < 2048 and not gone.full
    got = _tree(remote)
    got.pop(MARKER)
    assert got == {k: v for k, v in _tree(src).items() if not k.startswith(".git")}
    assert not (remote / "vendor" / "big").exists() and os.readlink(remote / "gw") == "hack"


def test_unknown_remote_state_rebuilds_the_folder_and_touches_nothing_outside(ssh_connection, tmp_path: Path):
    src = _source(tmp_path)
    remote = tmp_path / "host" / "clusters" / "gateway-e2e" / "source"
    beside = tmp_path / "host" / "clusters" / "gateway-e2e" / "kubeconfig"
    record = tmp_path / "state" / "sync.json"
    sync_tree(ssh_connection, src, str(remote), record)
    beside.write_text("not the sync's")
    target = tmp_path / "precious"
    target.mkdir()
    (target / "keep.txt").write_text("keep")

    # Someone else synced (or the host was cleaned): the marker no longer matches the record.
    (remote / MARKER).write_text("another-sync\n")
    (remote / "stray.txt").write_text("left by someone")
    os.symlink(target, remote / "cmd" / "into-precious")
    rebuilt = sync_tree(ssh_connection, src, str(remote), record)
    assert rebuilt.full
    assert not (remote / "stray.txt").exists() and not (remote / "cmd" / "into-precious").exists()
    assert (target / "keep.txt").read_text() == "keep"  # the link was removed, not followed
    assert beside.read_text() == "not the sync's"

    # A sync cut off before its end leaves no marker: the next one rebuilds as well.
    (remote / MARKER).unlink()
    assert sync_tree(ssh_connection, src, str(remote), record).full
    assert sync_tree(ssh_connection, src, str(remote), record).bytes_sent == 0


def test_a_failing_remote_side_is_reported(ssh_connection, tmp_path: Path):
    src = _source(tmp_path)
    blocker = tmp_path / "host" / "file-not-folder"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("x")
    from kubernaut_e2e.sync import SyncFailed

    with pytest.raises(SyncFailed, match=f"preparing {blocker}/source on 127.0.0.1 failed: .*"):
        sync_tree(ssh_connection, src, str(blocker / "source"), tmp_path / "record.json")
    assert not (tmp_path / "record.json").exists()


def test_the_remote_copy_builds_like_the_local_one(ssh_connection, tmp_path: Path):
    # Modes and contents survive: an executable script stays executable on the host.
    src = _source(tmp_path)
    remote = tmp_path / "host" / "a" / "source"
    sync_tree(ssh_connection, src, str(remote), tmp_path / "record.json")
    out = subprocess.run([str(remote / "hack" / "build.sh")], capture_output=True, text=True, check=True)
    assert out.stdout == "build\n"
