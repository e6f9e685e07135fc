"""The environment as data: one YAML file (a *stack*) says what `e2e.up` stands up.

Why: what the Gateway E2E environment contains (cluster shape, images, manifests, ports, health
paths, dependencies, generated credentials and certificates, what the suite is told) follows
Kubernaut upstream, which moves. Kept as data, following upstream is an edit to a file, and adding
a service is data + its manifest + its Dockerfile. The code derives the step graph, the kind
config, `plan`, `render`, the health checks, the checklist, `clean` and the suite's environment
from a `Stack`.

A stack file may `extends:` another one (paths in each file are relative to that file): mappings
merge key by key, anything else is replaced, and `null` removes a key. Loading validates all of
it (YAML aliases refused, see kubernaut_e2e.safe_yaml), so a bad stack is one line naming the
file and the key, exit 2, before any side effect.
The schema is documented in the default stack, `stacks/gateway-e2e/stack.yaml`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernaut_e2e.errors import UsageError

PACKAGE_DIR = Path(__file__).resolve().parent
#: The stack `e2e.up` uses unless e2e.stack names another: Kubernaut's Gateway E2E environment.
DEFAULT_STACK = PACKAGE_DIR / "stacks" / "gateway-e2e" / "stack.yaml"

#: What each component type does (the code lives in kubernaut_e2e.deploy):
COMPONENT_TYPES = {
    "manifests": "render the component's manifests, server-side apply them, patch status, wait",
    "crds": "apply the CRDs found in the source tree and wait until each is Established",
    "migrations": "apply the source tree's goose migrations with a Job, then verify the final schema",
    "tls": "generate the CA, the services' certificates and signing keys; store them in the cluster",
}

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_EXTENDS = 8


@dataclass(frozen=True)
class PortMapping:
    """A NodePort published on the host by kind (only possible when the cluster is created)."""

    name: str
    node_port: int
    host_port: int
    protocol: str = "TCP"
    purpose: str = ""

    @property
    def var(self) -> str:
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class Mount:
    host_path: str  # relative to the source tree unless absolute
    container_path: str
    read_only: bool = False
    create: bool = True  # create the host folder when missing (kind refuses a missing one)


@dataclass(frozen=True)
class ClusterSpec:
    node_image: str
    kind_min_version: str
    kubernetes_version: str  # the node image's, for validation (`render`) and the real tier
    nodes: tuple[str, ...]
    ports: tuple[PortMapping, ...]
    kubeadm_patches: tuple[str, ...]
    mounts: tuple[Mount, ...]
    wait: str = "5m"

    def port(self, name: str) -> PortMapping:
        for port in self.ports:
            if port.name == name:
                return port
        raise KeyError(name)


#: How an image is built: from a Dockerfile (the default), or compiled on the host and packed
#: into a runtime base (kubernaut_e2e.gobuild).
BUILD_KINDS = ("dockerfile", "host")
#: The image keys that only `build: host` takes.
_HOST_KEYS = ("package", "base", "binary", "files", "user")


@dataclass(frozen=True)
class ImageSpec:
    """An image this project builds from the source tree, saves and loads into kind."""

    name: str
    repository: str  # the tag is e2e.image_tag (default: the cluster's name), one set per cluster
    dockerfile: str  # a path relative to the stack file's folder, or in the source tree ("" for host)
    in_source: bool  # True: `dockerfile` is relative to the source tree (upstream's own)
    build_args: Mapping[str, str]
    requires: tuple[str, ...]  # paths the source tree must have (contract preflight)
    target: str | None = None  # a --target stage
    build: str = "dockerfile"  # one of BUILD_KINDS
    # build: host only (kubernaut_e2e.gobuild):
    package: str = ""  # what `go build` compiles, e.g. ./cmd/gateway
    base: str = ""  # the runtime base image the binary is packed into
    binary: str = ""  # where the binary goes in the image (its ENTRYPOINT)
    files: Mapping[str, str] = field(default_factory=dict)  # source-tree path -> path in the image
    user: str = "1001"

    @property
    def on_host(self) -> bool:
        return self.build == "host"

    def dockerfile_path(self, source_dir: Path) -> Path:
        return source_dir / self.dockerfile if self.in_source else Path(self.dockerfile)


@dataclass(frozen=True)
class SecretValue:
    """A credential generated once per cluster, kept in (and read back from) a Secret key."""

    name: str
    secret: str
    key: str

    @property
    def var(self) -> str:
        return f"secret_{self.name}"


@dataclass(frozen=True)
class Component:
    name: str
    type: str
    help: str
    needs: tuple[str, ...] = ()
    manifests: tuple[str, ...] = ()  # absolute paths (resolved against the stack file)
    images: tuple[str, ...] = ()  # our images it deploys: it waits for their load
    preload: tuple[str, ...] = ()  # third-party images it runs: it waits for their preload
    wait: tuple[str, ...] = ()  # Deployments (label app=<name>) that must become available
    status: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # kind -> status patch
    settings: Mapping[str, Any] = field(default_factory=dict)  # what its type needs


@dataclass(frozen=True)
class HealthCheck:
    name: str
    endpoint: str
    path: str


@dataclass(frozen=True)
class Endpoint:
    """How the host reaches a service: a published port and a scheme (https: our CA)."""

    name: str
    port: str
    scheme: str


@dataclass(frozen=True)
class SuiteSpec:
    package: str  # what `go test` runs, e.g. ./test/e2e/gateway/...
    env: Mapping[str, str]  # values are templates (see Stack.template_names)
    self_provisioning: tuple[str, ...]  # source markers of a suite that builds its own env
    files: Mapping[str, str]  # file a reusing suite reads -> what we write there (kubeconfig|ca)


@dataclass(frozen=True)
class Stack:
    path: Path
    name: str
    namespace: str
    cluster: ClusterSpec
    images: tuple[ImageSpec, ...]
    preload: Mapping[str, str]  # alias -> third-party image reference
    secrets: tuple[SecretValue, ...]
    components: tuple[Component, ...]
    endpoints: tuple[Endpoint, ...]
    health: tuple[HealthCheck, ...]
    suite: SuiteSpec
    smoke: Mapping[str, Any]
    files: tuple[Path, ...]  # every file this stack was read from (for fingerprints and errors)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def image(self, name: str) -> ImageSpec:
        for image in self.images:
            if image.name == name:
                return image
        raise KeyError(name)

    def component(self, name: str) -> Component:
        for comp in self.components:
            if comp.name == name:
                return comp
        raise KeyError(name)

    def endpoint(self, name: str) -> Endpoint:
        for ep in self.endpoints:
            if ep.name == name:
                return ep
        raise KeyError(name)

    @property
    def image_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.images)

    @property
    def deployments(self) -> tuple[str, ...]:
        """Every Deployment some component waits for, in component order."""
        return tuple(d for c in self.components for d in c.wait)

    def components_of(self, type_: str) -> tuple[Component, ...]:
        return tuple(c for c in self.components if c.type == type_)


# --- loading ---------------------------------------------------------------------------------

def load_stack(path: Path) -> Stack:
    """Read, merge (`extends:`) and validate a stack file; UsageError names the file and key."""
    path = path.expanduser().resolve()
    raw, files = _read_layers(path, ())
    return _build(path, raw, files)


def _yaml(path: Path) -> Any:
    """One stack file, loaded with bounds (no aliases, no huge files: kubernaut_e2e.safe_yaml)."""
    from kubernaut_e2e import safe_yaml

    return safe_yaml.load_path(path, f"stack {path}")


def _read_layers(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], tuple[Path, ...]]:
    if path in chain:
        raise UsageError(f"stack {path}: `extends` loops back to itself")
    if len(chain) >= _MAX_EXTENDS:
        raise UsageError(f"stack {path}: `extends` nests more than {_MAX_EXTENDS} files deep")
    data = _yaml(path)
    if not isinstance(data, dict):
        raise UsageError(f"stack {path}: must be a mapping of settings")
    data = _resolve_paths(data, path)
    parent = data.pop("extends", None)
    if parent is None:
        return data, (path,)
    if not isinstance(parent, str):
        raise UsageError(f"stack {path}: extends: expected a file path")
    base_path = (path.parent / parent).expanduser().resolve() if parent != "default" else DEFAULT_STACK
    base, files = _read_layers(base_path, (*chain, path))
    return _merge(base, data), (*files, path)


def _resolve_paths(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Turn this layer's stack-relative paths absolute, before layers are merged."""
    folder = path.parent

    def absolute(value: Any) -> Any:
        return str((folder / value).resolve()) if isinstance(value, str) and value else value

    for image in (data.get("images") or {}).values():
        if isinstance(image, dict) and "dockerfile" in image:
            image["dockerfile"] = absolute(image["dockerfile"])
    for comp in (data.get("components") or {}).values():
        if isinstance(comp, dict) and isinstance(comp.get("manifests"), list):
            comp["manifests"] = [absolute(m) for m in comp["manifests"]]
    return data


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = _merge(base.get(key), value)
        return out
    return over


