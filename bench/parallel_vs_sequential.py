"""Benchmark: the same `e2e.up --only images` graph with --jobs 1 (sequential) and --jobs 4.

Real podman builds and saves; the stand-in kind (tests/bin/kind) takes --kind-delay seconds to
create a cluster, standing in for Kind's ~2.6 min, and --build-delay adds that many seconds
before each real `podman build` (tests/faults/wrapper), standing in for compiling Go. Prints
measured makespans, sums of step durations and critical paths from each run's timings.json.

    python3 bench/parallel_vs_sequential.py [--rounds 3] [--kind-delay 4] [--build-delay 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import _HELLO_C, _TEST_DOCKERFILE, make_source_tree  # noqa: E402
from tests.kindstate import set_behaviour, standin_env  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kind-delay", type=float, default=4.0)
    parser.add_argument("--build-delay", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "hello.c").write_text(_HELLO_C)
        subprocess.run(["gcc", "-static", "-Os", "-o", str(tmp / "hello"), str(tmp / "hello.c")], check=True)
        conf = tmp / "containers.conf"
        conf.write_text('[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n')
        storage = tmp / "storage.conf"  # a throw-away image store, not the machine's
        storage.write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{tmp / "run"}"\ngraphroot = "{tmp / "graph"}"\n')
        dockerfiles = tmp / "dockerfiles"
        dockerfiles.mkdir()
        for svc in ("gateway", "datastorage"):
            (dockerfiles / f"Dockerfile.{svc}").write_text(_TEST_DOCKERFILE.replace("{svc}", svc))
        source = make_source_tree(tmp, tmp / "hello")
        results: dict[int, list[dict]] = {1: [], 4: []}
        for _ in range(args.rounds):
            for jobs in (1, 4):
                tag = uuid.uuid4().hex[:8]
                kind_state = tmp / f"kind-{tag}"
                set_behaviour(kind_state, delay={"create cluster": args.kind_delay})
                env = standin_env(kind_state)
                if args.build_delay > 0:
                    env["PATH"] = f"{ROOT / 'tests' / 'faults'}{os.pathsep}{env['PATH']}"
                    env.update({"FAULT_SPEC": "podman build:slow", "FAULT_SLOW": str(args.build_delay)})
                env.update({
                    "CI": "true", "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage),
                    "INVOKE_E2E_SOURCE_DIR": str(source), "INVOKE_E2E_DOCKERFILE_DIR": str(dockerfiles),
                    "INVOKE_E2E_STATE_DIR": str(tmp / f"state-{tag}"), "INVOKE_E2E_CLUSTER_NAME": f"b-{tag}",
                    "INVOKE_E2E_GATEWAY_IMAGE": f"localhost/bench-gw-{tag}:t",
                    "INVOKE_E2E_DATASTORAGE_IMAGE": f"localhost/bench-ds-{tag}:t",
                })
                # Touch the tree so the build is never skipped as unchanged.
                (source / "cmd" / "gateway" / "main.go").write_text(f"package main\n// {tag}\nfunc main() {{}}\n")
                run = subprocess.run([sys.executable, "-m", "invoke", "e2e.up", "--only", "images", "--jobs", str(jobs)],
                                     cwd=ROOT, env=env, capture_output=True, text=True)
                if run.returncode != 0:
                    print(run.stdout, run.stderr)
                    return 1
                runs = sorted((tmp / f"state-{tag}" / "runs").iterdir())
                results[jobs].append(json.loads((runs[-1] / "timings.json").read_text()))
                subprocess.run([sys.executable, "-m", "invoke", "e2e.clean"], cwd=ROOT, env=env,
                               capture_output=True, check=True)
    print(f"e2e.up --only images, stand-in kind create = {args.kind_delay:g}s, real podman builds "
          f"+ {args.build_delay:g}s each, "
          f"{args.rounds} rounds, {os.cpu_count()} CPUs")
    for jobs, docs in results.items():
        makespans = [d["makespan"] for d in docs]
        sums = [d["sum_of_steps"] for d in docs]
        print(f"--jobs {jobs}: makespan median {statistics.median(makespans):6.2f}s "
              f"(min {min(makespans):.2f}, max {max(makespans):.2f}); sum of steps median "
              f"{statistics.median(sums):6.2f}s; critical path: {' -> '.join(docs[-1]['critical_path'])}")
    seq = statistics.median(d["makespan"] for d in results[1])
    par = statistics.median(d["makespan"] for d in results[4])
    print(f"speed-up of --jobs 4 over --jobs 1: x{seq / par:.2f} ({(1 - par / seq) * 100:.0f}% less wall time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
