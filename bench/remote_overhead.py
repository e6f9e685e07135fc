"""Benchmark: what SSH adds, measured against a real sshd on loopback (phase 1 of issue 12).

Prints the cost of one command through RemoteRunner vs LocalRunner, and for the source sync the
bytes sent and the time for the first (full) sync, an unchanged tree, a one-file change and a
one-file deletion. A remote command's cost is mostly sshd starting a session and the remote
user's login shell reading its rc files (run `bash -ic true` on the host to see that part). The
tree is `--tree PATH`, else the Go parts of the upstream Kubernaut
checkout when its git mirror is on this machine, else a synthetic tree. (The same `up --only
images` locally and over SSH comes with phase 2, when `--host` is wired into `up`.)

    python3 bench/remote_overhead.py [--commands 20] [--tree PATH]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernaut_e2e.remote import RemoteRunner  # noqa: E402
from kubernaut_e2e.runner import Cancellation, LocalRunner  # noqa: E402
from kubernaut_e2e.sync import sync_tree  # noqa: E402
from tests.sshd import start_sshd  # noqa: E402

MIRROR = Path("/work/.mirror/jordigilh+kubernaut/repo")
UPSTREAM_PARTS = ["cmd", "pkg", "internal", "api", "config", "test", "go.mod", "go.sum", "migrations", "hack"]


def make_tree(dest: Path, given: str | None) -> str:
    if given:
        subprocess.run(["cp", "-a", f"{given}/.", str(dest)], check=True)
        return given
    if MIRROR.is_dir():
        archive = subprocess.run(["git", "-C", str(MIRROR), "archive", "HEAD", *UPSTREAM_PARTS],
                                 capture_output=True, check=False)
        if archive.stdout:
            subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
            return f"upstream Kubernaut ({', '.join(UPSTREAM_PARTS)})"
    for i in range(2000):
        folder = dest / "pkg" / f"p{i // 50}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.go").write_text(f"package p{i // 50}\n\n// {os.urandom(16).hex()}\n" + "var x = 1\n" * 400)
    return "synthetic (2000 Go-like files)"


def mean_ms(samples: list[float]) -> str:
    return f"{statistics.mean(samples) * 1000:7.1f} ms (median {statistics.median(samples) * 1000:.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, start_sshd(Path(tmp_name) / "sshd") as server:
        tmp = Path(tmp_name)
        src = tmp / "src"
        src.mkdir()
        what = make_tree(src, args.tree)
        files = [p for p in src.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        connection = server.connect()
        try:
            local, remote = LocalRunner(Cancellation()), RemoteRunner(connection, Cancellation())
            timings: dict[str, list[float]] = {"local": [], "ssh": []}
            for _ in range(args.commands):
                for name, runner in (("local", local), ("ssh", remote)):
                    started = time.monotonic()
                    runner.run(["true"])
                    timings[name].append(time.monotonic() - started)
            print(f"one command (`true`), {args.commands} runs each")
            print(f"  LocalRunner            {mean_ms(timings['local'])}")
            print(f"  RemoteRunner (loopback) {mean_ms(timings['ssh'])}")

            print(f"\nsource sync of {what}: {len(files)} files, {size / 2**20:.1f} MiB")
            dest, record = str(tmp / "host" / "clusters" / "gateway-e2e" / "source"), tmp / "record.json"
            target = max(files, key=lambda p: p.stat().st_size if p.suffix == ".go" else 0)

            def measure(label: str) -> None:
                started = time.monotonic()
                result = sync_tree(connection, src, dest, record)
                print(f"  {label:<34} {result.bytes_sent:>11,} bytes sent  {time.monotonic() - started:6.2f} s"
                      f"  ({result.sent} sent, {result.deleted} deleted{', full' if result.full else ''})")

            measure("first sync (everything)")
            measure("unchanged tree")
            with target.open("a") as fh:
                fh.write("// one more line\n")
            measure(f"one file changed ({target.stat().st_size:,} bytes)")
            target.unlink()
            measure("one file deleted")
        finally:
            connection.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