# --- validation ------------------------------------------------------------------------------

class _Reader:
    """Typed access to one mapping of the merged stack, with errors naming the key path."""

    def __init__(self, path: Path, data: Any, where: str) -> None:
        self.path, self.where = path, where
        if not isinstance(data, dict):
            raise self.error("expected a mapping")
        self.data: dict[str, Any] = data

    def error(self, message: str, key: str | None = None) -> UsageError:
        at = f"{self.where}.{key}" if key and self.where else (key or self.where)
        return UsageError(f"stack {self.path}: {at}: {message}")

    def check_keys(self, known: set[str]) -> None:
        unknown = sorted(set(self.data) - known)
        if unknown:
            raise self.error(f"unknown key (known: {', '.join(sorted(known))})", unknown[0])

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, check=None) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.error("missing", key)
            return default
        value = self.data[key]
        if isinstance(value, bool) and kind is int or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.error(f"expected {names}, got {value!r}", key)
        if check is not None:
            problem = check(value)
            if problem:
                raise self.error(f"{value!r} {problem}", key)
        return value

    def names(self, key: str, default: Any = ()) -> tuple[str, ...]:
        value = self.get(key, list, list(default))
        if not all(isinstance(v, str) and v for v in value):
            raise self.error("expected a list of names", key)
        return tuple(value)

    def child(self, key: str, default: Any = ...) -> _Reader:
        return _Reader(self.path, self.get(key, dict, {} if default is ... else default),
                       f"{self.where}.{key}" if self.where else key)

    def strings(self, key: str) -> dict[str, str]:
        value = self.get(key, dict, {})
        out = {}
        for k, v in value.items():
            if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                raise self.error(f"expected a string value, got {v!r}", f"{key}.{k}")
            out[str(k)] = str(v)
        return out


