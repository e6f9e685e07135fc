"""Checks made before anything starts: tools on PATH and inputs on disk (exit 2 on failure)."""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.errors import UsageError

_HOW_TO_SET = ("set it with --source-dir PATH, INVOKE_E2E_SOURCE_DIR=PATH, "
               "or `e2e: {source_dir: PATH}` in invoke.yaml")

_INSTALL_HINTS = {
    "kind": "kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)",
    "podman": "podman or docker (https://podman.io/docs/installation)",
    "docker": "docker (https://docs.docker.com/engine/install/)",
}


@dataclass(frozen=True)
class Tools:
    provider: str  # "podman" or "docker": the CLI that builds, saves and removes images
    kind: str  # path of the kind executable


def choose_provider(cfg: E2EConfig, which: Callable[[str], str | None] = shutil.which) -> str | None:
    """The container CLI to use: e2e.provider if installed; under `auto`, podman, else docker."""
    if cfg.provider != "auto":
        return cfg.provider if which(cfg.provider) else None
    return next((t for t in ("podman", "docker") if which(t)), None)


def find_tools(cfg: E2EConfig, which: Callable[[str], str | None] = shutil.which, *,
               need: bool = True) -> Tools:
    """Resolve the provider (podman preferred under `auto`) and kind; name everything missing.

    `need=False` (a dry run, which runs nothing) never fails: a missing tool is named by the
    command it would run (`kind`, and e2e.provider or podman).
    """
    missing: list[str] = []
    kind = which("kind")
    if not kind:
        missing.append(_INSTALL_HINTS["kind"])
    provider = choose_provider(cfg, which)
    if provider is None:
        missing.append(_INSTALL_HINTS["podman"] if cfg.provider == "auto"
                       else f"{cfg.provider} (e2e.provider is {cfg.provider!r})")
    if missing and need:
        raise UsageError("preflight: missing tools: " + "; ".join(missing))
    return Tools(provider=provider or (cfg.provider if cfg.provider != "auto" else "podman"),
                 kind=kind or "kind")


def check_source(cfg: E2EConfig, images: Iterable[str]) -> list[str]:
    """The source tree has what the stack's images need; their Dockerfiles exist."""
    src = cfg.source_dir
    if not src.is_dir():
        return [f"config e2e.source_dir: {src} does not exist (it must be a Kubernaut checkout); {_HOW_TO_SET}"]
    problems = []
    for name in images:
        for required in cfg.stack.image(name).requires:
            if not (src / required).exists():
                problems.append(f"{src / required}: missing, but image {name} is built from it "
                                f"(is {src} a Kubernaut checkout of the stack's version?); fix: {_HOW_TO_SET}")
        if cfg.stack.image(name).on_host:  # compiled on the host: its Dockerfile is generated
            from kubernaut_e2e.gobuild import source_problems

            problems += source_problems(cfg.stack.image(name), src, cfg.stack.path, shutil.which)
            continue
        if not cfg.dockerfile(name).is_file():
            where = "in the source tree" if cfg.stack.image(name).in_source else "next to the stack"
            problems.append(f"{cfg.dockerfile(name)}: Dockerfile of image {name} does not exist ({where}); "
                            f"fix: correct images.{name} in {cfg.stack.path}")
    return problems


def check_go_mod(cfg: E2EConfig, images: Iterable[str]) -> list[str]:
    """go.mod's `go` line must fit the Go of each builder image, or the build cannot succeed."""
    from kubernaut_e2e.dockerfile import builder_go_version, check_go_mod as fits

    go_mod = cfg.source_dir / "go.mod"
    if not go_mod.is_file():
        return []
    problems = []
    for name in images:
        dockerfile = cfg.dockerfile(name)
        if not dockerfile.is_file():
            continue
        builder = builder_go_version(dockerfile.read_text())
        check = fits(builder, go_mod.read_text(), str(go_mod))
        if check.status == "fail":
            problems.append(f"{check.detail} ({dockerfile} builds with Go {builder}); fix: {check.fix}")
    return problems


def check_deploy_inputs(cfg: E2EConfig, steps: set[str]) -> list[str]:
    """CRDs, migrations and manifests exist and parse, before anything is created."""
    from kubernaut_e2e import manifests
    from kubernaut_e2e.migrations import load_migrations

    problems: list[str] = []
    values = manifests.template_values(cfg, manifests.placeholder_secrets(cfg))
    for comp in cfg.stack.components:
        if comp.name not in steps:
            continue
        if comp.type in ("crds", "migrations"):
            pattern = comp.settings["source"]
            if not cfg.source_dir.is_dir():
                problems.append(f"config e2e.source_dir: {cfg.source_dir} does not exist; {_HOW_TO_SET}")
                continue
            files = sorted(cfg.source_dir.glob(pattern))
            if not files:
                problems.append(f"{cfg.source_dir / pattern}: no files match, but component {comp.name} "
                                f"applies them; fix: check e2e.source_dir or components.{comp.name}.source")
                continue
            try:
                if comp.type == "crds":
                    for path in files:
                        manifests.load_documents(path.read_text(), str(path))
                else:
                    load_migrations(files)
            except (UsageError, ValueError) as exc:
                problems.append(f"{cfg.source_dir / pattern}: {exc}")
        manifests.render_component(comp, values)
    return problems


def check_kind_version(cfg: E2EConfig, version_output: str) -> list[str]:
    """kind must know the stack's node image (newer node images need newer kind)."""
    from kubernaut_e2e.kind import parse_version

    found = parse_version(version_output)
    want = parse_version(cfg.stack.cluster.kind_min_version)
    if found is None or want is None or found >= want:
        return []
    return [f"kind v{'.'.join(map(str, found))} is older than {cfg.stack.cluster.kind_min_version}, which "
            f"the node image {cfg.stack.cluster.node_image.split('@')[0]} needs; fix: install kind "
            f"{cfg.stack.cluster.kind_min_version} or newer (https://kind.sigs.k8s.io/docs/user/quick-start/)"]


def busy_host_ports(cfg: E2EConfig, bind: Callable[[int], bool] | None = None) -> list[str]:
    """Host ports the new cluster must publish but something else already holds."""
    bind = bind or can_bind
    problems = []
    for port in cfg.stack.cluster.ports:
        number = cfg.host_port(port.name)
        if not bind(number):
            problems.append(f"host port {number} ({port.name}: {port.purpose or 'published by kind'}) is in use; "
                            f"fix: stop what listens there (`ss -ltnp 'sport = :{number}'`) or map it elsewhere "
                            f"with e2e.host_ports {port.name}=<free port>")
    return problems


def can_bind(port: int) -> bool:
    """True when nothing on this machine listens on `port` (on any address)."""
    import socket

    # kind publishes on all addresses: anything listening on the port, on any address, blocks it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
