"""Benchmark: how close the scheduler gets to the critical path, and what a warm `up` costs.

Part "images": the same `e2e.up --only images` graph with --jobs 1 (sequential) and --jobs 4.
Real podman builds and saves the fast stack's images (tests/stacks/fast); the stand-in kind
(tests/bin/kind) takes --kind-delay seconds to create a cluster, standing in for Kind's ~2.6 min,
and --build-delay adds that many seconds before each real `podman build` (tests/faults/wrapper),
standing in for compiling Go. Prints measured makespans, sums of step durations and critical paths
from each run's timings.json, and the cold critical-path overhead: makespan minus the sum of the
step bodies on the critical path (what the scheduler, process starts and waiting added to the chain
that set the run's length).

Part "up": the whole graph of the fast stack against the fast tier's stand-ins: the stand-in kind,
whose kubeconfig points at the API stand-in (tests/kubeapi.py, which records every request), and
real podman. Each round:
  - twice: with the Kubernetes client imported in the background while the cluster is created
    (what `up` does), and imported by the first step that needs it (a driver replaces
    kubernaut_e2e.up.start_client_import with a no-op): a cold `up` on a new cluster (makespan,
    cold critical-path overhead, the first Kubernetes steps after the cluster, which pay for the
    import when it was not done in the background), then a warm `up` with nothing changed
    (makespan, wall time, the cluster step, whose reuse check is the first API call);
  - one more warm run with every podman and kind call recorded (tests/faults/wrapper,
    FAULT_PIDS): the external commands by subcommand and the API requests by verb (goal: only
    reads), and how many objects the run changed.

Part "dag": a random 200-step graph whose steps sleep random durations, declared in a random
(valid) order, run by the real scheduler at --dag-jobs 8 with three dispatch orders: declaration
order (the old scheduler: every priority equal, so ties go to declaration order), longest
remaining path counted in steps (no history yet), and longest remaining path in seconds (the
durations known, as the run history gives them). Prints makespan / critical path (goal <= 1.1)
and makespan / lower bound, the bound being max(critical path, total work / jobs).

    python3 bench/parallel_vs_sequential.py [--part all|images|up|dag] [--rounds 3] [--kind-delay 4]
        [--build-delay 2] [--dag-steps 200] [--dag-graphs 5] [--dag-jobs 8] [--dag-scale 0.3]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernaut_e2e.graph import Graph, Step  # noqa: E402
from kubernaut_e2e.scheduler import run_graph  # noqa: E402
from kubernaut_e2e.timings import summarise  # noqa: E402
from tests.conftest import (_HELLO_C, FAST_STACK, MIGRATION_LOG, PRELOAD_IMAGES, free_ports,  # noqa: E402
                            host_ports_setting, make_source_tree)
from tests.kindstate import set_behaviour, standin_env  # noqa: E402

FAULTS = ROOT / "tests" / "faults"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "images", "up", "dag"), default="all")
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
    if args.part in ("all", "images", "up"):
        with tempfile.TemporaryDirectory() as tmp_name:
            world = World.make(Path(tmp_name))
            try:
                if args.part in ("all", "images") and bench_images(args, world):
                    return 1
                if args.part in ("all", "up") and bench_up(args, world):
                    return 1
            finally:
                subprocess.run(["podman", "rmi", "--all", "--force"], env=world.podman_env, capture_output=True)
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


# --- the fast stack, for real: shared setup ----------------------------------------------------

@dataclass(frozen=True)
class World:
    """A throw-away podman store with the fast stack's preload stand-ins, and a static binary."""

    tmp: Path
    podman_env: dict[str, str]
    hello: Path

    @staticmethod
    def make(tmp: Path) -> World:
        (tmp / "hello.c").write_text(_HELLO_C)
        subprocess.run(["gcc", "-static", "-Os", "-o", str(tmp / "hello"), str(tmp / "hello.c")], check=True)
        conf = tmp / "containers.conf"
        conf.write_text('[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n')
        storage = tmp / "storage.conf"  # a throw-away image store, not the machine's
        storage.write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{tmp / "run"}"\ngraphroot = "{tmp / "graph"}"\n')
        env = {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}
        preload = tmp / "preload"
        preload.mkdir()
        shutil.copy(tmp / "hello", preload / "hello")
        (preload / "Containerfile").write_text('FROM scratch\nCOPY hello /hello\nENTRYPOINT ["/hello"]\n')
        for ref in PRELOAD_IMAGES:
            subprocess.run(["podman", "build", "-q", "-t", ref, str(preload)], env=env, check=True, capture_output=True)
        return World(tmp, env, tmp / "hello")

    def env(self, kind_delay: float, api_server: str | None = None) -> tuple[dict[str, str], Path]:
        """The environment of one new cluster (its own name, source tree, state, free host ports)."""
        from kubernaut_e2e.stack import load_stack

        tag = uuid.uuid4().hex[:8]
        kind_state = self.tmp / f"kind-{tag}"
        set_behaviour(kind_state, delay={"create cluster": kind_delay})
        env = standin_env(kind_state, api_server=api_server)
        (self.tmp / tag).mkdir()
        ports = [p.name for p in load_stack(FAST_STACK).cluster.ports]
        state = self.tmp / f"state-{tag}"
        env.update({
            "CI": "true", "CONTAINERS_CONF": self.podman_env["CONTAINERS_CONF"],
            "CONTAINERS_STORAGE_CONF": self.podman_env["CONTAINERS_STORAGE_CONF"],
            "KIND_STANDIN_PUBLISH_PORTS": "1", "INVOKE_E2E_STACK": str(FAST_STACK),
            "INVOKE_E2E_SOURCE_DIR": str(make_source_tree(self.tmp / tag, self.hello)),
            "INVOKE_E2E_STATE_DIR": str(state), "INVOKE_E2E_CLUSTER_NAME": f"b-{tag}",
            "INVOKE_E2E_HOST_PORTS": host_ports_setting(dict(zip(ports, free_ports(len(ports))))),
        })
        return env, state