def _name_problem(value: str) -> str | None:
    return None if len(value) <= 63 and _NAME.match(value) else "is not a DNS-1123 name"


def _build(path: Path, raw: dict[str, Any], files: tuple[Path, ...]) -> Stack:
    from kubernaut_e2e.config import is_image_ref

    top = _Reader(path, raw, "")
    top.check_keys({"name", "namespace", "cluster", "images", "preload", "secrets", "components",
                    "endpoints", "health", "suite", "smoke", "description"})
    name = top.get("name", str, check=_name_problem)
    namespace = top.get("namespace", str, check=_name_problem)
    cluster = _cluster(top.child("cluster"))
    port_names = {p.name for p in cluster.ports}

    images = []
    for img_name, data in top.get("images", dict, {}).items():
        r = _Reader(path, data, f"images.{img_name}")
        r.check_keys({"repository", "dockerfile", "source_dockerfile", "build_args", "requires", "target",
                      "build", *_HOST_KEYS})
        if _name_problem(str(img_name)):
            raise r.error("image names must be DNS-1123 names")
        repository = r.get("repository", str, check=lambda v: None if is_image_ref(f"{v}:t")
                           else "is not an image repository (e.g. localhost/kubernaut-gateway)")
        build = r.get("build", str, "dockerfile", check=lambda v: None if v in BUILD_KINDS
                      else f"must be one of {', '.join(BUILD_KINDS)}")
        if build == "host":
            images.append(_host_image(r, str(img_name), repository))
            continue
        for key in _HOST_KEYS:
            if key in r.data:
                raise r.error("only an image with `build: host` takes this key", key)
        in_source = "source_dockerfile" in r.data
        if in_source == ("dockerfile" in r.data):
            raise r.error("give exactly one of dockerfile (ours) or source_dockerfile (in the source tree)")
        dockerfile = r.get("source_dockerfile" if in_source else "dockerfile", str)
        if in_source and (Path(dockerfile).is_absolute() or ".." in Path(dockerfile).parts):
            raise r.error("must be a path inside the source tree", "source_dockerfile")
        if not in_source and not Path(dockerfile).is_file():
            raise r.error(f"{dockerfile} does not exist", "dockerfile")
        images.append(ImageSpec(str(img_name), repository, dockerfile, in_source, r.strings("build_args"),
                                r.names("requires"), r.get("target", str, None)))

    preload = {}
    for alias, ref in top.get("preload", dict, {}).items():
        if not isinstance(ref, str) or not is_image_ref(ref):
            raise top.error(f"{ref!r} is not an image reference", f"preload.{alias}")
        if _name_problem(str(alias)):
            raise top.error("preload names must be DNS-1123 names", f"preload.{alias}")
        preload[str(alias)] = ref

    secrets = []
    for sname, data in top.get("secrets", dict, {}).items():
        r = _Reader(path, data, f"secrets.{sname}")
        r.check_keys({"secret", "key"})
        if not _VAR_NAME.match(str(sname)):
            raise r.error("secret names must be identifiers (letters, digits, _)")
        secrets.append(SecretValue(str(sname), r.get("secret", str, check=_name_problem), r.get("key", str)))

    endpoints = []
    for ep_name, data in top.get("endpoints", dict, {}).items():
        r = _Reader(path, data, f"endpoints.{ep_name}")
        r.check_keys({"port", "scheme"})
        port = r.get("port", str, check=lambda v: None if v in port_names
                      else f"is not one of cluster.ports ({', '.join(sorted(port_names))})")
        scheme = r.get("scheme", str, "http", check=lambda v: None if v in ("http", "https")
                       else "must be http or https")
        endpoints.append(Endpoint(str(ep_name), port, scheme))
    endpoint_names = {e.name for e in endpoints}

    health = []
    for i, data in enumerate(top.get("health", list, [])):
        r = _Reader(path, data, f"health[{i}]")
        r.check_keys({"name", "endpoint", "path"})
        health.append(HealthCheck(r.get("name", str), r.get("endpoint", str, check=lambda v: None
                                  if v in endpoint_names else "is not one of endpoints"),
                                  r.get("path", str, check=lambda v: None if v.startswith("/")
                                        else "must start with /")))

    components = _components(top, images, preload)
    stack = Stack(path, name, namespace, cluster, tuple(images), preload, tuple(secrets),
                  components, tuple(endpoints), tuple(health), _suite(top.child("suite")),
                  top.get("smoke", dict, {}), files)
    _check_templates(stack, top)
    return stack


