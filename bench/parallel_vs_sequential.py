"""Benchmark: how close the scheduler gets to the critical path.

Part "images": the same `e2e.up --only images` graph with --jobs 1 (sequential) and --jobs 4.
Real podman builds and saves; the stand-in kind (tests/bin/kind) takes --kind-delay seconds to
create a cluster, standing in for Kind's ~2.6 min, and --build-delay adds that many seconds
before each real `podman build` (tests/faults/wrapper), standing in for compiling Go. Prints
measured makespans, sums of step durations and critical paths from each run's timings.json, and
the cold critical-path overhead: makespan minus the sum of the step bodies on the critical path
(what the scheduler, process starts and waiting added to the chain that set the run's length).

Part "dag": a random 200-step graph whose steps sleep random durations, declared in a random
(valid) order, run by the real scheduler at --dag-jobs 8 with three dispatch orders: declaration
order (the old scheduler: every priority equal, so ties go to declaration order), longest
remaining path counted in steps (no history yet), and longest remaining path in seconds (the
durations known, as the run history gives them). Prints makespan / critical path (goal <= 1.1)
and makespan / lower bound, the bound being max(critical path, total work / jobs).

    python3 bench/parallel_vs_sequential.py [--part all|images|dag] [--rounds 3] [--kind-delay 4]
        [--build-delay 2] [--dag-steps 200] [--dag-graphs 5] [--dag-jobs 8] [--dag-scale 0.3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernaut_e2e.graph import Graph, Step  # noqa: E402
from kubernaut_e2e.scheduler import run_graph  # noqa: E402
from kubernaut_e2e.timings import summarise  # noqa: E402
from tests.conftest import _HELLO_C, _TEST_DOCKERFILE, make_source_tree  # noqa: E402
from tests.kindstate import set_behaviour, standin_env  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "images", "dag"), default="all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kind-delay", type=float, default=4.0)
    parser.add_argument("--build-delay", type=float, default=2.0)
    parser.add_argument("--dag-steps", type=int, default=200)
    parser.add_argument("--dag-graphs", type=int, default=5)
    parser.add_argument("--dag-jobs", type=int, default=8)
    parser.add_argument("--dag-scale", type=float, default=0.3, help="seconds per unit of step duration")
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {platform.platform()}")
    if args.part in ("all", "dag"):
        bench_dag(args)
    if args.part in ("all", "images"):
        return bench_images(args)
    return 0


# --- the random DAG ------------------------------------------------------------------------------

def random_dag(seed: int, steps: int, scale: float) -> tuple[Graph, dict[str, float]]:
    """`steps` steps, each needing up to 3 of the 20 steps generated before it (long chains,
    wide layers), sleeping 0.05..2 x `scale` s (mostly short, a few long), declared in a random
    valid order, so declaration order says nothing about what is urgent."""
    rnd = random.Random(seed)
    names = [f"s{i:03d}" for i in range(steps)]
    durations = {n: (rnd.uniform(0.05, 1.0) ** 2) * 2 * scale for n in names}
    needs = {n: tuple(rnd.sample(names[max(0, i - 20):i], min(i, 20, rnd.randint(0, 3))))
             for i, n in enumerate(names)}
    waiting = {n: set(ns) for n, ns in needs.items()}
    declared: list[str] = []
    while waiting:
        name = rnd.choice(sorted(n for n, ns in waiting.items() if not ns))
        declared.append(name)
        del waiting[name]
        for ns in waiting.values():
            ns.discard(name)
    return Graph.of(Step(n, body=lambda ctx: None, needs=needs[n]) for n in declared), durations


def bench_dag(args: argparse.Namespace) -> None:
    dispatch = {
        "declaration order (old)": lambda d: {n: 0.0 for n in d},
        "longest path, in steps": lambda d: None,
        "longest path, in seconds": lambda d: d,
    }
    ratios: dict[str, list[tuple[float, float]]] = {k: [] for k in dispatch}
    for seed in range(args.dag_graphs):
        graph, durations = random_dag(seed, args.dag_steps, args.dag_scale)
        critical = max(graph.remaining_path(durations).values())
        bound = max(critical, sum(durations.values()) / args.dag_jobs)
        line = [f"seed {seed}: critical path {critical:5.2f}s, work/jobs {sum(durations.values()) / args.dag_jobs:5.2f}s"]
        for label, weights in dispatch.items():
            records = run_graph(graph, lambda step: time.sleep(durations[step.name]), jobs=args.dag_jobs,
                                weights=weights(durations))
            makespan = summarise(records).makespan
            ratios[label].append((makespan / critical, makespan / bound))
            line.append(f"{label}: {makespan:5.2f}s")
        print("; ".join(line))
    print(f"{args.dag_steps}-step random DAG, --jobs {args.dag_jobs}, {args.dag_graphs} graphs "
          f"(median over graphs; makespan / critical path, makespan / lower bound):")
    for label, values in ratios.items():
        print(f"  {label:26s} x{statistics.median(v[0] for v in values):.3f} of the critical path "
              f"(max x{max(v[0] for v in values):.3f}), x{statistics.median(v[1] for v in values):.3f} "
              f"of the lower bound")


# --- up --only images ------------------------------------------------------------------------------

def critical_overhead(doc: dict) -> float:
    """Makespan minus the sum of the step bodies on the measured critical path."""
    durations = {s["name"]: s["duration"] or 0.0 for s in doc["steps"]}
    return doc["makespan"] - sum(durations[n] for n in doc["critical_path"])


def bench_images(args: argparse.Namespace) -> int:
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
    overheads = [critical_overhead(d) for d in results[4]]
    print(f"cold critical-path overhead at --jobs 4 (makespan - sum of the critical path's step bodies): "
          f"median {statistics.median(overheads):.3f}s (min {min(overheads):.3f}, max {max(overheads):.3f}); "
          f"makespan / critical path x{statistics.median(d['makespan'] / (d['makespan'] - critical_overhead(d)) for d in results[4]):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
