"""The step graph of a stack: derived from its data, never written out by hand.

    preflight ─┬─ cluster ─┬─ preload-<alias> ─┐
               │           └─ <component> ─────┴─ <component> ... ─ health
               └─ build-<image> ─ save-<image> ─ load-<image> (needs cluster) ─ <component>

`preflight` only asks the container provider for its architecture, so the cluster starts at
once and every build runs while kind creates it; a build checks its own Dockerfile first. Only
the loads wait for the cluster. Each stack component is one step that needs what the component
says (other components, the loads of our images it deploys, the preloads of the third-party
images it runs); `health` needs every component that waits for a Deployment.
The Kubernetes work is in kubernaut_e2e.deploy, imported lazily so that `invoke --list` and
`plan` never import the kubernetes client.

Commands may run on a remote host (`--host`): paths given to them come from `ctx.site.cfg`
(the config as the commands see it) and the files at those paths are made, tested and removed
through `ctx.site`; what is read here (Dockerfile checks, fingerprints, records) uses `ctx.cfg`.
On this machine the two are the same (kubernaut_e2e.context.LocalSite).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubernaut_e2e import fingerprint, kind, podman
from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.context import StepContext, private_dir, write_private
from kubernaut_e2e.errors import StepFailed
from kubernaut_e2e.graph import Registry, Step
from kubernaut_e2e.runner import format_command
from kubernaut_e2e.scheduler import Noted
from kubernaut_e2e.stack import Component, Stack

#: Step names the stack's components may not take.
RESERVED = ("preflight", "cluster", "health")
RESERVED_PREFIXES = ("build-", "save-", "load-", "preload-")


@dataclass(frozen=True)
class PlanInputs:
    """What `e2e.plan` knows without running anything."""

    cfg: E2EConfig
    provider: str
    arch: str


def _kind_cmd(p: PlanInputs, argv: list[str]) -> str:
    return format_command(argv, kind.provider_env(p.provider))


def build_registry(stack: Stack) -> Registry:
    """Every step of `stack`, declared once, with what it needs."""
    for comp in stack.components:
        if comp.name in RESERVED or comp.name.startswith(RESERVED_PREFIXES):
            from kubernaut_e2e.errors import UsageError

            raise UsageError(f"stack {stack.path}: components.{comp.name}: the name is taken by a built-in step")
    reg = Registry()
    reg.add(Step("preflight", preflight, plan=lambda p: [format_command(podman.info_arch(p.provider))],
                 help="Ask the container provider for its architecture: images are built for it."))
    reg.add(Step("cluster", cluster, needs=("preflight",), plan=_plan_cluster,
                 help="Create the Kind cluster (or reuse a healthy one); write its private kubeconfig."))
    for image in stack.images:
        _add_image_steps(reg, image.name)
    for alias in stack.preload:
        _add_preload_step(reg, alias)
    for comp in stack.components:
        needs = [*comp.needs, *(f"load-{i}" for i in comp.images), *(f"preload-{a}" for a in comp.preload)]
        reg.add(Step(comp.name, _component_body, needs=tuple(needs or ["cluster"]), groups=("deploy",),
                     plan=_plan_component(comp.name), help=comp.help))
    services = tuple(c.name for c in stack.components if c.wait)
    if stack.health or services:
        reg.add(Step("health", _health_body, needs=services or ("cluster",), groups=("check",),
                     plan=_plan_component("health"),
                     help="Check every health endpoint over the published host ports, and that each "
                          "service has a ready pod."))
    return reg


# --- preflight -------------------------------------------------------------------------------

def preflight(ctx: StepContext) -> str:
    """Ask the container provider for its architecture: images are built for it."""
    out = ctx.sh(podman.info_arch(ctx.tools.provider), capture=True)
    arch = _host_arch() if out.dry else podman.parse_arch(out.stdout)
    ctx.log(f"provider {ctx.tools.provider} runs {arch} containers")
    return arch


def _host_arch() -> str:
    import platform

    return podman.normalize_arch(platform.machine())


def check_dockerfile(ctx: StepContext, image: str, arch: str) -> None:
    """Stop before a long build whose Dockerfile cannot produce a native `arch` image."""
    from kubernaut_e2e.dockerfile import check_dockerfile as checks_of

    path = ctx.cfg.dockerfile(image)
    failures = []
    for check in checks_of(path.read_text(), str(path), arch, ctx.cfg.registries):
        ctx.log(f"{check.status}: {check.name}: {check.detail}")
        if check.status == "fail":
            failures.append(f"{check.detail} (fix: {check.fix})")
    if failures:
        raise StepFailed(f"Dockerfile check failed for the node's architecture {arch}:\n"
                         + "\n".join(f"  {f}" for f in failures))


# --- cluster ---------------------------------------------------------------------------------

def kind_config_text(cfg: E2EConfig) -> str:
    import yaml

    header = (f"# kind config for cluster {cfg.cluster_name}, derived from the stack {cfg.stack.path}\n"
              "# by kubernaut-e2e: edit the stack, not this file.\n")
    config = kind.cluster_config(cfg.stack.cluster, cfg.host_ports, cfg.source_dir)
    return header + yaml.safe_dump(config, sort_keys=False, width=120)


def _plan_cluster(p: PlanInputs) -> list[str]:
    cfg = p.cfg
    return [
        _kind_cmd(p, kind.get_clusters()),
        f"write {cfg.rendered_kind_config} (from the stack: {len(cfg.stack.cluster.ports)} host ports, "
        f"node image {cfg.stack.cluster.node_image.split('@')[0]})",
        _kind_cmd(p, kind.create_cluster(cfg.cluster_name, cfg.rendered_kind_config, cfg.kubeconfig,
                                         cfg.stack.cluster.wait)) + "   # unless it exists",
    ]


def cluster(ctx: StepContext) -> Noted:
    """Create the Kind cluster, or reuse a healthy one of that name; write its private kubeconfig.

    kind lists a cluster as long as its node containers exist, usable or not: a `kind create`
    that was interrupted leaves nodes without a control plane, and a host or podman machine
    restart leaves them stopped. A listed cluster is therefore checked before it is reused:
    stopped nodes are started, and a cluster that still cannot be used is deleted and created
    again, with one line saying why.
    """
    cfg, env = ctx.cfg, kind.provider_env(ctx.tools.provider)
    site, there = ctx.site, ctx.site.cfg  # where kind runs, and the paths it is given
    listed = ctx.sh(kind.get_clusters(), env=env, capture=True)
    exists = cfg.cluster_name in kind.parse_clusters(listed.stdout)
    if not ctx.run.dry:
        private_dir(cfg.cluster_state_dir)
        site.private_dir(there.cluster_state_dir)
    why_recreated = ""
    if exists and ctx.run.recreate:
        ctx.sh(kind.delete_cluster(cfg.cluster_name, there.kubeconfig), env=env)
        exists = False
    elif exists and not ctx.run.dry:
        started = _start_stopped_nodes(ctx)
        problem = _unusable(ctx, env, wait=60.0 if started else 15.0)
        if problem is None:
            return Noted(f"reused existing cluster (started its stopped nodes: {', '.join(started)})"
                         if started else "reused existing cluster", cfg.kubeconfig)
        why_recreated = f"cluster {cfg.cluster_name!r} is listed by kind but unusable ({problem})"
        ctx.run.echo(f"{why_recreated}: deleting it and creating it again")
        ctx.log(f"{why_recreated}: deleting it and creating it again")
        ctx.sh(kind.delete_cluster(cfg.cluster_name, there.kubeconfig), env=env)
    elif exists:
        ctx.sh(kind.get_kubeconfig(cfg.cluster_name), env=env, capture=True, log_stdout=False)
        return Noted("reused existing cluster", cfg.kubeconfig)
    if not ctx.run.dry:
        for mount in cfg.stack.cluster.mounts:
            path = kind.mount_path(mount, there.source_dir)
            if mount.create and not site.exists(path):
                site.makedirs(path)
                ctx.log(f"created {path} for the node's mount at {mount.container_path}")
        site.write_private(there.rendered_kind_config, kind_config_text(there))
        _loaded_file(cfg).unlink(missing_ok=True)  # a new cluster has none of our images
    ctx.sh(kind.create_cluster(cfg.cluster_name, there.rendered_kind_config, there.kubeconfig,
                               cfg.stack.cluster.wait), env=env)
    if not ctx.run.dry and not site.adopt_kubeconfig():
        raise StepFailed(f"`kind create cluster` exited 0 but wrote no kubeconfig to {there.kubeconfig}")
    return Noted(f"recreated: {why_recreated}" if why_recreated else "created", cfg.kubeconfig)


def _start_stopped_nodes(ctx: StepContext) -> list[str]:
    """Start the cluster's node containers that are not running (after a host restart)."""
    tool = ctx.tools.provider
    states = podman.parse_node_states(
        ctx.sh(podman.kind_nodes(tool, ctx.cfg.cluster_name), capture=True, check=False).stdout)
    stopped = sorted(name for name, state in states.items() if state != "running")
    if stopped:
        line = (f"cluster {ctx.cfg.cluster_name!r}: node container(s) {', '.join(stopped)} "
                f"{'is' if len(stopped) == 1 else 'are'} not running (host or podman machine restarted?): starting")
        ctx.run.echo(line)
        ctx.log(line)
        ctx.sh(podman.start(tool, stopped), check=False)
    return stopped


