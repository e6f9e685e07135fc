"""Benchmark: the inner loop, from a one-file Go change to the Gateway Deployment rolled to the new image.

What a Kubernaut developer repeats all day: edit a Go file, `invoke e2e.up`, test. This measures it
side by side, three ways, each with the full product (`python -m invoke e2e.up`, every step of the
fast stack), N rounds each (one environment at a time: NodePorts are cluster-wide):

  (a) plain      no Go caches: our Dockerfiles without their cache mounts, and every `podman build`
                 given --no-cache (what a build without this project's caches costs)
  (b) cached     the project's own Dockerfiles (kubernaut_e2e/stacks/gateway-e2e/Dockerfile.*), whose
                 cache mounts keep Go's module and build caches between builds
  (c) host       `images.<name>.build: host`: the binary compiled on the host (the node's GOARCH,
                 the host's Go caches) and packed into the same runtime base with a generated
                 two-line Dockerfile (kubernaut_e2e/gobuild.py)

The Go module is generated (bench/gomodule.py): Kubernaut-shaped, two binaries sharing most code,
standard library only. Nothing can be pulled here, so the builder image is made from this machine's
Go installation (`go env GOROOT`) and Debian's busybox-static, shaped like ubi10/go-toolset (user
1001, HOME and WORKDIR /opt/app-root/src), and the runtime base from busybox-static alone; the
stacks pass them as BUILDER_IMAGE / RUNTIME_IMAGE build args (and `base:` for the host path).

Where the rollout is real: the real control plane tier (tests/realcluster.py: etcd, kube-apiserver,
controller-manager and scheduler built by .ci/build-control-plane, kwok for the pods). The kind
stand-in adopts it; image loads are the stand-in's (it reads the archive); the Deployment rollout,
its ReplicaSets and readiness are the real controllers'. After each round the benchmark checks
that the gateway Deployment's pod template names the new image ID and that the rollout finished.

Before the rounds, each variant runs one cold `up` (printed, not counted): it creates the
environment and fills that variant's caches, as a developer's first `up` of the day does. Caches are
the benchmark's own (TMPDIR for podman's cache mounts, GOCACHE/GOMODCACHE for the host path), so
nothing from an earlier run helps.

    python3 bench/inner_loop.py [--rounds 3] [--scale 20] [--variants abc] [--storage-driver overlay]
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
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import gomodule  # noqa: E402

from kubernaut_e2e.stack import PACKAGE_DIR  # noqa: E402
from tests.conftest import FAST_STACK, PRELOAD_IMAGES, free_ports, host_ports_setting, make_source_tree  # noqa: E402
from tests.kindstate import standin_env  # noqa: E402

OUR_DOCKERFILES = PACKAGE_DIR / "stacks" / "gateway-e2e"
SERVICES = {"gateway": "gateway", "datastorage": "data-storage"}  # image -> binary name
VARIANTS = {
    "a": "plain: no Go caches, podman build --no-cache",
    "b": "cached: the project's Dockerfiles (cache mounts)",
    "c": "host: go build on the host, packed into the runtime base",
}
BUILDER = "localhost/inner-loop-go"
RUNTIME = "localhost/inner-loop-runtime:1"
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed one-file changes per variant")
    parser.add_argument("--scale", type=int, default=20, help="generated files per package")
    parser.add_argument("--variants", default="abc", help="which of a, b, c to run")
    parser.add_argument("--storage-driver", default="overlay", choices=("overlay", "vfs"),
                        help="the benchmark's own podman store (overlay: what developers' machines use)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = parser.parse_args()
    variants = [v for v in "abc" if v in args.variants]
    problem = _missing_tools()
    if problem:
        print(f"inner_loop: {problem}", file=sys.stderr)
        return 2
    go_version = _out(["go", "env", "GOVERSION"])
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
          f"Python {platform.python_version()}, {go_version}, podman {_out(['podman', '--version']).split()[-1]}")

    from tests.realcluster import _STANDARD_CLASS, LocalPathProvisioner, start_cluster, stop_cluster

    bin_dir = _control_plane()
    if bin_dir is None:
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="inner-loop-"))
    podman_env = _podman_env(tmp, args.storage_driver)
    cluster = None
    worlds: list[World] = []
    try:
        _make_images(tmp, podman_env, go_version)
        cluster = start_cluster(bin_dir, tmp / "kwok", f"il-{uuid.uuid4().hex[:6]}")
        print(f"real control plane: kube-apiserver {cluster.version}, started in {cluster.started_in:.1f}s "
              f"(kwok pods); podman store: {args.storage_driver}")
        cluster.kubectl("apply", "-f", "-", input=_STANDARD_CLASS)
        provisioner = LocalPathProvisioner(cluster)
        provisioner.start()
        _report_compile(tmp, args.scale, go_version)
        # One environment at a time: NodePorts are cluster-wide, so two would collide.
        for v in variants:
            world = _world(tmp, v, podman_env, cluster, bin_dir, args.scale, go_version)
            worlds.append(world)
            started = time.monotonic()
            _up(world, 0)
            print(f"({v}) cold up (creates the environment, fills this variant's caches): "
                  f"{time.monotonic() - started:.1f}s")
            for n in range(1, args.rounds + 1):
                world.rounds.append(_round(world, n, cluster))
                r = world.rounds[-1]
                print(f"({v}) round {n}: edit -> rolled {r.rolled:6.1f}s, up returned {r.wall:6.1f}s, "
                      f"build-gateway {r.build:6.1f}s, save+load {r.ship:5.1f}s")
            _clean(world)
        _report(worlds, tmp)
        provisioner.stop.set()
        return 0
    finally:
        for world in worlds:
            _clean(world)
        if cluster is not None:
            stop_cluster(cluster)
        if args.keep:
            print(f"kept {tmp}")
        else:
            _remove(tmp)


# --- setup ---------------------------------------------------------------------------------------

def _out(argv: list[str], **kw: object) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, **kw).stdout.strip()  # type: ignore[call-overload]


def _missing_tools() -> str | None:
    for tool in ("go", "podman", "gcc"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH"
    if not BUSYBOX.is_file():
        return f"{BUSYBOX} is missing: apt-get install busybox-static"
    return None


def _control_plane() -> Path | None:
    out = _out(["bash", str(ROOT / ".ci" / "build-control-plane"), "--print-bin-dir"])
    bin_dir = Path(out.splitlines()[-1])
    if not (bin_dir.parent / "complete").is_file():
        print(f"inner_loop: the real control plane is not built in {bin_dir}: run .ci/build-control-plane",
              file=sys.stderr)
        return None
    return bin_dir


def _podman_env(tmp: Path, driver: str) -> dict[str, str]:
    conf = tmp / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n')
    storage = tmp / "storage.conf"
    storage.write_text(f'[storage]\ndriver = "{driver}"\nrunroot = "{tmp / "run"}"\ngraphroot = "{tmp / "graph"}"\n')
    return {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}


def _remove(tmp: Path) -> None:
    """Remove the benchmark's store (build containers, images, overlay mounts) and folder."""
    env = {**os.environ, "CONTAINERS_CONF": str(tmp / "containers.conf"),
           "CONTAINERS_STORAGE_CONF": str(tmp / "storage.conf")}
    if (tmp / "storage.conf").is_file():  # without it podman would use the machine's own store
        listed = subprocess.run(["podman", "ps", "--all", "--external", "--quiet"], env=env, capture_output=True,
                                text=True).stdout.split()
        if listed:
            subprocess.run(["podman", "rm", "--force", *listed], env=env, capture_output=True)
        subprocess.run(["podman", "rmi", "--all", "--force"], env=env, capture_output=True)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(f"{tmp}/")]
    for mount in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", mount], capture_output=True)
    shutil.rmtree(tmp, ignore_errors=True)


