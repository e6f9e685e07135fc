"""The `kubernaut-e2e` command that `pip install` puts on PATH: the `e2e` tasks without Invoke's
task discovery, so it works from any directory (`kubernaut-e2e up` is `invoke e2e.up`).

It is an Invoke `Program` over the same collection, so flags, `--help up`, `--list` and `--dry`
behave exactly like the tasks. What differs is where it stands:
- relative paths (flags, `kubernaut-e2e.yaml`, `INVOKE_E2E_*` variables) are relative to the
  current directory, not to this package;
- inside a Kubernaut checkout (found by walking up: go.mod's `module github.com/jordigilh/
  kubernaut`, or cmd/gateway beside config/crd) that checkout is the default source tree;
- run state defaults to `$XDG_STATE_HOME/kubernaut-e2e` (~/.local/state/kubernaut-e2e), not to
  `.e2e` where the user stands. The Kind cluster a run creates is per user and machine (kind
  and podman name clusters and images globally), so its kubeconfig, its lock and its run logs
  belong to the user too: one state for `gateway-e2e` whatever directory the command is run
  from, and no state folder inside the Kubernaut checkout, where it would dirty `git status`
  and be copied into every image build context. kind keeps its kubeconfigs under ~/.kube and
  skaffold and tilt their caches under ~/.skaffold and ~/.tilt-dev for the same reason; XDG's
  state directory is where such state goes on Linux and is a plain folder on macOS.
Config files: `./kubernaut-e2e.yaml`, `~/.kubernaut-e2e.yaml`, `/etc/kubernaut-e2e.yaml` and
`-f FILE` (each with an `e2e:` section, as invoke.yaml), and `INVOKE_E2E_*` variables.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from invoke import Collection, Config, Program

from kubernaut_e2e.config import PATHS_ROOT_KEY
from kubernaut_e2e.e2e import collection
from kubernaut_e2e.project_config import exit_on_problem

NAME = "kubernaut-e2e"
#: The config files the command reads in the current directory (Invoke's project level).
def config_prefixes(cwd: Path) -> tuple[str, ...]:
    """The command's config files without their suffix (yaml, yml or json), lowest precedence first."""
    return (f"/etc/{NAME}.", f"~/.{NAME}.", f"{cwd}/{NAME}.")
#: go.mod's module line of a Kubernaut checkout.
KUBERNAUT_MODULE = "github.com/jordigilh/kubernaut"


class CommandConfig(Config):
    """Invoke's config with the command's own file names; env vars stay INVOKE_E2E_*."""

    prefix = "invoke"
    file_prefix = NAME


def go_module(go_mod: Path) -> str | None:
    """The module path declared by a go.mod file, or None."""
    try:
        text = go_mod.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        words = line.split("//")[0].split()
        if len(words) == 2 and words[0] == "module":
            return words[1].strip('"`')
    return None


def find_checkout(start: Path) -> Path | None:
    """The Kubernaut checkout `start` is in (itself or a parent folder), or None."""
    for folder in (start, *start.parents):
        if go_module(folder / "go.mod") == KUBERNAUT_MODULE:
            return folder
        if (folder / "cmd" / "gateway").is_dir() and (folder / "config" / "crd").is_dir():
            return folder
    return None


def state_home(environ: Mapping[str, str]) -> Path:
    """$XDG_STATE_HOME/kubernaut-e2e, or ~/.local/state/kubernaut-e2e (XDG ignores relative values)."""
    base = environ.get("XDG_STATE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path("~/.local/state").expanduser()
    return root / NAME


def command_collection(cwd: Path, environ: Mapping[str, str]) -> Collection:
    """The e2e collection with the command's defaults: paths from `cwd`, state in the user's state dir."""
    ns = collection()
    checkout = find_checkout(cwd)
    # The stack's default is already a path inside the package (kubernaut_e2e.stack.DEFAULT_STACK).
    defaults = {"state_dir": str(state_home(environ))}
    if checkout is not None:
        defaults["source_dir"] = str(checkout)
    ns.configure({"e2e": defaults, PATHS_ROOT_KEY: str(cwd)})
    return ns


class CommandProgram(Program):
    """Invoke's Program over the e2e collection, reading ./kubernaut-e2e.yaml as project config."""

    def __init__(self, cwd: Path, environ: Mapping[str, str]) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("kubernaut-gateway-e2e")
        except PackageNotFoundError:
            found = "unknown"
        super().__init__(version=found, namespace=command_collection(cwd, environ), name=NAME, binary=NAME,
                         binary_names=[NAME], config_class=CommandConfig)
        self.cwd = cwd

    def parse_collection(self) -> None:
        super().parse_collection()
        # With a bundled collection Invoke loads no project config; ours is where the user stands.
        self.config.set_project_location(str(self.cwd))
        self.config.load_project()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (`kubernaut-e2e` in pyproject's [project.scripts])."""
    cwd = Path.cwd()
    exit_on_problem(cwd, config_prefixes(cwd), NAME, always=True)
    CommandProgram(cwd, os.environ).run(argv)


if __name__ == "__main__":
    main()
