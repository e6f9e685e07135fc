"""`e2e.toolchain`: is this machine, its container provider, the cluster and the Dockerfiles
set up to build images that run natively on the Kind node?

Every check is ok / warn / fail with the fix. The architecture checks exist because the
Gateway's `lfstack.push` crash came from an amd64 binary emulated on an arm64 node.
"""
from __future__ import annotations

import platform
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernaut_e2e import kind, podman
from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.dockerfile import Check, builder_go_version, check_dockerfile, check_go_mod
from kubernaut_e2e.errors import UsageError
from kubernaut_e2e.preflight import choose_provider
from kubernaut_e2e.runner import Cancellation, CommandFailed, Runner

if TYPE_CHECKING:
    from kubernaut_e2e.context import Site


@dataclass(frozen=True)
class Facts:
    host_os: str
    host_arch: str
    provider: str | None
    provider_arch: str | None
    node_archs: dict[str, str]
    target_arch: str


def _run(runner: Runner, argv: list[str], env: dict[str, str] | None = None) -> str | None:
    try:
        return runner.run(argv, capture=True, env=env, timeout=30).stdout.strip()
    except CommandFailed:
        return None


def environment(cfg: E2EConfig, arch: str | None, runner: Runner,
                which: Callable[[str], str | None] = shutil.which,
                node_archs: Callable[[E2EConfig], dict[str, str]] | None = None,
                host: tuple[str, str] | None = None) -> tuple[Facts, list[Check]]:
    """`host`: the OS and architecture of the machine the tools run on (default: this one)."""
    checks: list[Check] = []
    host_os, host_arch = host or (platform.system(), podman.normalize_arch(platform.machine()))
    checks.append(Check("host", "ok", f"{host_os} {host_arch}"))

    provider = choose_provider(cfg, which)
    provider_arch = None
    if provider is None:
        checks.append(Check("provider", "fail", "no container provider (podman or docker) on PATH",
                            "install podman (https://podman.io/docs/installation)"))
    else:
        version = _run(runner, podman.version(provider)) or "version unknown"
        raw_arch = _run(runner, podman.info_arch(provider))
        provider_arch = podman.normalize_arch(raw_arch) if raw_arch else None
        if provider_arch is None:
            checks.append(Check("provider", "fail", f"{provider} {version}: not responding (`{provider} info` failed)",
                                "start it (podman: `podman machine start` on macOS; docker: start the engine)"))
        else:
            where = " (the podman machine's)" if provider == "podman" and host_os == "Darwin" else ""
            checks.append(Check("provider", "ok", f"{provider} {version}, runs {provider_arch} containers{where}"))
            if provider_arch != host_arch:
                checks.append(Check("provider-arch", "warn",
                                    f"the provider runs {provider_arch} containers on a {host_arch} host: "
                                    "everything it runs is emulated",
                                    "use a provider (or podman machine) of the host's architecture"))

    if which("kind"):
        checks.append(Check("kind", "ok", _run(runner, kind.version()) or "version unknown"))
    else:
        checks.append(Check("kind", "fail", "kind is not on PATH",
                            "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"))

    nodes: dict[str, str] = {}
    if cfg.kubeconfig.is_file():
        try:
            nodes = (node_archs or _node_archs)(cfg)
            detail = ", ".join(f"{n} {a}" for n, a in sorted(nodes.items())) or "no nodes"
            checks.append(Check("nodes", "ok", f"cluster {cfg.cluster_name}: {detail}"))
        except Exception as exc:  # an unreachable cluster is a finding here, not a crash
            checks.append(Check("nodes", "warn", f"cluster {cfg.cluster_name} did not answer: "
                                f"{' '.join(str(exc).split())[:160]}", "`invoke e2e.up` to (re)create it"))
    else:
        checks.append(Check("nodes", "ok", f"no cluster {cfg.cluster_name} yet; target = the provider's arch"))
    node_set = set(nodes.values())
    if provider_arch and node_set and node_set != {provider_arch}:
        checks.append(Check("node-arch", "warn", f"nodes are {', '.join(sorted(node_set))} but the provider "
                            f"runs {provider_arch}", "recreate the cluster: `invoke e2e.up --recreate`"))
    target = podman.normalize_arch(arch) if arch else (
        sorted(node_set)[0] if len(node_set) == 1 else provider_arch or host_arch)
    return Facts(host_os, host_arch, provider, provider_arch, nodes, target), checks


def _node_archs(cfg: E2EConfig) -> dict[str, str]:
    from kubernaut_e2e.diagnose import node_architectures
    from kubernaut_e2e.kube import Kube

    kube = Kube(cfg.kubeconfig, request_timeout=10)
    try:
        return node_architectures(kube)
    finally:
        kube.close()


