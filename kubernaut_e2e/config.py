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
from kubernaut_e2e.hosts import HostSpec, parse_host
from kubernaut_e2e.stack import DEFAULT_STACK, Stack, load_stack

#: The package: its stacks/ folder holds the default stack's manifests and Dockerfiles.
PACKAGE_DIR = Path(__file__).resolve().parent
#: The project checkout (where tasks.py lives): relative config paths are taken from here.
PROJECT_ROOT = PACKAGE_DIR.parent
#: Invoke config key (beside `e2e:`) naming another folder for relative paths: the installed
#: `kubernaut-e2e` command sets it to where the user stands (see cli.py).
PATHS_ROOT_KEY = "e2e_paths_root"

DEFAULTS: dict[str, Any] = {
    "cluster_name": "gateway-e2e",
    "provider": "auto",
    "source_dir": "../kubernaut",
    "stack": "",  # "" = the stack shipped with the package (stacks/gateway-e2e/stack.yaml)
    "image_tag": "",  # "" = the cluster's name: each cluster has its own images
    "host_ports": "",  # "name=port,..." overrides of the stack's host ports
    "state_dir": ".e2e",
    "jobs": 4,
    "crd_timeout": 60,
    "ready_timeout": 180,
    "health_timeout": 60,
    "time_budget": 360,
    "command_timeout": 1800,
    "test_command": "",  # "" = go test <the stack's suite package> -v -json -timeout 30m
    "approved_registries": "registry.access.redhat.com",
    "host": "",  # "" = this machine; "[USER@]HOST[:PORT],..." = run there, over SSH (see remote_site.py)
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
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def is_image_ref(value: str) -> bool:
    return len(value) <= 255 and bool(_IMAGE_REF.match(value))


@dataclass(frozen=True)
class E2EConfig:
    """Validated settings of one run: the `e2e:` keys plus the stack they name.

    Field docs are the `invoke.yaml` keys under `e2e:`; what the environment contains (images,
    ports, manifests, health paths) is the stack's (see kubernaut_e2e.stack).
    """

    cluster_name: str  # Kind cluster name (DNS-1123 label)
    provider: str  # auto | podman | docker
    source_dir: Path  # the Kubernaut checkout the images are built from
    stack: Stack  # the environment, as data
    image_tag: str  # the tag of every image this project builds for this cluster
    host_ports: Mapping[str, int]  # port name -> host port (the stack's, with e2e.host_ports)
    state_dir: Path  # run state (kubeconfig, archives) and run logs live here
    jobs: int
    crd_timeout: int
    ready_timeout: int
    health_timeout: int
    time_budget: int
    command_timeout: int  # seconds any one external command (build, kind) may take
    test_command: str  # the E2E suite, split like a shell would but never run by one
    approved_registries: str  # comma-separated registries base images may come from (ADR-028)
    hosts: tuple[HostSpec, ...] = ()  # e2e.host: where the environment runs (none: this machine)

    @property
    def host(self) -> str:
        """e2e.host as given (normalised): the hosts' labels, comma-separated; "" for this machine."""
        return ",".join(spec.label for spec in self.hosts)

    @property
    def registries(self) -> tuple[str, ...]:
        return tuple(r.strip() for r in self.approved_registries.split(",") if r.strip())

    @property
    def namespace(self) -> str:
        return self.stack.namespace

    @property
    def images(self) -> tuple[str, ...]:
        """The names of the images this project builds, in the stack's order."""
        return self.stack.image_names

    def image_ref(self, name: str) -> str:
        """The one reference of an image: built, saved, loaded and deployed."""
        return f"{self.stack.image(name).repository}:{self.image_tag}"

    def dockerfile(self, name: str) -> Path:
        """The image's Dockerfile; for `build: host`, where its generated one is written."""
        if self.stack.image(name).on_host:
            return self.host_build_dir(name) / "Dockerfile"
        return self.stack.image(name).dockerfile_path(self.source_dir)

    def host_build_dir(self, name: str) -> Path:
        """`build: host`: the generated Dockerfile and the build context (the binary)."""
        return self.cluster_state_dir / "host-builds" / name

    def host_port(self, port: str) -> int:
        return self.host_ports[port]

    def url(self, endpoint: str) -> str:
        """How the host reaches an endpoint: 127.0.0.1 and the published host port."""
        ep = self.stack.endpoint(endpoint)
        return f"{ep.scheme}://127.0.0.1:{self.host_port(ep.port)}"

    @property
    def test_argv(self) -> list[str]:
        if not self.test_command:
            return ["go", "test", self.stack.suite.package, "-v", "-json", "-timeout", "30m"]
        return shlex.split(self.test_command)

    @property
    def cluster_state_dir(self) -> Path:
        """Per-cluster run state; `e2e.clean` removes exactly this folder."""
        return self.state_dir / "state" / self.cluster_name

    @property
    def kubeconfig(self) -> Path:
        return self.cluster_state_dir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        """The environment's CA certificate (PEM), written by the tls step for host clients."""
        return self.cluster_state_dir / "inter-service-ca.pem"

    @property
    def rendered_kind_config(self) -> Path:
        """The kind config derived from the stack: what `kind create` is given."""
        return self.cluster_state_dir / "kind-config.yaml"

    @property
    def archive_dir(self) -> Path:
        return self.cluster_state_dir / "archives"

    def archive(self, name: str) -> Path:
        return self.archive_dir / f"{name}.tar"

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
    if values["image_tag"] and not _TAG.match(values["image_tag"]):
        raise bad("image_tag", "is not an image tag (letters, digits, '_', '.', '-'; at most 128)")
    if values["provider"] not in ("auto", "podman", "docker"):
        raise bad("provider", "must be one of auto, podman, docker")
    if values["jobs"] < 1:
        raise bad("jobs", "must be at least 1")
    try:
        if values["test_command"].strip() and not shlex.split(values["test_command"]):
            raise bad("test_command", "is empty")
    except ValueError as exc:
        raise bad("test_command", f"cannot be split into arguments ({exc})") from None
    for key in ("crd_timeout", "ready_timeout", "health_timeout", "time_budget", "command_timeout"):
        if values[key] <= 0:
            raise bad(key, "must be a positive number of seconds")
    for registry in values["approved_registries"].split(","):
        if registry.strip() and not re.match(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._/-]+)?$", registry.strip()):
            raise bad("approved_registries", "must be comma-separated registry host names")


