"""Benchmark: what SSH adds, measured against a real sshd on loopback (issue 12).

Part "commands": the cost of one command through RemoteRunner vs LocalRunner. A remote
command's cost is mostly sshd starting a session and the remote user's login shell reading its
rc files (run `bash -ic true` on the host to see that part).
Part "sync": for the source sync, the bytes sent and the time for the first (full) sync, an
unchanged tree, a one-file change and a one-file deletion. The tree is `--tree PATH`, else the
Go parts of the upstream Kubernaut checkout when its git mirror is on this machine, else a
synthetic tree.
Part "up": the same `invoke e2e.up --only images` on this machine and with `--host` over
loopback SSH (real podman builds of the test tier's FROM-scratch images, the stand-in kind,
the Kubernaut-shaped fixture tree): cold (cluster created, everything built; over SSH the whole
tree sent), unchanged (everything reused, nothing sent) and one file changed (one image rebuilt,
one file sent), `--rounds` times each but cold; wall time of the command, the run's makespan, and
the bytes the sync-source step sent. Over loopback the network costs nothing: what remains is
what the SSH machinery adds (sessions, the wrapper, tunnels, the sync). "ssh" is the remote
user's own shell, which reads its rc files for every command (here root's ~/.bashrc runs `pyenv
init`); "ssh, lean shell" is the same sshd with a HOME without rc files.

    python3 bench/remote_overhead.py [--part all|commands|sync|up] [--commands 20] [--tree PATH] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
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
    parser.add_argument("--part", choices=("all", "commands", "sync", "up"), default="all")
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--tree")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {platform.platform()}")
    if args.part in ("all", "commands", "sync"):
        bench_runner_and_sync(args)
    if args.part in ("all", "up"):
        bench_up(args)
    return 0


def bench_runner_and_sync(args: argparse.Namespace) -> None:
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
            if args.part in ("all", "commands"):
                for _ in range(args.commands):
                    for name, runner in (("local", local), ("ssh", remote)):
                        started = time.monotonic()
                        runner.run(["true"])
                        timings[name].append(time.monotonic() - started)
                print(f"\none command (`true`), {args.commands} runs each")
                print(f"  LocalRunner            {mean_ms(timings['local'])}")
                print(f"  RemoteRunner (loopback) {mean_ms(timings['ssh'])}")
            if args.part not in ("all", "sync"):
                return

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


# --- up --only images, here and over SSH ----------------------------------------------------------

def bench_up(args: argparse.Namespace) -> None:
    from tests.conftest import _HELLO_C, FAST_STACK, PRELOAD_IMAGES, free_ports, host_ports_setting, make_source_tree
    from tests.kindstate import standin_env

    from kubernaut_e2e.stack import load_stack

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        containers = tmp / "containers.conf"
        containers.write_text('[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n')
        store = tmp / "store"
        storage = tmp / "storage.conf"
        storage.write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{store / "run"}"\ngraphroot = "{store / "graph"}"\n')
        podman_env = {**os.environ, "CONTAINERS_CONF": str(containers), "CONTAINERS_STORAGE_CONF": str(storage)}
        (tmp / "hello.c").write_text(_HELLO_C)
        subprocess.run(["gcc", "-static", "-Os", "-o", str(tmp / "hello"), str(tmp / "hello.c")], check=True)
        preload = tmp / "preload"
        preload.mkdir()
        shutil.copy(tmp / "hello", preload / "hello")
        (preload / "Containerfile").write_text('FROM scratch\nCOPY hello /hello\nENTRYPOINT ["/hello"]\n')
        for ref in PRELOAD_IMAGES:
            subprocess.run(["podman", "build", "-q", "-t", ref, str(preload)], env=podman_env, check=True,
                           capture_output=True)
        stack = load_stack(FAST_STACK)
        kind_state = tmp / "kind-state"
        common = {"CI": "true", "CONTAINERS_CONF": str(containers), "CONTAINERS_STORAGE_CONF": str(storage),
                  "INVOKE_E2E_STACK": str(FAST_STACK)}
        remote_env = {**common, "KIND_STANDIN_STATE": str(kind_state), "KIND_STANDIN_PUBLISH_PORTS": "1",
                      "XDG_STATE_HOME": str(tmp / "remote-state")}
        print(f"\n`invoke e2e.up --only images` (fast stack: FROM-scratch images, stand-in kind), "
              f"{args.rounds} rounds of each warm run")
        rows = []
        (tmp / "lean-home").mkdir()
        try:
            with start_sshd(tmp / "sshd", env=remote_env) as server, \
                    start_sshd(tmp / "sshd-lean", env={**remote_env, "HOME": str(tmp / "lean-home")}) as lean:
                home = tmp / "home"
                (home / ".ssh").mkdir(parents=True)
                for name, srv in (("id_ed25519", server), ("id_lean", lean)):
                    shutil.copy(srv.client_key, home / ".ssh" / name)
                    (home / ".ssh" / name).chmod(0o600)
                    with (home / ".ssh" / "known_hosts").open("a") as fh:
                        fh.write(srv.known_hosts.read_text())
                (home / ".ssh" / "config").write_text(f"Host 127.0.0.1\n  IdentityFile {home / '.ssh' / 'id_lean'}\n")
                for where, srv in (("local", None), ("ssh", server), ("ssh, lean shell", lean)):
                    folder = tmp / where.replace(", ", "-").replace(" ", "-")
                    src = make_source_tree(folder, tmp / "hello")
                    ports = dict(zip((p.name for p in stack.cluster.ports), free_ports(len(stack.cluster.ports))))
                    env = {**standin_env(kind_state), **common, "KIND_STANDIN_PUBLISH_PORTS": "1",
                           "INVOKE_E2E_SOURCE_DIR": str(src), "INVOKE_E2E_STATE_DIR": str(folder / "state"),
                           "INVOKE_E2E_CLUSTER_NAME": f"bench-{folder.name}",
                           "INVOKE_E2E_HOST_PORTS": host_ports_setting(ports)}
                    flags: list[str] = []
                    if srv is not None:
                        env = {k: v for k, v in env.items() if not k.startswith("KIND_")}
                        env.update({"HOME": str(home), "PATH": os.environ["PATH"]})
                        flags = [f"--host={srv.user}@127.0.0.1:{srv.port}"]
                    runs = {"cold": [run_up(env, flags)]}
                    runs["unchanged"] = [run_up(env, flags) for _ in range(args.rounds)]
                    runs["one file changed"] = []
                    for i in range(args.rounds):
                        with (src / "cmd" / "gateway" / "main.go").open("a") as fh:
                            fh.write(f"// change {i}\n")
                        runs["one file changed"].append(run_up(env, flags))
                    for kind_of, measured in runs.items():
                        rows.append((where, kind_of, measured))
        finally:
            subprocess.run([str(ROOT / "tests" / "bin" / "kind"), "delete", "clusters", "--all"],
                           env={**standin_env(kind_state), "KIND_EXPERIMENTAL_PROVIDER": "podman"}, capture_output=True)
        print(f"  {'where':<16} {'run':<17} {'wall (median)':>14} {'makespan':>9} {'sync-source':>12}  bytes sent")
        for where, kind_of, measured in rows:
            wall = statistics.median(m["wall"] for m in measured)
            makespan = statistics.median(m["makespan"] for m in measured)
            sync = [m["sync"] for m in measured if m["sync"] is not None]
            sync_time = f"{statistics.median(s[0] for s in sync):10.2f} s" if sync else f"{'-':>12}"
            sent = ", ".join(f"{s[1]:,}" for s in sync) if sync else "-"
            print(f"  {where:<16} {kind_of:<17} {wall:12.2f} s {makespan:7.2f} s {sync_time}  {sent}")


def run_up(env: dict[str, str], flags: list[str]) -> dict[str, object]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "invoke", "e2e.up", "--only", "images", *flags], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"e2e.up failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    state = Path(env["INVOKE_E2E_STATE_DIR"])
    runs = sorted(state.rglob("timings.json"), key=lambda p: p.stat().st_mtime)
    timings = json.loads(runs[-1].read_text())
    sync = next(((s["duration"], _bytes(s["note"])) for s in timings["steps"] if s["name"] == "sync-source"), None)
    return {"wall": wall, "makespan": timings["makespan"], "sync": sync}


def _bytes(note: str) -> int:
    """The bytes a sync-source note names ("... 12,345 bytes sent"; "nothing sent" is 0)."""
    words = note.replace(",", "").split()
    return int(words[words.index("bytes") - 1]) if "bytes" in words else 0


if __name__ == "__main__":
    raise SystemExit(main())