def _host_image(r: _Reader, name: str, repository: str) -> ImageSpec:
    """`build: host`: compiled on the host, packed into `base` (see kubernaut_e2e.gobuild)."""
    from kubernaut_e2e.config import is_image_ref

    for key in ("dockerfile", "source_dockerfile", "target"):
        if key in r.data:
            raise r.error("an image with `build: host` has no Dockerfile (its own is generated)", key)
    package = r.get("package", str, check=lambda v: None if v.startswith("./") and ".." not in Path(v).parts
                    and not v.endswith("...") else "must be one package of the module, like ./cmd/gateway")
    base = r.get("base", str, check=lambda v: None if v == "scratch" or is_image_ref(v)
                 else "is not an image reference")
    absolute = _absolute_in_image
    binary = r.get("binary", str, f"/usr/local/bin/{name}", check=absolute)
    files = r.strings("files")
    for src, dest in files.items():
        if not src or Path(src).is_absolute() or ".." in Path(src).parts:
            raise r.error("must be a path inside the source tree", f"files.{src}")
        problem = absolute(dest)
        if problem:
            raise r.error(f"{dest!r} {problem}", f"files.{src}")
    user = r.get("user", (str, int), "1001", check=lambda v: None if re.match(r"^[A-Za-z0-9_][-A-Za-z0-9_.:]*$", str(v))
                 else "is not a user (a UID or name)")
    return ImageSpec(name, repository, "", False, r.strings("build_args"), r.names("requires"), None,
                     build="host", package=package, base=base, binary=binary, files=files, user=str(user))


def _absolute_in_image(value: str) -> str | None:
    if not value.startswith("/") or ".." in Path(value).parts or any(c.isspace() for c in value):
        return "must be an absolute path in the image, without spaces"
    return None


