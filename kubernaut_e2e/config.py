"""The `e2e` configuration: embedded defaults, validation, and derived paths.

Precedence is Invoke's own (defaults < invoke.yaml `e2e:` < `INVOKE_E2E_*` env vars < `-f` file)
with task flags applied last. Everything is validated once, here, before any step starts, so a
bad value is reported as one line naming the key, with exit code 2.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernaut_e2e.errors import UsageError

#: The package: its stacks/ folder holds the default stack's manifests and Dockerfiles.
PACKAGE_DIR = Path(__file__).resolve().parent
#: The project checkout (where tasks.py lives): relative config paths are taken from here.
PROJECT_ROOT = PACKAGE_DIR.parent
#: Invoke config key (beside `e2e:`) naming another folder for relative paths: the installed
#: `kubernaut-e2e` command sets it to where the user stands (see cli.py).
PATHS_ROOT_KEY = "e2e_paths_root"

#: The services whose images this project builds, in a fixed order.
SERVICES = ("gateway", "datastorage")

DEFAULTS: dict[str, Any] = {
    "cluster_name": "gateway-e2e",
    "provider": "auto",
    "source_dir": "../kubernaut",
    "dockerfile_dir": "kubernaut_e2e/stacks/gateway-e2e",
    "kind_config": "kubernaut_e2e/stacks/gateway-e2e/manifests/kind-config.yaml",
    "kind_wait": "5m",
    "state_dir": ".e2e",
    "gateway_image": "localhost/kubernaut-gateway:e2e-test",
    "datastorage_image": "localhost/kubernaut-datastorage:e2e-test",
    "go_version": "1.24",
    "jobs": 4,
    "namespace": "kubernaut-system",
    "gateway_node_port": 30091,
    "gateway_host_port": 30091,
    "datastorage_node_port": 30081,
    "datastorage_host_port": 30081,
    "crd_glob": "config/crd/bases/*.yaml",
    "migrations_glob": "migrations/*.sql",
    "postgres_image": "docker.io/library/postgres:16-alpine",
    "redis_image": "docker.io/library/redis:7-alpine",
    "memory_limit": "512Mi",
    "cpu_limit": "500m",
    "crd_timeout": 60,
    "ready_timeout": 180,
    "health_timeout": 60,
    "time_budget": 360,
    "command_timeout": 1800,
    "test_command": "go test ./test/e2e/gateway/... -v -json -timeout 30m",
    "approved_registries": "registry.access.redhat.com",
}

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The grammar of github.com/distribution/reference, without the rarely used IPv6 hosts.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REF = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?/)?"
    rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@sha256:[a-f0-9]{64})?$"
)
_DURATION = re.compile(r"^[0-9]+(?:\.[0-9]+)?(?:ns|us|ms|s|m|h)$")
_QUANTITY = re.compile(r"^[0-9]+(?:\.[0-9]+)?(?:m|k|Ki|Mi|Gi|M|G)?$")
_GO_VERSION = re.compile(r"^1\.[0-9]+(?:\.[0-9]+)?(?:-[0-9]+(?:\.[0-9]+)*)?$")


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def is_image_ref(value: str) -> bool:
    return len(value) <= 255 and bool(_IMAGE_REF.match(value))


@dataclass(frozen=True)
class E2EConfig:
    """Validated settings of one run. Field docs are the `invoke.yaml` keys under `e2e:`."""

    cluster_name: str  # Kind cluster name (DNS-1123 label)
    provider: str  # auto | podman | docker
    source_dir: Path  # the Kubernaut checkout the images are built from
    dockerfile_dir: Path  # folder holding Dockerfile.gateway and Dockerfile.datastorage
    kind_config: Path
    kind_wait: str  # passed to `kind create cluster --wait`
    state_dir: Path  # run state (kubeconfig, archives) and run logs live here
    gateway_image: str
    datastorage_image: str
    go_version: str  # tag of the ubi9/go-toolset builder image
    jobs: int
    namespace: str
    gateway_node_port: int
    gateway_host_port: int
    datastorage_node_port: int
    datastorage_host_port: int
    crd_glob: str  # relative to source_dir
    migrations_glob: str  # relative to source_dir
    postgres_image: str
    redis_image: str
    memory_limit: str
    cpu_limit: str
    crd_timeout: int
    ready_timeout: int
    health_timeout: int
    time_budget: int
    command_timeout: int  # seconds any one external command (build, kind) may take
    test_command: str  # the E2E suite, split like a shell would but never run by one
    approved_registries: str  # comma-separated registries base images may come from (ADR-028)

    @property
    def registries(self) -> tuple[str, ...]:
        return tuple(r.strip() for r in self.approved_registries.split(",") if r.strip())

    def image_ref(self, service: str) -> str:
        """The one image reference of a service: built, saved, loaded and deployed."""
        return {"gateway": self.gateway_image, "datastorage": self.datastorage_image}[service]

    @property
    def test_argv(self) -> list[str]:
        return shlex.split(self.test_command)

    def dockerfile(self, service: str) -> Path:
        return self.dockerfile_dir / f"Dockerfile.{service}"

    @property
    def cluster_state_dir(self) -> Path:
        """Per-cluster run state; `e2e.clean` removes exactly this folder."""
        return self.state_dir / "state" / self.cluster_name

    @property
    def kubeconfig(self) -> Path:
        return self.cluster_state_dir / "kubeconfig"

    @property
    def rendered_kind_config(self) -> Path:
        """kind_config with the port settings filled in: what `kind create` is given."""
        return self.cluster_state_dir / "kind-config.yaml"

    @property
    def archive_dir(self) -> Path:
        return self.cluster_state_dir / "archives"

    def archive(self, service: str) -> Path:
        return self.archive_dir / f"{service}.tar"

    @property
    def locks_dir(self) -> Path:
        return self.state_dir / "locks"

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"


class ConfigError(UsageError):
    """A bad config key or value. `key` names it, `source` where it came from (a file, an
    environment variable, a flag) so the one-line message can say both."""

    def __init__(self, key: str, why: str, source: str = "") -> None:
        self.key, self.why, self.source = key, why, source
        where = f" (from {source})" if source else ""
        super().__init__(f"config e2e.{key}{where}: {why}")


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0", "")


def _check_type(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        # Environment variables and flags arrive as strings.
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        # Flags and env vars arrive as strings; accept "4" but not "four" or 4.5.
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(key, f"expected an integer, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {value!r}")
    return value


def _check_values(values: dict[str, Any]) -> None:
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(key, f"{values[key]!r} {why}")

    if not is_dns1123_label(values["cluster_name"]):
        raise bad("cluster_name", "is not a valid DNS-1123 name (lowercase letters, digits, '-')")
    if not is_dns1123_label(values["namespace"]):
        raise bad("namespace", "is not a valid DNS-1123 name (lowercase letters, digits, '-')")
    for key in ("gateway_image", "datastorage_image", "postgres_image", "redis_image"):
        if not is_image_ref(values[key]):
            raise bad(key, "is not a valid image reference (e.g. localhost/name:tag)")
    if values["gateway_image"] == values["datastorage_image"]:
        raise bad("datastorage_image", "is the same as e2e.gateway_image")
    if values["provider"] not in ("auto", "podman", "docker"):
        raise bad("provider", "must be one of auto, podman, docker")
    if not _DURATION.match(values["kind_wait"]):
        raise bad("kind_wait", "is not a duration like 5m or 300s")
    if not _GO_VERSION.match(values["go_version"]):
        raise bad("go_version", "is not a Go version like 1.24 or 1.24.6")
    for key in ("memory_limit", "cpu_limit"):
        if not _QUANTITY.match(values[key]):
            raise bad(key, "is not a Kubernetes quantity like 512Mi or 500m")
    if values["jobs"] < 1:
        raise bad("jobs", "must be at least 1")
    try:
        if not shlex.split(values["test_command"]):
            raise bad("test_command", "is empty")
    except ValueError as exc:
        raise bad("test_command", f"cannot be split into arguments ({exc})") from None
    for key in ("crd_timeout", "ready_timeout", "health_timeout", "time_budget", "command_timeout"):
        if values[key] <= 0:
            raise bad(key, "must be a positive number of seconds")
    for key in ("gateway_node_port", "datastorage_node_port"):
        if not 30000 <= values[key] <= 32767:
            raise bad(key, "is outside the NodePort range 30000-32767")
    for key in ("gateway_host_port", "datastorage_host_port"):
        if not 1 <= values[key] <= 65535:
            raise bad(key, "is not a TCP port")
    for registry in values["approved_registries"].split(","):
        if registry.strip() and not re.match(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._/-]+)?$", registry.strip()):
            raise bad("approved_registries", "must be comma-separated registry host names")
    for key in ("crd_glob", "migrations_glob"):
        if Path(values[key]).is_absolute() or ".." in Path(values[key]).parts:
            raise bad(key, "must be a pattern relative to e2e.source_dir")


def load_config(
    raw: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    *,
    root: Path = PROJECT_ROOT,
    sources: Mapping[str, str] | None = None,
) -> E2EConfig:
    """Validate Invoke's merged `e2e` config plus flag overrides (None means "not given").

    Relative paths are taken relative to `root` (the project), not the current directory,
    so `invoke` behaves the same from any subfolder. `sources` maps a key to where its value
    came from ("INVOKE_E2E_JOBS", "/path/invoke.yaml", "--jobs"); an error then names both.
    kubernaut_e2e.config_sources checks each source on its own with this same function.
    """
    try:
        return _load(raw, overrides or {}, root)
    except ConfigError as exc:
        source = (sources or {}).get(exc.key, "")
        if source and not exc.source:
            raise ConfigError(exc.key, exc.why, source) from None
        raise


def _load(raw: Mapping[str, Any], overrides: Mapping[str, Any], root: Path) -> E2EConfig:
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ConfigError(unknown[0], f"unknown key (known keys: {', '.join(sorted(DEFAULTS))})")
    values = dict(DEFAULTS)
    values.update(raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    values = {key: _check_type(key, values[key], DEFAULTS[key]) for key in DEFAULTS}
    _check_values(values)
    for key in ("source_dir", "dockerfile_dir", "kind_config", "state_dir"):
        path = Path(values[key]).expanduser()
        values[key] = path if path.is_absolute() else (root / path).resolve()
    return E2EConfig(**values)


def paths_root(invoke_config: Mapping[str, Any]) -> Path:
    """The folder relative paths are taken from: the project, unless PATHS_ROOT_KEY says otherwise."""
    value = invoke_config.get(PATHS_ROOT_KEY)
    return Path(value) if value else PROJECT_ROOT


def config_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(E2EConfig))