def _host_ports(value: Any, stack: Stack) -> dict[str, int]:
    """The stack's host ports with e2e.host_ports applied ("name=port,..." or a mapping)."""
    def bad(why: str) -> ConfigError:
        return ConfigError("host_ports", f"{value!r} {why}")

    if isinstance(value, str):
        pairs: dict[str, Any] = {}
        for item in filter(None, (v.strip() for v in value.split(","))):
            name, sep, port = item.partition("=")
            if not sep:
                raise bad("must be name=port pairs separated by commas, e.g. gateway-api=18080")
            pairs[name.strip()] = port.strip()
    elif isinstance(value, Mapping):
        pairs = dict(value)
    else:
        raise bad("must be name=port pairs or a mapping")
    ports = {p.name: p.host_port for p in stack.cluster.ports}
    for name, port in pairs.items():
        if name not in ports:
            raise bad(f"names no port of the stack (known: {', '.join(ports)})")
        try:
            number = int(port)
        except (TypeError, ValueError):
            raise bad(f"gives {port!r} for {name}, not a port number") from None
        if not 1 <= number <= 65535 or isinstance(port, bool):
            raise bad(f"gives {port!r} for {name}, not a TCP port")
        ports[name] = number
    used: dict[int, str] = {}
    for name, number in ports.items():
        if number in used:
            raise bad(f"puts {name} and {used[number]} on the same host port {number}")
        used[number] = name
    return ports


def _hosts(value: Any) -> tuple[HostSpec, ...]:
    """e2e.host: `[USER@]HOST[:PORT]` entries, comma-separated or a list; each one at most once."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise ConfigError("host", f"{value!r} must be [USER@]HOST[:PORT] entries (a string or a list)")
    found: list[HostSpec] = []
    for item in filter(None, items):
        try:
            spec = parse_host(item, source="")
        except UsageError as exc:
            raise ConfigError("host", str(exc).strip()) from None
        if spec in found:
            raise ConfigError("host", f"{item!r} is given twice (each host runs one environment)")
        found.append(spec)
    return tuple(found)


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
    kubernaut_e2e.config_sources checks each source on its own with this same function. The
    stack file is loaded and validated here too: everything is checked before any side effect.
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
    host_ports = values.pop("host_ports")
    hosts = _hosts(values.pop("host"))
    values = {key: _check_type(key, values[key], DEFAULTS[key]) for key in values}
    _check_values(values)
    for key in ("source_dir", "state_dir", "stack"):
        if key == "stack" and not values[key]:
            values[key] = DEFAULT_STACK
            continue
        path = Path(values[key]).expanduser()
        values[key] = path if path.is_absolute() else (root / path).resolve()
    stack = load_stack(values["stack"])
    values["stack"] = stack
    values["image_tag"] = values["image_tag"] or values["cluster_name"]
    values["host_ports"] = _host_ports(host_ports, stack)
    return E2EConfig(**values, hosts=hosts)


def paths_root(invoke_config: Mapping[str, Any]) -> Path:
    """The folder relative paths are taken from: the project, unless PATHS_ROOT_KEY says otherwise."""
    value = invoke_config.get(PATHS_ROOT_KEY)
    return Path(value) if value else PROJECT_ROOT


def config_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(E2EConfig))
