"""A remote host as the site of a run (`--host`): commands over SSH, the source sent, tunnels back.

`open_site` connects to a host and checks it first (hosts.preflight_host: reachable, keys or
agent only, the tools, architecture, free disk; each failure one line, exit 2), then gives the
`RemoteSite` that `up`, `clean`, `diagnose`, `toolchain`, `test`, `ci` and `tunnel` use in
place of this machine (kubernaut_e2e.context.Site):

- Commands (podman, kind) run on the host through remote.RemoteRunner: argument lists, the
  same timeouts, logs, masking, and Ctrl-C kills their process groups there.
- The host keeps one folder per cluster, `<state home>/kubernaut-e2e/<cluster>` (the remote
  user's $XDG_STATE_HOME, else ~/.local/state): `source/` (the source tree, sent by the
  `sync-source` step, only what changed), `dockerfiles/` (the stack's own Dockerfiles) and
  `state/<cluster>/` (kind config, the kubeconfig kind writes, image archives). `site.cfg` is
  the run's config with those paths: the builds run there, natively for the host.
- kind binds the API server and the stack's host ports on the host. They are reached here
  through SSH tunnels, so the Kubernetes steps, health, diagnose and the suite run here
  unchanged: `site.local` is the run's local config, whose host ports are the tunnels' local
  ports and whose kubeconfig points at the API server's tunnel. Its run state is per host,
  `<state_dir>/hosts/<host>/`, so several hosts never share a kubeconfig, lock or history.
  The tunnels' local ports are remembered there and taken again next time (when free), so the
  kubeconfig and URLs stay valid when `e2e.tunnel` re-opens the tunnels after a run.

Fabric and paramiko are imported only when a host is contacted (`invoke --list` stays light).
"""
from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernaut_e2e import kind
from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.context import private_dir, write_private
from kubernaut_e2e.errors import E2EError, UsageError
from kubernaut_e2e.graph import Graph, Step
from kubernaut_e2e.hosts import MIN_FREE_BYTES, HostFacts, HostSpec
from kubernaut_e2e.redact import Redactor
from kubernaut_e2e.runner import Cancellation, Runner
from kubernaut_e2e.scheduler import Noted

if TYPE_CHECKING:
    from fabric import Connection

    from kubernaut_e2e.context import StepContext
    from kubernaut_e2e.remote import SSHOptions
    from kubernaut_e2e.tunnel import Tunnel

#: The step that sends the source tree; every step whose commands read it there needs it.
SYNC_STEP = "sync-source"
#: Steps whose commands read the synced tree on the host (the builds: their context).
READS_SOURCE = ("build-",)
#: The tunnel of the cluster's API server, by name (the stack's ports are named by the stack).
API_SERVER = "api-server"
#: Seconds for the small file operations on the host (mkdir, rm, test, writing a kind config).
FILE_OP_TIMEOUT = 60.0


class HostCommandFailed(E2EError):
    """A file operation of this tool on the host failed; the message names the host and why."""


@dataclass(frozen=True)
class Purpose:
    """What a task needs from a host, checked before anything is started there."""

    tools: bool = False  # kind and the container provider must be on the host (up, ci)
    builds: bool = False  # the stack's images are built there (up, ci)
    disk: bool = False  # hosts.MIN_FREE_BYTES free below the work folder (up, ci)
    ports: bool = False  # tunnels to the stack's host ports (health, the suite)
    attach: str = "no"  # reach the existing cluster's API server: "no", "optional", "required"


UP = Purpose(tools=True, builds=True, disk=True, ports=True)
CLEAN = Purpose()
DIAGNOSE = Purpose(attach="required")
TOOLCHAIN = Purpose(attach="optional")
TEST = Purpose(ports=True, attach="required")
TUNNEL = Purpose(ports=True, attach="required")


