"""The Gateway E2E environment as a graph of steps, each declared once with what it needs.

    preflight ─┬─ cluster ─┬─ crds ──────────────────────────────┐
               │           ├─ namespace ─ infra ─ migrations ─┐   │
               ├─ build-gateway ─ save-gateway ─ load-gateway ─┼───┴─ gateway ─ health
               └─ build-datastorage ─ save-… ─ load-… ─ datastorage ┘

Image builds need only preflight, so they run while Kind creates the cluster; only the loads
wait for it. The Kubernetes steps call into kubernaut_e2e.deploy.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from kubernaut_e2e import fingerprint, kind, podman
from kubernaut_e2e.config import SERVICES, E2EConfig
from kubernaut_e2e.context import StepContext, private_dir, write_private
from kubernaut_e2e.errors import StepFailed
from kubernaut_e2e.graph import Registry
from kubernaut_e2e.runner import format_command
from kubernaut_e2e.scheduler import Noted

STACK = Registry()


@dataclass(frozen=True)
class PlanInputs:
    """What `e2e.plan` knows without running anything."""

    cfg: E2EConfig
    provider: str
    arch: str


def _kind_cmd(p: PlanInputs, argv: list[str]) -> str:
    return format_command(argv, kind.provider_env(p.provider))


# --- preflight -------------------------------------------------------------------------------

@STACK.step("preflight",
            plan=lambda p: [format_command(podman.info_arch(p.provider))])
def preflight(ctx: StepContext) -> str:
    """Ask the container provider for its architecture: images are built for it."""
    out = ctx.sh(podman.info_arch(ctx.tools.provider), capture=True)
    arch = _host_arch() if out.dry else podman.parse_arch(out.stdout)
    ctx.log(f"provider {ctx.tools.provider} runs {arch} containers")
    _check_dockerfiles(ctx, arch)
    return arch


def _check_dockerfiles(ctx: StepContext, arch: str) -> None:
    """Stop before a long build whose Dockerfile cannot produce a native `arch` image."""
    from kubernaut_e2e.dockerfile import check_dockerfile

    failures = []
    for svc in SERVICES:
        if f"build-{svc}" not in ctx.run.selected:
            continue
        path = ctx.cfg.dockerfile(svc)
        for check in check_dockerfile(path.read_text(), str(path), arch, ctx.cfg.registries):
            ctx.log(f"{check.status}: {check.name}: {check.detail}")
            if check.status == "fail":
                failures.append(f"{check.detail} (fix: {check.fix})")
    if failures:
        raise StepFailed("Dockerfile check failed for the node's architecture "
                         f"{arch}:\n" + "\n".join(f"  {f}" for f in failures))


def _host_arch() -> str:
    import platform

    return podman.normalize_arch(platform.machine())


# --- cluster ---------------------------------------------------------------------------------

def _plan_cluster(p: PlanInputs) -> list[str]:
    cfg = p.cfg
    return [
        _kind_cmd(p, kind.get_clusters()),
        f"render {cfg.kind_config} -> {cfg.rendered_kind_config}",
        _kind_cmd(p, kind.create_cluster(cfg.cluster_name, cfg.rendered_kind_config, cfg.kubeconfig,
                                         cfg.kind_wait)) + "   # unless it exists",
    ]


@STACK.step("cluster", needs=("preflight",), plan=_plan_cluster)
def cluster(ctx: StepContext) -> Noted:
    """Create the Kind cluster, or reuse one of that name; write its private kubeconfig."""
    cfg, env = ctx.cfg, kind.provider_env(ctx.tools.provider)
    listed = ctx.sh(kind.get_clusters(), env=env, capture=True)
    exists = cfg.cluster_name in kind.parse_clusters(listed.stdout)
    if exists and ctx.run.recreate:
        ctx.sh(kind.delete_cluster(cfg.cluster_name, cfg.kubeconfig), env=env)
        exists = False
    if not ctx.run.dry:
        private_dir(cfg.cluster_state_dir)
    if exists:
        # Never `kind export kubeconfig`: that would edit the user's ~/.kube/config.
        out = ctx.sh(kind.get_kubeconfig(cfg.cluster_name), env=env, capture=True, log_stdout=False)
        if not out.dry:
            write_private(cfg.kubeconfig, out.stdout)
        return Noted("reused existing cluster", cfg.kubeconfig)
    if not ctx.run.dry:
        from kubernaut_e2e.manifests import render_text, template_values

        write_private(cfg.rendered_kind_config, render_text(cfg.kind_config, template_values(cfg, {})))
    if not ctx.run.dry:
        _loaded_file(cfg).unlink(missing_ok=True)  # a new cluster has none of our images
    ctx.sh(kind.create_cluster(cfg.cluster_name, cfg.rendered_kind_config, cfg.kubeconfig, cfg.kind_wait),
           env=env)
    if not ctx.run.dry:
        if not cfg.kubeconfig.is_file():
            raise StepFailed(f"`kind create cluster` exited 0 but wrote no kubeconfig to {cfg.kubeconfig}")
        cfg.kubeconfig.chmod(0o600)
    return Noted("created", cfg.kubeconfig)


# --- images: build -> save -> load, per service -----------------------------------------------

_LOADED_LOCK = threading.Lock()


def _loaded_file(cfg: E2EConfig) -> Path:
    """Which image IDs this cluster was given; removed whenever the cluster is created anew."""
    return cfg.cluster_state_dir / "loaded.json"


def _loaded(cfg: E2EConfig) -> dict[str, str]:
    try:
        return json.loads(_loaded_file(cfg).read_text())
    except (OSError, ValueError):
        return {}


def _record_loaded(cfg: E2EConfig, svc: str, image: str) -> None:
    with _LOADED_LOCK:  # both loads may finish at the same moment
        data = _loaded(cfg)
        data[svc] = image
        write_private(_loaded_file(cfg), json.dumps(data))


def _declare_image_steps(svc: str) -> None:
    def build_args(cfg: E2EConfig) -> dict[str, str]:
        return {"GO_VERSION": cfg.go_version}

    def plan_build(p: PlanInputs) -> list[str]:
        cfg = p.cfg
        return [format_command(podman.build(p.provider, cfg.dockerfile(svc), cfg.image_ref(svc),
                                            cfg.source_dir, p.arch, build_args(cfg)))]

    def build_image(ctx: StepContext) -> object:
        cfg, tool, ref = ctx.cfg, ctx.tools.provider, ctx.cfg.image_ref(svc)
        arch = ctx.result("preflight")
        inputs = "dry-run" if ctx.run.dry else fingerprint.build_inputs(
            cfg.dockerfile(svc), cfg.source_dir, {**build_args(cfg), "TARGETARCH": arch})
        if not ctx.run.dry:
            have = ctx.sh(podman.image_label(tool, ref, fingerprint.LABEL), capture=True, check=False)
            if have.ok and have.stdout.strip() == inputs:
                ctx.log(f"{ref} was built from these exact inputs ({inputs}): not rebuilt")
                return Noted("reused: inputs unchanged", ref)
        ctx.sh(podman.build(tool, cfg.dockerfile(svc), ref, cfg.source_dir, arch, build_args(cfg),
                            {fingerprint.LABEL: inputs}))
        return ref

    def plan_save(p: PlanInputs) -> list[str]:
        return [format_command(podman.save(p.provider, p.cfg.image_ref(svc), p.cfg.archive(svc)))]

    def save_image(ctx: StepContext) -> str:
        cfg, archive = ctx.cfg, ctx.cfg.archive(svc)
        if not ctx.run.dry:
            private_dir(cfg.archive_dir)
            archive.unlink(missing_ok=True)
            # The load step deletes it; this covers a run that stops before the load.
            ctx.run.on_exit(lambda: archive.unlink(missing_ok=True))
        try:
            ctx.sh(podman.save(ctx.tools.provider, cfg.image_ref(svc), archive))
        except BaseException:
            archive.unlink(missing_ok=True)  # a partial archive is worse than none
            raise
        return str(archive)

    def plan_load(p: PlanInputs) -> list[str]:
        return [_kind_cmd(p, kind.load_image_archive(p.cfg.archive(svc), p.cfg.cluster_name)),
                f"rm {p.cfg.archive(svc)}"]

    def load_image(ctx: StepContext) -> object:
        cfg, archive, ref = ctx.cfg, ctx.cfg.archive(svc), ctx.cfg.image_ref(svc)
        try:
            image = "" if ctx.run.dry else ctx.sh(podman.image_id(ctx.tools.provider, ref),
                                                 capture=True).stdout.strip()
            if image and _loaded(cfg).get(svc) == image:
                ctx.log(f"{ref} ({image[:12]}) is already in cluster {cfg.cluster_name}: not reloaded")
                return Noted("reused: already in the cluster", ref)
            ctx.sh(kind.load_image_archive(archive, cfg.cluster_name),
                   env=kind.provider_env(ctx.tools.provider))
            if image:
                _record_loaded(cfg, svc, image)
        finally:
            archive.unlink(missing_ok=True)
        return ref

    build_image.__doc__ = f"Build the {svc} image for the node's architecture."
    save_image.__doc__ = f"Save the {svc} image to a temporary archive."
    load_image.__doc__ = f"Load the {svc} archive into the Kind nodes, then delete it."
    STACK.step(f"build-{svc}", needs=("preflight",), groups=("images",), plan=plan_build)(build_image)
    STACK.step(f"save-{svc}", needs=(f"build-{svc}",), groups=("images",), plan=plan_save)(save_image)
    STACK.step(f"load-{svc}", needs=(f"save-{svc}", "cluster"), groups=("images",),
               plan=plan_load)(load_image)


for _svc in SERVICES:
    _declare_image_steps(_svc)


# --- Kubernetes steps ------------------------------------------------------------------------
# Thin declarations: the work is in kubernaut_e2e.deploy, imported lazily so that `invoke --list`
# never imports the kubernetes client.

def _deploy(name: str):  # type: ignore[no-untyped-def]
    def body(ctx: StepContext) -> object:
        from kubernaut_e2e import deploy

        return getattr(deploy, name)(ctx)

    return body


def _plan_deploy(name: str):  # type: ignore[no-untyped-def]
    def plan(p: PlanInputs) -> list[str]:
        from kubernaut_e2e import deploy_plan

        return deploy_plan.describe(name, p.cfg)

    return plan


_KUBE_STEPS = (
    ("crds", ("cluster",), "Apply the Kubernaut CRDs and wait until they are Established."),
    ("namespace", ("cluster",), "Create the namespace."),
    ("infra", ("namespace",), "Deploy PostgreSQL and Redis."),
    ("migrations", ("infra",), "Apply the DataStorage SQL migrations once PostgreSQL is ready."),
    ("datastorage", ("load-datastorage", "migrations", "infra"), "Deploy DataStorage, wait ready."),
    ("gateway", ("load-gateway", "datastorage", "infra", "crds"), "Deploy the Gateway, wait ready."),
    ("health", ("gateway",), "GET /health on the Gateway and DataStorage host ports."),
)

for _name, _needs, _help in _KUBE_STEPS:
    _body = _deploy(_name)
    _body.__doc__ = _help
    STACK.step(_name, needs=_needs, groups=("deploy",) if _name != "health" else ("check",),
               plan=_plan_deploy(_name))(_body)