def run_up(env: dict[str, str], state: Path, *args: str, driver: str | None = None) -> tuple[dict, float]:
    """`invoke e2e.up ARGS` (or through `driver`); its timings.json and wall time. Exits on failure."""
    head = [sys.executable, "-c", driver] if driver else [sys.executable, "-m", "invoke"]
    started = time.monotonic()
    run = subprocess.run([*head, "e2e.up", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if run.returncode != 0:
        print(run.stdout[-5000:], run.stderr[-3000:])
        raise SystemExit(1)
    runs = sorted((state / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    return json.loads((runs[-1] / "timings.json").read_text()), wall


def clean(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "invoke", "e2e.clean"], cwd=ROOT, env=env, capture_output=True, check=True)


def with_build_delay(env: dict[str, str], seconds: float) -> dict[str, str]:
    if seconds <= 0:
        return env
    return {**env, "PATH": f"{FAULTS}{os.pathsep}{env['PATH']}", "FAULT_SPEC": "podman build:slow",
            "FAULT_SLOW": str(seconds)}


def critical_overhead(doc: dict) -> float:
    """Makespan minus the sum of the step bodies on the measured critical path."""
    durations = {s["name"]: s["duration"] or 0.0 for s in doc["steps"]}
    return doc["makespan"] - sum(durations[n] for n in doc["critical_path"])


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3f}s (min {min(values):.3f}, max {max(values):.3f})"


# --- up --only images ------------------------------------------------------------------------------

def bench_images(args: argparse.Namespace, world: World) -> int:
    results: dict[int, list[dict]] = {1: [], 4: []}
    for _ in range(args.rounds):
        for jobs in (1, 4):
            env, state = world.env(args.kind_delay)
            doc, _ = run_up(with_build_delay(env, args.build_delay), state, "--only", "images", "--jobs", str(jobs))
            results[jobs].append(doc)
            clean(env)
    print(f"e2e.up --only images, stand-in kind create = {args.kind_delay:g}s, real podman builds "
          f"+ {args.build_delay:g}s each, {args.rounds} rounds, {os.cpu_count()} CPUs")
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
          f"median {_median(overheads)}; makespan / critical path "
          f"x{statistics.median(d['makespan'] / (d['makespan'] - critical_overhead(d)) for d in results[4]):.3f}")
    return 0


# --- the whole up: cold (client import in the background or not), then warm ------------------------

#: Runs `invoke e2e.up` with the background import of the Kubernetes client switched off.
NO_BACKGROUND_IMPORT = ("import sys\nimport kubernaut_e2e.up as up\n"
                        "up.start_client_import = lambda graph: None\n"
                        "from invoke.main import program\nsys.argv = ['invoke', *sys.argv[1:]]\nprogram.run()\n")


def _step(doc: dict, name: str) -> float:
    return next(s["duration"] or 0.0 for s in doc["steps"] if s["name"] == name)


def bench_up(args: argparse.Namespace, world: World) -> int:
    from tests.kubeapi import JobSucceeds, KubeAPI

    modes = ("in the background", "by the first step")
    cold: dict[str, list[dict]] = {m: [] for m in modes}
    warm: dict[str, list[tuple[dict, float]]] = {m: [] for m in modes}
    counted: list[tuple[collections.Counter, collections.Counter, int]] = []
    for _ in range(args.rounds):
        for mode in modes:
            api = KubeAPI().start()
            try:
                api.script_job("e2e-migrations", JobSucceeds(after=0.2, log=MIGRATION_LOG))
                env, state = world.env(args.kind_delay, api.url)
                driver = None if mode == modes[0] else NO_BACKGROUND_IMPORT
                cold[mode].append(run_up(with_build_delay(env, args.build_delay), state, driver=driver)[0])
                warm[mode].append(run_up(env, state, driver=driver))
                if mode == modes[0]:
                    counted.append(_count_warm_run(env, state, api))
                clean(env)
            finally:
                api.stop()
    print(f"e2e.up, the whole fast stack against the stand-ins (kind create = {args.kind_delay:g}s, "
          f"real podman builds + {args.build_delay:g}s each), --jobs 4, {args.rounds} rounds; "
          f"the Kubernetes client imported {' or '.join(modes)}:")
    for mode, docs in cold.items():
        print(f"  cold, imported {mode:17s}: makespan {_median([d['makespan'] for d in docs])}; "
              f"critical-path overhead {_median([critical_overhead(d) for d in docs])}; "
              f"first Kubernetes steps: namespace {_median([_step(d, 'namespace') for d in docs])}, "
              f"crds {_median([_step(d, 'crds') for d in docs])}")
    print(f"  cold critical path: {' -> '.join(cold[modes[0]][-1]['critical_path'])}")
    for mode, runs in warm.items():
        docs = [d for d, _ in runs]
        print(f"  warm (nothing changed), imported {mode:17s}: makespan {_median([d['makespan'] for d in docs])}; "
              f"`invoke e2e.up` wall time {_median([w for _, w in runs])}; cluster step (reuse check: "
              f"kind, podman, GET /readyz) {_median([_step(d, 'cluster') for d in docs])}")
    docs = [d for d, _ in warm[modes[0]]]
    print(f"  warm steps reused: {sum(1 for s in docs[-1]['steps'] if (s['note'] or '').startswith('reused'))} "
          f"of {len(docs[-1]['steps'])}; critical path: {' -> '.join(docs[-1]['critical_path'])}")
    commands, requests, changed = counted[-1]
    print(f"one warm run's external commands ({sum(commands.values())}): "
          + ", ".join(f"{n} x `{c}`" for c, n in sorted(commands.items(), key=lambda kv: (-kv[1], kv[0]))))
    print(f"one warm run's API requests ({sum(requests.values())}): "
          + ", ".join(f"{n} {verb}" for verb, n in sorted(requests.items(), key=lambda kv: (-kv[1], kv[0])))
          + f"; objects whose resourceVersion the run changed: {changed}")
    return 0


def _count_warm_run(env: dict[str, str], state: Path, api) -> tuple[collections.Counter, collections.Counter, int]:  # type: ignore[no-untyped-def]
    """One more warm `up`, with every podman and kind call recorded and the API's requests counted."""
    calls = state.parent / f"calls-{uuid.uuid4().hex[:6]}"
    recorded = {**env, "PATH": f"{FAULTS}{os.pathsep}{env['PATH']}", "FAULT_PIDS": str(calls)}
    before = len(api.requests)
    versions = _resource_versions(api)
    run_up(recorded, state)
    commands: collections.Counter = collections.Counter()
    for line in calls.read_text().splitlines():
        commands[" ".join(line.split()[2:])] += 1
    requests: collections.Counter = collections.Counter()
    for method, _path, query in api.requests[before:]:
        verb = method.lower()
        if method == "GET":
            verb = "watch" if query.get("watch") in ("true", "1") else "get/list"
        elif method == "PATCH" and query.get("fieldManager"):
            verb = "server-side apply (patch)"
        requests[verb] += 1
    after = _resource_versions(api)
    changed = sum(1 for key, rv in after.items() if versions.get(key) != rv)
    return commands, requests, changed


def _resource_versions(api) -> dict[tuple, str]:  # type: ignore[no-untyped-def]
    """Every object the API stand-in holds that the product writes (not pods and other
    controller-owned objects, whose status the stand-in's controllers keep updating)."""
    owned_by_controllers = {"pods", "replicasets", "events", "endpoints", "endpointslices", "leases"}
    out = {}
    for key in api.store.keys():
        if any(part in owned_by_controllers for part in key if isinstance(part, str)):
            continue
        for obj in api.store.list(key):
            meta = obj.get("metadata", {})
            out[(key, meta.get("namespace"), meta.get("name"))] = meta.get("resourceVersion")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