def host_view(cfg: E2EConfig, folder: Path) -> E2EConfig:
    """The run's config as the host's commands see it: everything below `folder`. Pure.

    The source tree is `folder/source`, the stack's own Dockerfiles `folder/dockerfiles/<image>
    .Dockerfile`, the run state (kind config, kubeconfig, archives) below `folder/state`; the
    host ports are the ones kind publishes there (the config's).
    """
    images = tuple(image if image.in_source else replace(image, dockerfile=str(dockerfile_at(folder, image.name)))
                   for image in cfg.stack.images)
    return replace(cfg, source_dir=folder / "source", state_dir=folder, stack=replace(cfg.stack, images=images),
                   hosts=())


def dockerfile_at(folder: Path, image: str) -> Path:
    return folder / "dockerfiles" / f"{image}.Dockerfile"


def local_view(cfg: E2EConfig, spec: HostSpec, ports: dict[str, int] | None = None) -> E2EConfig:
    """The run's config for the local side of a host's run: its own state, the tunnels' ports. Pure."""
    return replace(cfg, state_dir=cfg.state_dir / "hosts" / spec.slug, host_ports=dict(ports or cfg.host_ports),
                   hosts=())


def with_source_sync(graph: Graph, mounts_in_source: bool) -> Graph:
    """The step graph plus `sync-source`, needed by the builds (and by `cluster` when the node
    mounts folders of the source tree: a full sync would otherwise empty them under it). Pure."""
    steps = [Step(SYNC_STEP, _sync_source, plan=_plan_sync,
                  help="Send the source tree (only what changed since the last run) and the stack's "
                       "Dockerfiles to the host's folder for this cluster.")]
    for name in graph.order:
        step = graph.steps[name]
        if name.startswith(READS_SOURCE) or (name == "cluster" and mounts_in_source):
            step = replace(step, needs=(*step.needs, SYNC_STEP))
        steps.append(step)
    return Graph.of(steps)


def _sync_source(ctx: StepContext) -> object:
    site = ctx.site
    if not isinstance(site, RemoteSite):
        raise AssertionError("sync-source runs only on a remote host")
    return site.sync_source(ctx)


def _plan_sync(p: Any) -> list[str]:
    return [f"send {p.cfg.source_dir}/ to <host>:<state home>/kubernaut-e2e/{p.cfg.cluster_name}/source/ "
            "(only what changed)"]


def listening_ports(proc_net_tcp: str) -> set[int]:
    """The ports in LISTEN state in the text of /proc/net/tcp and /proc/net/tcp6. Pure."""
    ports: set[int] = set()
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A" and ":" in fields[1]:
            try:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
            except ValueError:
                continue
    return ports


