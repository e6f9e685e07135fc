"""Helpers for tests that drive the stand-in `kind` (tests/bin/kind).

The stand-in keeps its state under a directory named by $KIND_STANDIN_STATE;
these helpers read that state and configure injected behaviour:

    env = standin_env(tmp_path / "kind")            # PATH + KIND_STANDIN_STATE
    set_behaviour(tmp_path / "kind", delay={"create cluster": 1.0},
                  fail={"load image-archive": {"exit": 1, "message": "ERROR: ...", "times": 1}})
    interrupted_create(tmp_path / "kind", "e2e", env)  # what a killed real `kind create` leaves
    ... run the product with env ...
    clusters(tmp_path / "kind")                     # {"name": cluster.json contents}
    read_calls(tmp_path / "kind")                   # finished invocations, in order

Import as `from tests.kindstate import ...` (repo root on sys.path).
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = REPO_ROOT / "tests" / "bin"
KIND_STANDIN = BIN_DIR / "kind"

# Inherited variables that would change what the stand-in does (or, for
# KUBECONFIG, where it writes); standin_env() drops them so runs are hermetic.
_HERMETIC_UNSET = ("KUBECONFIG", "KIND_CLUSTER_NAME", "KIND_EXPERIMENTAL_PROVIDER", "KIND_STANDIN_API_SERVER",
                   "KIND_STANDIN_REAL_KUBECONFIG")


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """The same flock the stand-in takes around its state changes."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_calls(state_dir: str | os.PathLike[str], include_started: bool = False) -> list[dict[str, Any]]:
    """Invocations recorded in <state>/calls.jsonl, oldest first.

    By default only finished calls: {"argv", "provider", "pid", "cwd", "start",
    "end", "exit"}. With include_started=True every line is returned, including
    the {"event": "start", "argv", "pid", "start"} line each call writes first --
    a start line whose pid has no finished line means the process was killed.
    """
    state = Path(state_dir)
    path = state / "calls.jsonl"
    if not path.exists():
        return []
    with _locked(state):  # never read a line the stand-in is half-way through writing
        lines = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    if include_started:
        return records
    return [record for record in records if "event" not in record]


def clusters(state_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Every cluster the stand-in holds (all providers), keyed by name.

    Values are the cluster.json records: {"name", "nodes", "images", "config",
    "kubeconfig", "provider", ...}.
    """
    base = Path(state_dir) / "clusters"
    found: dict[str, dict[str, Any]] = {}
    if not base.is_dir():
        return found
    for entry in sorted(base.iterdir()):
        record_path = entry / "cluster.json"
        if record_path.is_file():
            found[entry.name] = json.loads(record_path.read_text(encoding="utf-8"))
    return found


def set_behaviour(
    state_dir: str | os.PathLike[str],
    *,
    delay: dict[str, float] | None = None,
    fail: dict[str, dict[str, Any]] | None = None,
    stall: dict[str, float] | None = None,
) -> None:
    """Replace <state>/behaviour.json.

    Keys are kind's command words: "create cluster", "delete cluster",
    "get clusters", "get kubeconfig", "get nodes", "load image-archive",
    "export logs", "version".
    delay: seconds to sleep before the command acts (for create: after its
        first "Creating cluster" line, before any state is written).
    fail: {"exit": int (default 1), "message": str printed verbatim to stderr,
        "times": int (optional; fail only that many calls, then succeed)}.
    stall: seconds "create cluster" sleeps after its node containers exist and
        before the control plane is up (real kind's kubeadm init); a kill there
        leaves a listed-but-unusable cluster, as real kind does.
    Calling it with no argument clears all injected behaviour.
    """
    state = Path(state_dir)
    behaviour = {"delay": dict(delay or {}), "fail": {key: dict(value) for key, value in (fail or {}).items()},
                 "stall": dict(stall or {})}
    with _locked(state):
        tmp = state / f".behaviour.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(behaviour, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, state / "behaviour.json")


def interrupted_create(state_dir: str | os.PathLike[str], name: str, env: dict[str, str],
                       kubeconfig: str | os.PathLike[str] | None = None, timeout: float = 20.0) -> None:
    """Leave what a `kind create cluster` killed during kubeadm init leaves (kind issue #2014-style).

    Runs the stand-in's create with a long "stall", waits until its node containers are
    recorded, then kills it with SIGKILL -- real kind has no signal handling either. The
    cluster is then listed by `get clusters` but `get kubeconfig` fails. Other injected
    behaviour is cleared.
    """
    state = Path(state_dir)
    set_behaviour(state, stall={"create cluster": 600})
    argv = [str(KIND_STANDIN), "create", "cluster", "--name", name]
    if kubeconfig is not None:
        argv += ["--kubeconfig", str(kubeconfig)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while name not in clusters(state):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"stand-in create of {name!r} ended or hung before its nodes existed")
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
        set_behaviour(state)


def standin_env(state_dir: str | os.PathLike[str], api_server: str | None = None,
                real_kubeconfig: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """A copy of os.environ that makes `kind` resolve to the stand-in.

    PATH is prefixed with tests/bin and KIND_STANDIN_STATE points at state_dir
    (created if needed); KIND_STANDIN_API_SERVER is set when api_server is
    given (the `server:` written into kubeconfigs). KUBECONFIG,
    KIND_CLUSTER_NAME, KIND_EXPERIMENTAL_PROVIDER and any inherited
    KIND_STANDIN_API_SERVER are removed so a developer's environment cannot
    leak in -- set them on the returned dict when a test needs them.
    real_kubeconfig: create adopts that real control plane (KIND_STANDIN_REAL_KUBECONFIG;
    the real_cluster tier's `RealCluster.kubeconfig`), delete cleans it up.
    """
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    for name in _HERMETIC_UNSET:
        env.pop(name, None)
    env["PATH"] = str(BIN_DIR) + os.pathsep + env.get("PATH", os.defpath)
    env["KIND_STANDIN_STATE"] = str(state.resolve())
    if api_server is not None:
        env["KIND_STANDIN_API_SERVER"] = api_server
    if real_kubeconfig is not None:
        env["KIND_STANDIN_REAL_KUBECONFIG"] = str(real_kubeconfig)
    return env