def _unusable(ctx: StepContext, env: dict[str, str], wait: float) -> str | None:
    """Why the listed cluster cannot be used, or None; writes its kubeconfig when it can."""
    import time

    cfg = ctx.cfg
    # Never `kind export kubeconfig`: that would edit the user's ~/.kube/config.
    out = ctx.sh(kind.get_kubeconfig(cfg.cluster_name), env=env, capture=True, log_stdout=False, check=False)
    if not out.ok or "clusters:" not in out.stdout:
        return "kind cannot read its kubeconfig: a `kind create` that was interrupted leaves this"
    ctx.site.adopt_kubeconfig(out.stdout)
    deadline = time.monotonic() + wait
    last = ""
    while True:
        last = _api_answer(cfg.kubeconfig)
        if last == "ok":
            return None
        if time.monotonic() >= deadline or ctx.run.cancellation.wait(1.0):
            ctx.run.cancellation.check()
            return f"its API server did not answer within {wait:g}s: {last}"


def _api_answer(kubeconfig: Path) -> str:
    """'ok' when the API server says it is ready, else what went wrong (one line)."""
    from kubernaut_e2e.kube import Kube, KubeError

    try:
        kube = Kube(kubeconfig, request_timeout=5)
    except Exception as exc:  # a kubeconfig the client cannot use is an answer too
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    try:
        kube.request("GET", "/readyz", raw=True)
        return "ok"
    except KubeError as exc:
        return str(exc).splitlines()[0]
    except Exception as exc:  # connection refused, TLS, timeouts: the server is not there
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    finally:
        kube.close()