class RemoteSite:
    """A host where a run's commands run (see the module's docstring). Close it when done."""

    def __init__(self, cfg: E2EConfig, spec: HostSpec, connection: Connection, facts: HostFacts) -> None:
        self.spec = spec
        self.label = spec.label
        self.connection = connection
        self.facts = facts
        self.folder = Path(facts.work_root) / cfg.cluster_name
        self.cfg = host_view(cfg, self.folder)
        self.local = local_view(cfg, spec)
        self._stack = ExitStack()
        self._lock = threading.Lock()
        self._api: dict[tuple[str, int], Tunnel] = {}
        self.tunnels: dict[str, Tunnel] = {}  # name -> open tunnel: the stack's ports, the API server

    # --- what the run is told ----------------------------------------------------------------

    def runner(self, cancellation: Cancellation, *, dry: bool = False, echo: Callable[[str], None] = print,
               redactor: Redactor | None = None) -> Runner:
        from kubernaut_e2e.remote import RemoteRunner

        return RemoteRunner(self.connection, cancellation, dry=dry, echo=echo, redactor=redactor, label=self.label)

    def which(self, tool: str) -> str | None:
        found = self.facts.tools.get(tool)
        if found:
            return found
        return tool if tool and tool in self.facts.tools.values() else None  # a path preflight found

    def platform(self) -> tuple[str, str]:
        return self.facts.os, self.facts.arch

    def graph(self, graph: Graph) -> Graph:
        mounts = any(not Path(m.host_path).expanduser().is_absolute() for m in self.cfg.stack.cluster.mounts)
        return with_source_sync(graph, mounts)

    def busy_ports(self, ports: Iterable[int]) -> set[int]:
        done = self._simple(["sh", "-c", "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; exit 0"])
        return listening_ports(done.stdout) & set(ports)

    # --- files on the host -------------------------------------------------------------------

    def private_dir(self, path: Path) -> None:
        self._checked(["sh", "-c", 'mkdir -p -- "$1" && chmod 700 -- "$1"', "sh", str(path)], f"create {path}")

    def makedirs(self, path: Path) -> None:
        self._checked(["mkdir", "-p", "--", str(path)], f"create {path}")

    def exists(self, path: Path) -> bool:
        return self._simple(["test", "-e", str(path)]).returncode == 0

    def remove(self, path: Path) -> None:
        self._checked(["rm", "-f", "--", str(path)], f"remove {path}")

    def remove_tree(self, path: Path) -> None:
        if path != self.folder and self.folder not in path.parents:
            raise AssertionError(f"{path} is not in this tool's folder {self.folder} on {self.label}")
        self._checked(["rm", "-rf", "--", str(path)], f"remove {path}")

    def write_private(self, path: Path, text: str) -> None:
        script = 'umask 077 && cat > "$1.tmp" && mv -f -- "$1.tmp" "$1"'
        self._checked(["sh", "-c", script, "sh", str(path)], f"write {path}", data=text.encode())

    def collect(self, target: Path, produce: Callable[[Path], None]) -> None:
        from kubernaut_e2e.sync import fetch_tree

        scratch = self.folder / f"collect-{uuid.uuid4().hex[:12]}"
        self.private_dir(scratch)
        try:
            produce(scratch / "out")
            fetch_tree(self.connection, str(scratch / "out"), target, timeout=self.cfg.command_timeout)
        finally:
            self.remove_tree(scratch)

    def _simple(self, argv: list[str], data: bytes = b"") -> Any:
        from kubernaut_e2e.remote import run_simple

        try:
            return run_simple(self.connection, argv, input=[data] if data else [], timeout=FILE_OP_TIMEOUT)
        except TimeoutError as exc:
            raise HostCommandFailed(f"host {self.label}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - paramiko or socket errors: the connection is gone
            raise HostCommandFailed(f"host {self.label}: lost the connection ({exc or type(exc).__name__})") from None

    def _checked(self, argv: list[str], what: str, data: bytes = b"") -> None:
        done = self._simple(argv, data)
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()
            raise HostCommandFailed(f"host {self.label}: could not {what}: {why[-1] if why else done.returncode}")

    # --- the source tree ---------------------------------------------------------------------

    def sync_source(self, ctx: StepContext) -> object:
        """The `sync-source` step: the source tree and the stack's Dockerfiles to the host."""
        from kubernaut_e2e.sync import sync_tree

        if ctx.run.dry:
            ctx.run.echo(f"[{self.label}] send {self.local.source_dir}/ to {self.cfg.source_dir}/ (only what changed)")
            return "dry-run"
        records = self.local.cluster_state_dir / "sync"
        private_dir(records)
        staged = self._stage_dockerfiles(records / "dockerfiles")
        timeout = float(self.cfg.command_timeout)
        source = sync_tree(self.connection, self.local.source_dir, str(self.cfg.source_dir), records / "source.json",
                           timeout=timeout, cancellation=ctx.run.cancellation)
        dockerfiles = sync_tree(self.connection, staged, str(self.folder / "dockerfiles"),
                                records / "dockerfiles.json", timeout=timeout, cancellation=ctx.run.cancellation)
        sent = source.bytes_sent + dockerfiles.bytes_sent
        ctx.log(f"{self.local.source_dir} -> {self.label}:{self.cfg.source_dir}: {source.sent} entries sent, "
                f"{source.deleted} deleted, {source.bytes_sent} bytes{' (folder rebuilt)' if source.full else ''}; "
                f"Dockerfiles: {dockerfiles.sent} sent, {dockerfiles.bytes_sent} bytes")
        if not sent:
            return Noted("reused: nothing changed, nothing sent", 0)
        entries = source.sent + dockerfiles.sent
        what = "full copy" if source.full else f"{entries} changed entr{'y' if entries == 1 else 'ies'}"
        return Noted(f"{what}: {sent:,} bytes sent", sent)

    def _stage_dockerfiles(self, folder: Path) -> Path:
        """A local folder holding the stack's own Dockerfiles as `<image>.Dockerfile` (unchanged
        files keep their mtime, so the sync reads and sends only what changed)."""
        private_dir(folder)
        wanted = {f"{image.name}.Dockerfile": Path(image.dockerfile)
                  for image in self.local.stack.images if not image.in_source}
        for stale in folder.iterdir():
            if stale.name not in wanted:
                stale.unlink()
        for name, source in wanted.items():
            copy = folder / name
            if not copy.is_file() or copy.read_bytes() != source.read_bytes():
                shutil.copy2(source, copy)
        return folder

    # --- the cluster, seen from here -----------------------------------------------------------

    def adopt_kubeconfig(self, text: str | None = None) -> bool:
        if text is None:
            done = self._simple(["cat", "--", str(self.cfg.kubeconfig)])
            if done.returncode != 0 or "clusters:" not in done.stdout:
                return False
            text = done.stdout
        from kubernaut_e2e.tunnel import Forward, api_server, tunnels, write_tunnel_kubeconfig

        server = api_server(text)
        with self._lock:
            tunnel = self._api.get(server)
            if tunnel is None:
                preferred = self._remembered().get(API_SERVER, 0)
                opened = self._stack.enter_context(tunnels(
                    self.connection, [Forward(API_SERVER, server[1], server[0], preferred)], fallback=True,
                    avoid=set(self.cfg.host_ports.values())))
                tunnel = self._api[server] = self.tunnels[API_SERVER] = opened[API_SERVER]
                self._remember()
        private_dir(self.local.cluster_state_dir)
        write_tunnel_kubeconfig(self.local.kubeconfig, text, tunnel)
        return True

    def open_ports(self) -> None:
        """Tunnels to every host port of the stack; `self.local` gets their local ports."""
        from kubernaut_e2e.tunnel import Forward, tunnels

        preferred = self._remembered()
        forwards = [Forward(name, port, local_port=preferred.get(name, 0))
                    for name, port in self.cfg.host_ports.items()]
        with self._lock:
            # Never on a port the stack publishes: an environment on this machine keeps its ports.
            opened = self._stack.enter_context(tunnels(self.connection, forwards, fallback=True,
                                                       avoid=set(self.cfg.host_ports.values())))
            self.tunnels.update(opened)
            self.local = replace(self.local, host_ports={name: t.local_port for name, t in opened.items()})
            self._remember()

    def attach(self, required: bool) -> bool:
        """Reach the cluster that exists on the host: the local kubeconfig through a tunnel.

        False (or, when `required`, a UsageError) when the host has no such cluster.
        """
        from kubernaut_e2e.preflight import choose_provider

        provider = choose_provider(self.cfg, self.which) or "podman"
        got = self.runner(Cancellation()).run(kind.get_kubeconfig(self.cfg.cluster_name),
                                              env=kind.provider_env(provider), capture=True, log_stdout=False,
                                              check=False, timeout=FILE_OP_TIMEOUT)
        if got.ok and "clusters:" in got.stdout:
            return self.adopt_kubeconfig(got.stdout)
        if required:
            raise UsageError(f"host {self.label}: no cluster {self.cfg.cluster_name!r} there "
                             f"(run `invoke e2e.up --host {self.label}` first)")
        return False

    def _record(self) -> Path:
        return self.local.cluster_state_dir / "tunnels.json"

    def _remembered(self) -> dict[str, int]:
        """The local ports the tunnels had last time (none that the stack publishes itself)."""
        try:
            ports = json.loads(self._record().read_text()).get("ports", {})
        except (OSError, ValueError, AttributeError):
            return {}
        if not isinstance(ports, dict):
            return {}
        published = set(self.cfg.host_ports.values())
        return {str(k): v for k, v in ports.items() if isinstance(v, int) and v not in published}

    def _remember(self) -> None:
        ports = {**self._remembered(), **{name: t.local_port for name, t in self.tunnels.items()}}
        private_dir(self.local.cluster_state_dir)
        write_private(self._record(), json.dumps({"host": self.label, "ports": ports}, indent=1, sort_keys=True))

    def close(self) -> None:
        """Close the tunnels, then the connection."""
        try:
            self._stack.close()
        finally:
            self.connection.close()


def refuse_host_compiles(cfg: E2EConfig, spec: HostSpec) -> None:
    """`build: host` compiles with this machine's Go and packs the binary with this machine's
    podman: with --host the image is needed on another machine, so such a stack is refused
    before anything is started (the Dockerfile build runs on the host instead). Pure."""
    compiled_here = [name for name in cfg.images if cfg.stack.image(name).on_host]
    if compiled_here:
        raise UsageError(f"host {spec.label}: images {', '.join(compiled_here)} of stack {cfg.stack.path} are "
                         "`build: host` (compiled with this machine's Go), which cannot build for another host; "
                         "drop `build: host` from the stack or run without --host")


def open_site(cfg: E2EConfig, spec: HostSpec, purpose: Purpose, *, options: SSHOptions | None = None,
              dry: bool = False) -> RemoteSite:
    """Connect to `spec`, check it for `purpose`, open what the purpose needs; UsageError (one
    line per problem) when the host cannot serve it. Nothing is started on the host before."""
    if purpose.builds:
        refuse_host_compiles(cfg, spec)
    from kubernaut_e2e.hosts import preflight_host
    from kubernaut_e2e.preflight import choose_provider
    from kubernaut_e2e.remote import SSHOptions

    provider = cfg.provider if cfg.provider != "auto" else "podman"
    required = ("kind", provider) if purpose.tools else ()
    connection, facts = preflight_host(spec, options or SSHOptions(), tools=("podman", "docker", "kind"),
                                       required=required if cfg.provider != "auto" else required[:1],
                                       min_free_bytes=MIN_FREE_BYTES if purpose.disk else 0)
    site = RemoteSite(cfg, spec, connection, facts)
    try:
        if purpose.tools and choose_provider(cfg, site.which) is None:
            raise UsageError(f"host {spec.label}: neither podman nor docker is on the PATH of non-interactive "
                             "SSH commands there (install podman, or add its folder to PATH in the host's "
                             "~/.bashrc or /etc/environment)")
        if purpose.ports and not dry:
            site.open_ports()
        if purpose.attach != "no" and not dry:
            site.attach(required=purpose.attach == "required")
    except BaseException:
        site.close()
        raise
    return site


def hold_tunnels(site: RemoteSite, out: Any, cancellation: Cancellation) -> int:
    """`e2e.tunnel` on one host: say where each tunnel is, then keep them open until a signal.

    0 when stopped by a signal (its normal end), 1 when the connection to the host is lost.
    """
    from kubernaut_e2e.console import plain_table

    rows = []
    for name, tunnel in sorted(site.tunnels.items(), key=lambda item: item[0] != API_SERVER):
        forward = tunnel.forward
        rows.append((name, tunnel.address, f"{forward.remote_host}:{forward.remote_port}"))
    lines = [f"tunnels to host {site.label} are open until Ctrl-C:",
             *("  " + line for line in plain_table(("name", "here", "on the host"), rows)),
             f"  export KUBECONFIG={site.local.kubeconfig}"]
    print("\n".join(lines), file=out, flush=True)
    transport = site.connection.transport
    while not cancellation.wait(1.0):
        if transport is None or not transport.is_active():
            print(f"host {site.label}: the SSH connection was lost: the tunnels are closed", file=out, flush=True)
            return 1
    print(f"host {site.label}: tunnels closed", file=out, flush=True)
    return 0