def _goroot_ignore(goroot: Path):  # type: ignore[no-untyped-def]
    """What a Go builder does not need from GOROOT: tests, docs, the toolchain's own sources."""
    def ignore(folder: str, names: list[str]) -> list[str]:
        skip = [n for n in names if n == "testdata" or n.endswith("_test.go")]
        if Path(folder) == goroot:
            skip += [n for n in names if n in ("test", "doc", "api", "misc")]
        if Path(folder) == goroot / "src":
            skip.append("cmd")
        return skip
    return ignore


def _make_images(tmp: Path, env: dict[str, str], go_version: str) -> None:
    """The local builder (this machine's Go + busybox, shaped like ubi10/go-toolset), the runtime
    base (busybox) and the fast stack's third-party stand-ins."""
    goroot = Path(_out(["go", "env", "GOROOT"]))
    ctx = tmp / "builder"
    rootfs = ctx / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
    (rootfs / "bin" / "sh").symlink_to("busybox")
    (rootfs / "tmp").mkdir(mode=0o1777)
    os.chmod(rootfs / "tmp", 0o1777)
    runtime = tmp / "runtime"
    shutil.copytree(rootfs, runtime / "rootfs", symlinks=True)
    shutil.copytree(goroot, rootfs / "usr" / "local" / "go", symlinks=True, ignore=_goroot_ignore(goroot))
    (ctx / "home" / ".cache").mkdir(parents=True)
    (ctx / "Containerfile").write_text(
        "FROM scratch\nCOPY rootfs/ /\nCOPY --chown=1001:0 home/ /opt/app-root/src/\n"
        "ENV PATH=/usr/local/go/bin:/bin HOME=/opt/app-root/src GOPATH=/opt/app-root/src/go "
        "GOTOOLCHAIN=local GOPROXY=off\nUSER 1001\nWORKDIR /opt/app-root/src\n")
    (runtime / "Containerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
    started = time.monotonic()
    tag = go_version.removeprefix("go")
    subprocess.run(["podman", "build", "-q", "-t", f"{BUILDER}:{tag}", str(ctx)], env=env, check=True,
                   capture_output=True)
    subprocess.run(["podman", "build", "-q", "-t", RUNTIME, str(runtime)], env=env, check=True, capture_output=True)
    preload = tmp / "preload"
    preload.mkdir()
    shutil.copy(BUSYBOX, preload / "busybox")
    (preload / "Containerfile").write_text('FROM scratch\nCOPY busybox /busybox\nENTRYPOINT ["/busybox"]\n')
    for ref in PRELOAD_IMAGES:
        subprocess.run(["podman", "build", "-q", "-t", ref, str(preload)], env=env, check=True, capture_output=True)
    print(f"local images: {BUILDER}:{tag} ({go_version} from {goroot} + busybox-static), {RUNTIME}, "
          f"made in {time.monotonic() - started:.1f}s")


def _report_compile(tmp: Path, scale: int, go_version: str) -> None:
    """How big the module is: a cold and a one-file compile on the host, no container."""
    src = tmp / "compile-check"
    src.mkdir()
    files = gomodule.write_module(src, scale)
    lines = sum(len(p.read_text().splitlines()) for p in files)
    env = {**os.environ, "GOCACHE": str(tmp / "compile-check-cache"), "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    argv = ["go", "build", "-trimpath", "-o", str(tmp / "compile-check.bin"), "./cmd/gateway"]
    started = time.monotonic()
    subprocess.run(argv, cwd=src, env=env, check=True)
    cold = time.monotonic() - started
    gomodule.touch_gateway(src, 99)
    started = time.monotonic()
    subprocess.run(argv, cwd=src, env=env, check=True)
    warm = time.monotonic() - started
    print(f"generated module: {len(files)} files, {lines} lines, {len(gomodule._packages())} packages; "
          f"host {go_version} build of cmd/gateway: cold cache {cold:.1f}s (standard library included), "
          f"after the one-file change {warm:.1f}s")


@dataclass
class Round:
    wall: float  # edit -> `invoke e2e.up` returned
    rolled: float  # edit -> the gateway step done (image loaded, Deployment rolled and available)
    build: float
    ship: float  # save + load of the gateway image
    makespan: float


@dataclass
class World:
    variant: str
    source: Path
    state: Path
    env: dict[str, str]
    namespace: str
    rounds: list[Round] = field(default_factory=list)
    cleaned: bool = False


def _plain_dockerfile(service: str, out: Path) -> Path:
    """Our Dockerfile without its cache mounts: what a build that keeps no Go cache runs."""
    import re

    text = (OUR_DOCKERFILES / f"Dockerfile.{service}").read_text()
    plain = re.sub(r"--mount=type=cache\S*\s*\\\n\s*", "", text)
    if "--mount" in plain or "go build" not in plain:
        raise SystemExit(f"inner_loop: cannot strip the cache mounts of Dockerfile.{service}: has it changed shape?")
    path = out / f"Dockerfile.{service}.plain"
    path.write_text(plain)
    return path


def _stack(tmp: Path, variant: str, namespace: str, go_version: str) -> Path:
    folder = tmp / f"stack-{variant}"
    folder.mkdir()
    builder = f"{BUILDER}:{go_version.removeprefix('go')}"
    images: dict[str, dict[str, object]] = {}
    for image, binary in SERVICES.items():
        if variant == "c":
            spec: dict[str, object] = {"dockerfile": None, "build_args": None, "build": "host",
                                       "package": f"./cmd/{image}", "base": RUNTIME,
                                       "binary": f"/usr/local/bin/{binary}"}
            if image == "datastorage":
                spec["files"] = {"api/openapi/data-storage-v1.yaml":
                                 "/usr/local/share/kubernaut/api/openapi/data-storage-v1.yaml"}
        else:
            dockerfile = (_plain_dockerfile(image, folder) if variant == "a"
                          else OUR_DOCKERFILES / f"Dockerfile.{image}")
            spec = {"dockerfile": str(dockerfile),
                    "build_args": {"SERVICE": None, "BUILDER_IMAGE": builder, "RUNTIME_IMAGE": RUNTIME}}
        images[image] = spec
    path = folder / "stack.yaml"
    path.write_text(json.dumps({"extends": str(FAST_STACK), "namespace": namespace, "images": images}, indent=1))
    return path


def _no_cache_podman(folder: Path) -> Path:
    """A `podman` first on PATH that adds --no-cache to every build (variant a)."""
    folder.mkdir()
    real = shutil.which("podman")
    wrapper = folder / "podman"
    wrapper.write_text(f"#!{sys.executable}\nimport os, sys\nargs = sys.argv[1:]\n"
                       "if args[:1] == ['build']:\n    args = ['build', '--no-cache', *args[1:]]\n"
                       f"os.execv({real!r}, [{real!r}, *args])\n")
    wrapper.chmod(0o755)
    return folder


def _world(tmp: Path, variant: str, podman_env: dict[str, str], cluster, bin_dir: Path,  # type: ignore[no-untyped-def]
           scale: int, go_version: str) -> World:
    tag = uuid.uuid4().hex[:6]
    home = tmp / f"world-{variant}"
    home.mkdir()
    source = make_source_tree(home)
    gomodule.write_module(source, scale)
    namespace = f"bench-{variant}-{tag}"
    kind_state = home / "kind-state"
    env = standin_env(kind_state)
    rest = env["PATH"].split(os.pathsep, 1)[1]
    path = [str(ROOT / "tests" / "bin"), str(bin_dir), rest]
    if variant == "a":
        path.insert(0, str(_no_cache_podman(home / "no-cache")))
    from kubernaut_e2e.stack import load_stack

    stack = _stack(tmp, variant, namespace, go_version)
    ports = [p.name for p in load_stack(stack).cluster.ports]
    (home / "tmp").mkdir()
    env.update({
        "PATH": os.pathsep.join(path),
        "CONTAINERS_CONF": podman_env["CONTAINERS_CONF"],
        "CONTAINERS_STORAGE_CONF": podman_env["CONTAINERS_STORAGE_CONF"],
        "CI": "true",
        "KIND_STANDIN_PUBLISH_PORTS": "1",
        "KIND_STANDIN_REAL_KUBECONFIG": str(cluster.kubeconfig),
        "INVOKE_E2E_STACK": str(stack),
        "INVOKE_E2E_SOURCE_DIR": str(source),
        "INVOKE_E2E_STATE_DIR": str(home / "state"),
        "INVOKE_E2E_CLUSTER_NAME": f"il-{variant}-{tag}",
        "INVOKE_E2E_HOST_PORTS": host_ports_setting(dict(zip(ports, free_ports(len(ports))))),
        "INVOKE_E2E_APPROVED_REGISTRIES": "registry.access.redhat.com,localhost",
        # This variant's own caches: podman's cache mounts live under TMPDIR (buildah-cache),
        # the host path's in GOCACHE/GOMODCACHE.
        "TMPDIR": str(home / "tmp"),
        "GOCACHE": str(home / "go-build"),
        "GOMODCACHE": str(home / "go-mod"),
    })
    return World(variant, source, home / "state", env, namespace)


def _clean(world: World) -> None:
    if not world.cleaned:
        subprocess.run([sys.executable, "-m", "invoke", "e2e.clean"], cwd=ROOT, env=world.env, capture_output=True)
        world.cleaned = True


# --- measuring -----------------------------------------------------------------------------------

def _up(world: World, n: int) -> tuple[float, dict]:
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "invoke", "e2e.up"], cwd=ROOT, env=world.env,
                         capture_output=True, text=True)
    wall = time.monotonic() - started
    if run.returncode != 0:
        raise SystemExit(f"inner_loop: ({world.variant}) up #{n} failed (exit {run.returncode}):\n"
                         f"{run.stdout[-4000:]}\n{run.stderr[-2000:]}")
    runs = sorted((world.state / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    return wall, json.loads((runs[-1] / "timings.json").read_text())


def _round(world: World, n: int, cluster) -> Round:  # type: ignore[no-untyped-def]
    gomodule.touch_gateway(world.source, n)
    before = _image_id(world, "gateway")
    wall, doc = _up(world, n)
    steps = {s["name"]: s for s in doc["steps"]}
    start = min(s["start"] for s in doc["steps"] if s["start"] is not None)
    image_id = _image_id(world, "gateway")
    if image_id == before:
        raise SystemExit(f"inner_loop: ({world.variant}) round {n}: the gateway image was not rebuilt")
    _check_rolled(world, cluster, image_id, n)
    return Round(wall=wall, rolled=steps["gateway"]["end"] - start, build=steps["build-gateway"]["duration"],
                 ship=steps["save-gateway"]["duration"] + steps["load-gateway"]["duration"],
                 makespan=doc["makespan"])


def _image_id(world: World, image: str) -> str:
    done = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", _ref(world, image)], env=world.env,
                          capture_output=True, text=True)
    return done.stdout.strip()


def _ref(world: World, image: str) -> str:
    from kubernaut_e2e.stack import load_stack

    return f"{load_stack(Path(world.env['INVOKE_E2E_STACK'])).image(image).repository}:{world.env['INVOKE_E2E_CLUSTER_NAME']}"


def _check_rolled(world: World, cluster, image_id: str, n: int) -> None:  # type: ignore[no-untyped-def]
    """The gateway Deployment runs the new image ID and its rollout is complete (real controllers)."""
    dep = json.loads(cluster.kubectl("get", "deployment", "gateway", "-n", world.namespace, "-o", "json").stdout)
    notes = dep["spec"]["template"]["metadata"].get("annotations") or {}
    pinned = {v for k, v in notes.items() if k.startswith("e2e.kubernaut.ai/image-")}
    status, want = dep.get("status") or {}, dep["spec"].get("replicas", 1)
    rolled = (status.get("observedGeneration", 0) >= dep["metadata"]["generation"]
              and status.get("updatedReplicas") == status.get("availableReplicas") == status.get("replicas") == want)
    if image_id not in pinned or not rolled:
        raise SystemExit(f"inner_loop: ({world.variant}) round {n}: gateway not rolled to {image_id[:12]} "
                         f"(template pins {sorted(pinned)}, status {status})")


def _report(worlds: list[World], tmp: Path) -> None:
    print(f"\nmedians over {len(worlds[0].rounds)} rounds (one-file change in {gomodule.EDITED}; "
          "'rolled' = edit -> image built, loaded, gateway Deployment rolled and available):")
    plain = next((w for w in worlds if w.variant == "a"), None)
    base = statistics.median(r.rolled for r in plain.rounds) if plain else None
    for world in worlds:
        rs = world.rounds
        rolled = statistics.median(r.rolled for r in rs)
        ratio = f", x{rolled / base:.2f} of (a) = 1/{base / rolled:.1f}" if base and world is not plain else ""
        print(f"  ({world.variant}) {VARIANTS[world.variant]:55s} rolled {rolled:6.1f}s "
              f"(min {min(r.rolled for r in rs):.1f}, max {max(r.rolled for r in rs):.1f}){ratio}; "
              f"build-gateway {statistics.median(r.build for r in rs):5.1f}s; "
              f"save+load {statistics.median(r.ship for r in rs):4.1f}s; "
              f"up returned {statistics.median(r.wall for r in rs):5.1f}s")
        cache = world.env["TMPDIR"] + "/buildah-cache"
        if world.variant == "b":
            size = _out(["du", "-sh", cache]).split()[0] if Path(cache).is_dir() else "none"
            print(f"      podman cache mounts kept between builds: {cache} ({size})")


if __name__ == "__main__":
    raise SystemExit(main())