def dockerfile_checks(paths: Sequence[Path], target_arch: str,
                      approved: tuple[str, ...]) -> tuple[list[Check], str | None]:
    """Checks of each Dockerfile, and the builder's Go version (for the go.mod check)."""
    checks: list[Check] = []
    builder_go = None
    for path in paths:
        text = path.read_text()
        for check in check_dockerfile(text, str(path), target_arch, approved):
            # The check name already says which file; keep line numbers, drop the long path.
            detail = check.detail.replace(f"{path}:", "line ", 1).replace(f"{path}", "", 1).lstrip(": ")
            checks.append(Check(f"{path.name}: {check.name}", check.status, detail, check.fix))
        builder_go = builder_go or builder_go_version(text, target_arch)
    return checks, builder_go


def built_image_archs(cfg: E2EConfig, provider: str | None, runner: Runner) -> dict[str, str]:
    """`os/arch` recorded in each of our images that exists locally, by service."""
    if provider is None:
        return {}
    found = {svc: _run(runner, podman.image_arch(provider, cfg.image_ref(svc))) for svc in cfg.images}
    return {svc: out for svc, out in found.items() if out}


def image_checks(cfg: E2EConfig, provider: str | None, target_arch: str, runner: Runner) -> list[Check]:
    checks: list[Check] = []
    if provider is None:
        return checks
    built = built_image_archs(cfg, provider, runner)
    for svc in cfg.images:
        ref = cfg.image_ref(svc)
        out = built.get(svc)
        if not out:
            checks.append(Check(f"image {svc}", "ok", f"{ref} not built yet"))
            continue
        image_arch = podman.normalize_arch(out.split("/")[-1])
        if image_arch == target_arch:
            checks.append(Check(f"image {svc}", "ok", f"{ref} is {out}"))
        else:
            checks.append(Check(f"image {svc}", "fail", f"{ref} is {out} but the node is {target_arch}: "
                                "it would run emulated (the lfstack.push crash)",
                                "rebuild it: `invoke e2e.up --only images`"))
    return checks


def run_toolchain(cfg: E2EConfig, *, dockerfiles: Sequence[str], arch: str | None,
                  approved: tuple[str, ...], site: Site | None = None) -> tuple[Facts, list[Check]]:
    """Every check; the host, provider, kind and built images are the site's (a remote host's
    with --host), the Dockerfiles and go.mod are read here (the host builds from a copy)."""
    from kubernaut_e2e.context import LocalSite

    site = site or LocalSite(cfg)
    host_built = [] if dockerfiles else [s for s in cfg.images if cfg.stack.image(s).on_host]
    paths = [Path(p).resolve() for p in dockerfiles] or [cfg.dockerfile(s) for s in cfg.images if s not in host_built]
    for path in paths:
        if not path.is_file():
            raise UsageError(f"--dockerfile {path}: no such file")
    if arch is not None and podman.normalize_arch(arch) not in ("amd64", "arm64", "arm", "ppc64le", "s390x"):
        raise UsageError(f"--arch {arch}: not an architecture (amd64, arm64, ...)")
    runner = site.runner(Cancellation())
    facts, checks = environment(cfg, arch, runner, which=site.which, host=site.platform())
    checks.append(Check("target-arch", "ok", f"images must be built for {facts.target_arch}"))
    df_checks, builder_go = dockerfile_checks(paths, facts.target_arch, approved)
    checks.extend(df_checks)
    from kubernaut_e2e import gobuild

    for name in host_built:  # their Dockerfile is generated: check the text the build would use
        for check in gobuild.checks(cfg.stack.image(name), facts.target_arch, approved, "generated Dockerfile"):
            checks.append(Check(f"{name} (build: host): {check.name}", check.status, check.detail, check.fix))
    checks.extend(image_checks(cfg, facts.provider, facts.target_arch, runner))
    go_mod = cfg.source_dir / "go.mod"
    if go_mod.is_file():
        checks.append(check_go_mod(builder_go, go_mod.read_text(), str(go_mod)))
    else:
        checks.append(Check("go-mod", "warn", f"{go_mod} not found", "set e2e.source_dir to a Kubernaut checkout"))
    return facts, checks


def document(facts: Facts, checks: Sequence[Check]) -> dict[str, Any]:
    return {"facts": asdict(facts), "checks": [asdict(c) for c in checks],
            "failed": sum(c.status == "fail" for c in checks)}


def render(checks: Sequence[Check], stream: Any) -> None:
    """A table on a terminal; into a pipe or file, plain columns, one line per check."""
    from kubernaut_e2e.console import is_terminal, plain_table

    if not is_terminal(stream):
        rows = [(c.status, c.name, c.detail + (f" (fix: {c.fix})" if c.fix else "")) for c in checks]
        stream.write("\n".join(plain_table(("status", "check", "detail"), rows)) + "\n")
        stream.flush()
        return

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Toolchain", title_justify="left", show_lines=False)
    for col in ("check", "status", "detail", "fix"):
        table.add_column(col, overflow="fold")
    style = {"ok": "green", "warn": "yellow", "fail": "bold red"}
    for c in checks:
        table.add_row(escape(c.name), f"[{style[c.status]}]{c.status}[/]", escape(c.detail), escape(c.fix))
    Console(file=stream).print(table)