# --- what the cluster has been given ---------------------------------------------------------

_LOADED_LOCK = threading.Lock()


def _loaded_file(cfg: E2EConfig) -> Path:
    """Image ref -> image ID given to this cluster; removed whenever the cluster is created."""
    return cfg.cluster_state_dir / "loaded.json"


def loaded_images(cfg: E2EConfig) -> dict[str, str]:
    try:
        data = json.loads(_loaded_file(cfg).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _record_loaded(cfg: E2EConfig, ref: str, image_id: str) -> None:
    with _LOADED_LOCK:  # loads may finish at the same moment
        data = loaded_images(cfg)
        data[ref] = image_id
        write_private(_loaded_file(cfg), json.dumps(data, indent=1, sort_keys=True))


def _image_id(ctx: StepContext, ref: str) -> str:
    return ctx.sh(podman.image_id(ctx.tools.provider, ref), capture=True).stdout.strip()


def _save(ctx: StepContext, ref: str, archive: Path) -> None:
    site = ctx.site
    if not ctx.run.dry:
        site.private_dir(archive.parent)
        site.remove(archive)
        # The load step deletes it; this covers a run that stops before the load.
        ctx.run.on_exit(lambda: site.remove(archive))
    try:
        ctx.sh(podman.save(ctx.tools.provider, ref, archive))
    except BaseException:
        if not ctx.run.dry:
            site.remove(archive)  # a partial archive is worse than none
        raise


def _load(ctx: StepContext, ref: str, archive: Path, image_id: str) -> None:
    try:
        ctx.sh(kind.load_image_archive(archive, ctx.cfg.cluster_name), env=kind.provider_env(ctx.tools.provider))
        if image_id:
            _record_loaded(ctx.cfg, ref, image_id)
    finally:
        if not ctx.run.dry:
            ctx.site.remove(archive)


# --- our images: build -> save -> load --------------------------------------------------------

def _add_image_steps(reg: Registry, name: str) -> None:
    def build_args(cfg: E2EConfig) -> dict[str, str]:
        return dict(cfg.stack.image(name).build_args)

    def plan_build(p: PlanInputs) -> list[str]:
        cfg = p.cfg
        if cfg.stack.image(name).on_host:
            return _plan_host_build(p, name)
        return [f"check {cfg.dockerfile(name)} for {p.arch} (base images, GOARCH, TARGETARCH)",
                format_command(podman.build(p.provider, cfg.dockerfile(name), cfg.image_ref(name),
                                            cfg.source_dir, p.arch, build_args(cfg),
                                            target=cfg.stack.image(name).target))]

    def build_image(ctx: StepContext) -> object:
        cfg, tool, ref = ctx.cfg, ctx.tools.provider, ctx.cfg.image_ref(name)
        arch = ctx.result("preflight")
        if cfg.stack.image(name).on_host:
            return _build_on_host(ctx, name, arch)
        if not ctx.run.dry:
            check_dockerfile(ctx, name, arch)
        inputs = "dry-run" if ctx.run.dry else fingerprint.build_inputs(
            cfg.dockerfile(name), cfg.source_dir, {**build_args(cfg), "TARGETARCH": arch})
        if not ctx.run.dry:
            have = ctx.sh(podman.image_label(tool, ref, fingerprint.LABEL), capture=True, check=False)
            if have.ok and have.stdout.strip() == inputs:
                ctx.log(f"{ref} was built from these exact inputs ({inputs}): not rebuilt")
                return Noted("reused: inputs unchanged", ref)
        there = ctx.site.cfg  # the Dockerfile and the build context where podman runs
        ctx.sh(podman.build(tool, there.dockerfile(name), ref, there.source_dir, arch, build_args(cfg),
                            {fingerprint.LABEL: inputs, fingerprint.CLUSTER_LABEL: cfg.cluster_name},
                            target=cfg.stack.image(name).target))
        return ref

    def plan_save(p: PlanInputs) -> list[str]:
        return [format_command(podman.save(p.provider, p.cfg.image_ref(name), p.cfg.archive(name)))
                + "   # unless the cluster has this image"]

    def save_image(ctx: StepContext) -> object:
        cfg, ref = ctx.cfg, ctx.cfg.image_ref(name)
        image_id = "" if ctx.run.dry else _image_id(ctx, ref)
        if image_id and loaded_images(cfg).get(ref) == image_id:
            return Noted("reused: the cluster has this image", image_id)
        _save(ctx, ref, ctx.site.cfg.archive(name))
        return image_id

    def plan_load(p: PlanInputs) -> list[str]:
        return [_kind_cmd(p, kind.load_image_archive(p.cfg.archive(name), p.cfg.cluster_name))
                + "   # unless the cluster has this image", f"rm {p.cfg.archive(name)}"]

    def load_image(ctx: StepContext) -> object:
        cfg, ref, archive = ctx.cfg, ctx.cfg.image_ref(name), ctx.site.cfg.archive(name)
        image_id = "" if ctx.run.dry else _image_id(ctx, ref)
        if image_id and loaded_images(cfg).get(ref) == image_id:
            ctx.log(f"{ref} ({image_id[:12]}) is already in cluster {cfg.cluster_name}: not reloaded")
            return Noted("reused: already in the cluster", ref)
        if not ctx.run.dry and not ctx.site.exists(archive):
            _save(ctx, ref, archive)  # the save step saw the previous cluster's record
        _load(ctx, ref, archive, image_id)
        return ref

    reg.add(Step(f"build-{name}", build_image, needs=("preflight",), groups=("images",), plan=plan_build,
                 help=f"Build the {name} image for the node's architecture (its Dockerfile checked first)."))
    reg.add(Step(f"save-{name}", save_image, needs=(f"build-{name}",), groups=("images",), plan=plan_save,
                 help=f"Save the {name} image to a temporary archive (unless the cluster has it)."))
    reg.add(Step(f"load-{name}", load_image, needs=(f"save-{name}", "cluster"), groups=("images",),
                 plan=plan_load, help=f"Load the {name} archive into the Kind node, then delete it."))


# --- build: host (kubernaut_e2e.gobuild): go build on the host, a generated two-line image ------

def _plan_host_build(p: PlanInputs, name: str) -> list[str]:
    from kubernaut_e2e import gobuild

    cfg, spec = p.cfg, p.cfg.stack.image(name)
    context = cfg.host_build_dir(name) / "context"
    return [f"write {cfg.dockerfile(name)} (FROM {spec.base}, COPY the binary to {spec.binary}) and check it",
            format_command(gobuild.go_version()),
            format_command(gobuild.build_argv(cfg.source_dir, spec.package, context / gobuild.BINARY),
                           gobuild.build_env(p.arch, spec.build_args.get("GOFLAGS", "")))
            + "   # unless the inputs are unchanged",
            f"check that {context / gobuild.BINARY} is a linux/{p.arch} ELF executable",
            format_command(podman.build(p.provider, cfg.dockerfile(name), cfg.image_ref(name), context, p.arch,
                                        platform=f"linux/{p.arch}"))]


def _build_on_host(ctx: StepContext, name: str, arch: str) -> object:
    """Compile the image's package on the host for the node's architecture, with the host's Go
    caches, and pack the binary into the runtime base with a generated Dockerfile (checked like
    ours). Reused, like a Dockerfile build, when nothing it is made from changed."""
    import shutil

    from kubernaut_e2e import gobuild

    cfg, tool, ref, spec = ctx.cfg, ctx.tools.provider, ctx.cfg.image_ref(name), ctx.cfg.stack.image(name)
    dockerfile, context = cfg.dockerfile(name), cfg.host_build_dir(name) / "context"
    binary = context / gobuild.BINARY
    go = ctx.sh(gobuild.go_version(), capture=True).stdout.strip()
    if not ctx.run.dry:
        private_dir(dockerfile.parent)
        dockerfile.write_text(gobuild.dockerfile_text(spec))
        failures = []
        for check in gobuild.checks(spec, arch, cfg.registries, str(dockerfile)):
            ctx.log(f"{check.status}: {check.name}: {check.detail}")
            if check.status == "fail":
                failures.append(f"{check.detail} (fix: {check.fix}; in images.{name} of {cfg.stack.path})")
        if failures:
            raise StepFailed("the generated Dockerfile fails its checks:\n" + "\n".join(f"  {f}" for f in failures))
        inputs = fingerprint.build_inputs(dockerfile, cfg.source_dir, gobuild.fingerprint_args(spec, arch, go))
        have = ctx.sh(podman.image_label(tool, ref, fingerprint.LABEL), capture=True, check=False)
        if have.ok and have.stdout.strip() == inputs:
            ctx.log(f"{ref} was built from these exact inputs ({inputs}): not rebuilt")
            return Noted("reused: inputs unchanged", ref)
        shutil.rmtree(context, ignore_errors=True)  # nothing of an earlier build is packed by mistake
        context.mkdir()
    else:
        inputs = "dry-run"
    ctx.sh(gobuild.build_argv(cfg.source_dir, spec.package, binary),
           env=gobuild.build_env(arch, spec.build_args.get("GOFLAGS", "")))
    if not ctx.run.dry:
        with binary.open("rb") as fh:
            built_for = gobuild.elf_arch(fh.read(20))
        if built_for != arch:
            raise StepFailed(f"go build {spec.package} produced a {built_for or 'non-ELF'} binary, not linux/{arch}: "
                             "it would not run natively on the node")
        for src, dest in gobuild.copy_plan(spec, cfg.source_dir, context).items():
            shutil.copyfile(src, dest)
    ctx.sh(podman.build(tool, dockerfile, ref, context, arch,
                        labels={fingerprint.LABEL: inputs, fingerprint.CLUSTER_LABEL: cfg.cluster_name},
                        platform=f"linux/{arch}"))
    return Noted(f"compiled on the host ({go}, linux/{arch})", ref)


# --- third-party images: preload --------------------------------------------------------------

def _add_preload_step(reg: Registry, alias: str) -> None:
    def plan_preload(p: PlanInputs) -> list[str]:
        ref, archive = p.cfg.stack.preload[alias], p.cfg.archive(f"preload-{alias}")
        return [format_command(podman.image_exists(p.provider, ref)) + "   # else:",
                format_command(podman.pull(p.provider, ref)),
                format_command(podman.save(p.provider, ref, archive)) + "   # unless the cluster has it",
                _kind_cmd(p, kind.load_image_archive(archive, p.cfg.cluster_name)), f"rm {archive}"]

    def preload(ctx: StepContext) -> object:
        cfg, tool = ctx.cfg, ctx.tools.provider
        ref, archive = cfg.stack.preload[alias], ctx.site.cfg.archive(f"preload-{alias}")
        if ctx.run.dry:
            ctx.sh(podman.pull(tool, ref))
            return ref
        pulled = False
        if not ctx.sh(podman.image_exists(tool, ref), check=False).ok:
            ctx.sh(podman.pull(tool, ref))
            pulled = True
        image_id = _image_id(ctx, ref)
        if loaded_images(cfg).get(ref) == image_id:
            return Noted("reused: already in the cluster", ref)
        _save(ctx, ref, archive)
        _load(ctx, ref, archive, image_id)
        return Noted("pulled and loaded" if pulled else "loaded from the local store", ref)

    reg.add(Step(f"preload-{alias}", preload, needs=("cluster",), groups=("images",), plan=plan_preload,
                 help=f"Load the third-party image {alias} into the Kind node (pulled if missing)."))


# --- Kubernetes steps ------------------------------------------------------------------------

def _component_body(ctx: StepContext) -> object:
    from kubernaut_e2e import deploy

    return deploy.run_component(ctx)


def _health_body(ctx: StepContext) -> object:
    from kubernaut_e2e import deploy

    return deploy.health(ctx)


def _plan_component(name: str) -> Callable[[PlanInputs], list[str]]:
    def plan(p: PlanInputs) -> list[str]:
        from kubernaut_e2e import deploy_plan

        return deploy_plan.describe(name, p.cfg)

    return plan


def component_of(cfg: E2EConfig, step: str) -> Component | None:
    try:
        return cfg.stack.component(step)
    except KeyError:
        return None
