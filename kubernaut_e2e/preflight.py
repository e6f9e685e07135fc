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


def check_source(cfg: E2EConfig, services: Iterable[str]) -> None:
    """The Kubernaut checkout and the Dockerfiles for the images about to be built."""
    src = cfg.source_dir
    if not src.is_dir():
        raise UsageError(f"config e2e.source_dir: {src} does not exist "
                         f"(it must be a Kubernaut checkout); {_HOW_TO_SET}")
    for svc in services:
        if not (src / "cmd" / svc).is_dir():
            raise UsageError(f"config e2e.source_dir: {src} has no cmd/{svc} "
                             f"(is it a Kubernaut checkout?); {_HOW_TO_SET}")
        if not cfg.dockerfile(svc).is_file():
            raise UsageError(f"config e2e.dockerfile_dir: {cfg.dockerfile(svc)} does not exist")


def check_kind_config(cfg: E2EConfig) -> None:
    if not cfg.kind_config.is_file():
        raise UsageError(f"config e2e.kind_config: {cfg.kind_config} does not exist")


def check_deploy_inputs(cfg: E2EConfig, steps: set[str]) -> None:
    """CRDs, migrations and manifests exist and parse, before anything is created."""
    from kubernaut_e2e import manifests

    for step, key, pattern in (("crds", "crd_glob", cfg.crd_glob),
                               ("migrations", "migrations_glob", cfg.migrations_glob)):
        if step in steps:
            if not cfg.source_dir.is_dir():
                raise UsageError(f"config e2e.source_dir: {cfg.source_dir} does not exist; {_HOW_TO_SET}")
            files = sorted(cfg.source_dir.glob(pattern))
            if not files:
                raise UsageError(f"config e2e.{key}: no files match {cfg.source_dir / pattern}")
            if step == "crds":
                for path in files:
                    manifests.load_documents(path.read_text(), str(path))
    if "cluster" in steps:
        manifests.load_documents(manifests.render_text(cfg.kind_config, manifests.template_values(cfg, {})),
                                 str(cfg.kind_config), require_name=False)
    # Placeholder secrets: only the templates' syntax is checked here.
    values = manifests.template_values(cfg, {"postgres_admin_password": "x", "postgres_password": "x"})
    for step, names in manifests.STEP_MANIFESTS.items():
        if step in steps:
            for name in names:
                manifests.render(name, values)