def _cluster(r: _Reader) -> ClusterSpec:
    r.check_keys({"node_image", "kind_min_version", "kubernetes_version", "nodes", "ports",
                  "kubeadm_patches", "mounts", "wait"})
    from kubernaut_e2e.config import is_image_ref

    ports = []
    for port_name, data in r.get("ports", dict, {}).items():
        p = _Reader(r.path, data, f"cluster.ports.{port_name}")
        p.check_keys({"node_port", "host_port", "protocol", "purpose"})
        node_port = p.get("node_port", int, check=lambda v: None if 30000 <= v <= 32767
                          else "is outside the NodePort range 30000-32767")
        host_port = p.get("host_port", int, check=lambda v: None if 1 <= v <= 65535 else "is not a TCP port")
        protocol = p.get("protocol", str, "TCP", check=lambda v: None if v in ("TCP", "UDP", "SCTP")
                         else "must be TCP, UDP or SCTP")
        if _name_problem(str(port_name)):
            raise p.error("port names must be DNS-1123 names")
        ports.append(PortMapping(str(port_name), node_port, host_port, protocol, p.get("purpose", str, "")))
    for attr in ("node_port", "host_port"):
        seen: dict[int, str] = {}
        for port in ports:
            value = getattr(port, attr)
            if value in seen:
                raise r.error(f"{port.name} and {seen[value]} share {attr} {value}", "ports")
            seen[value] = port.name
    mounts = []
    for i, data in enumerate(r.get("mounts", list, [])):
        m = _Reader(r.path, data, f"cluster.mounts[{i}]")
        m.check_keys({"host_path", "container_path", "read_only", "create"})
        mounts.append(Mount(m.get("host_path", str), m.get("container_path", str),
                            m.get("read_only", bool, False), m.get("create", bool, True)))
    patches = []
    for i, patch in enumerate(r.get("kubeadm_patches", list, [])):
        if not isinstance(patch, str):
            raise r.error("expected a YAML document as a string", f"kubeadm_patches[{i}]")
        patches.append(patch)
    nodes = r.names("nodes", ("control-plane",))
    if not nodes or any(n not in ("control-plane", "worker") for n in nodes) or nodes[0] != "control-plane":
        raise r.error("must start with control-plane; roles are control-plane or worker", "nodes")
    version = re.compile(r"^v?\d+\.\d+\.\d+$")
    return ClusterSpec(
        node_image=r.get("node_image", str, check=lambda v: None if is_image_ref(v) else "is not an image reference"),
        kind_min_version=r.get("kind_min_version", str, check=lambda v: None if version.match(v)
                               else "is not a version like v0.32.0"),
        kubernetes_version=r.get("kubernetes_version", str, check=lambda v: None if version.match(v)
                                 else "is not a version like v1.36.1"),
        nodes=nodes, ports=tuple(ports), kubeadm_patches=tuple(patches), mounts=tuple(mounts),
        wait=r.get("wait", str, "5m"))


def _components(top: _Reader, images: list[ImageSpec], preload: Mapping[str, str]) -> tuple[Component, ...]:
    image_names = {i.name for i in images}
    raw = top.get("components", dict)
    names = set(raw)
    out = []
    for comp_name, data in raw.items():
        r = _Reader(top.path, data, f"components.{comp_name}")
        if _name_problem(str(comp_name)):
            raise r.error("component names must be DNS-1123 names")
        type_ = r.get("type", str, "manifests", check=lambda v: None if v in COMPONENT_TYPES
                      else f"is not a component type ({', '.join(COMPONENT_TYPES)})")
        r.check_keys({"type", "help", "needs", "manifests", "images", "preload", "wait", "status", *_SETTINGS[type_]})
        needs = r.names("needs")
        for need in needs:
            if need not in names:
                raise r.error(f"{need!r} is not a component of this stack", "needs")
        manifests = r.names("manifests")
        for manifest in manifests:
            if not Path(manifest).is_file():
                raise r.error(f"{manifest} does not exist", "manifests")
        if type_ == "manifests" and not manifests:
            raise r.error("a manifests component needs at least one manifest", "manifests")
        for img in r.names("images"):
            if img not in image_names:
                raise r.error(f"{img!r} is not one of images", "images")
        for alias in r.names("preload"):
            if alias not in preload:
                raise r.error(f"{alias!r} is not one of preload", "preload")
        status = r.get("status", dict, {})
        for kind, patch in status.items():
            if not isinstance(patch, dict):
                raise r.error("expected kind: {status fields}", f"status.{kind}")
        settings = {key: r.data[key] for key in _SETTINGS[type_] if key in r.data}
        _check_settings(r, type_, settings)
        out.append(Component(str(comp_name), type_, r.get("help", str, COMPONENT_TYPES[type_]), needs,
                             manifests, r.names("images"), r.names("preload"), r.names("wait"),
                             status, settings))
    _check_acyclic(top, out)
    return tuple(out)


#: The extra keys each component type takes.
_SETTINGS: dict[str, tuple[str, ...]] = {
    "manifests": (),
    "crds": ("source",),
    "migrations": ("source", "database"),
    "tls": ("ca", "certificates", "signing"),
}


def _relative_glob(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "expected a glob relative to the source tree"
    if Path(value).is_absolute() or ".." in Path(value).parts:
        return "must be a pattern relative to the source tree"
    return None


def _check_settings(r: _Reader, type_: str, settings: Mapping[str, Any]) -> None:
    if type_ in ("crds", "migrations"):
        problem = _relative_glob(settings.get("source"))
        if problem:
            raise r.error(problem, "source")
    if type_ == "migrations":
        db = _Reader(r.path, settings.get("database"), f"{r.where}.database")
        db.check_keys({"secret", "user_key", "password_key", "database_key", "service", "port", "preload"})
        for key in ("secret", "user_key", "password_key", "database_key", "service", "preload"):
            db.get(key, str)
        db.get("port", int)
    if type_ == "tls":
        ca = _Reader(r.path, settings.get("ca"), f"{r.where}.ca")
        ca.check_keys({"configmap", "key", "common_name", "valid_hours"})
        for key in ("configmap", "key", "common_name"):
            ca.get(key, str)
        ca.get("valid_hours", int)
        for i, cert in enumerate(settings.get("certificates") or []):
            c = _Reader(r.path, cert, f"{r.where}.certificates[{i}]")
            c.check_keys({"secret", "service"})
            c.get("secret", str, check=_name_problem)
            c.get("service", str, check=_name_problem)
        for i, key in enumerate(settings.get("signing") or []):
            s = _Reader(r.path, key, f"{r.where}.signing[{i}]")
            s.check_keys({"secret", "common_name", "rsa_bits"})
            s.get("secret", str, check=_name_problem)
            s.get("common_name", str)
            s.get("rsa_bits", int, 2048, check=lambda v: None if v >= 2048 else "must be at least 2048")


def _check_acyclic(top: _Reader, components: list[Component]) -> None:
    import graphlib

    try:
        tuple(graphlib.TopologicalSorter({c.name: c.needs for c in components}).static_order())
    except graphlib.CycleError as exc:
        raise top.error(f"dependency cycle: {' -> '.join(exc.args[1])}", "components") from None


def _suite(r: _Reader) -> SuiteSpec:
    r.check_keys({"package", "env", "self_provisioning", "files"})
    files = r.strings("files")
    for target, what in files.items():
        if what not in ("kubeconfig", "ca"):
            raise r.error("must be kubeconfig or ca", f"files.{target}")
    return SuiteSpec(r.get("package", str, "./..."), r.strings("env"), r.names("self_provisioning"), files)


# --- templates -------------------------------------------------------------------------------

def template_names(stack: Stack) -> set[str]:
    """Every `${name}` a manifest or suite value of this stack may use."""
    names = {"namespace", "cluster_name", "image_pull_policy", "kubeconfig", "ca_file"}
    names |= {f"image_{i.name.replace('-', '_')}" for i in stack.images}
    names |= {f"preload_{a.replace('-', '_')}" for a in stack.preload}
    names |= {f"node_port_{p.var}" for p in stack.cluster.ports}
    names |= {f"host_port_{p.var}" for p in stack.cluster.ports}
    names |= {f"url_{e.name.replace('-', '_')}" for e in stack.endpoints}
    names |= {s.var for s in stack.secrets}
    return names


_PLACEHOLDER = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _check_templates(stack: Stack, top: _Reader) -> None:
    """Every placeholder in every manifest and suite value is one the stack can fill."""
    known = template_names(stack)
    for comp in stack.components:
        for manifest in comp.manifests:
            for number, line in enumerate(Path(manifest).read_text().splitlines(), 1):
                for match in _PLACEHOLDER.finditer(line.replace("$$", "")):
                    name = match.group(1) or match.group(2)
                    if name not in known:
                        raise UsageError(f"stack {stack.path}: {manifest}:{number}: unknown placeholder "
                                         f"${{{name}}} (known: {', '.join(sorted(known))})")
    for key, value in stack.suite.env.items():
        for match in _PLACEHOLDER.finditer(value.replace("$$", "")):
            name = match.group(1) or match.group(2)
            if name not in known:
                raise top.error(f"unknown placeholder ${{{name}}}", f"suite.env.{key}")
