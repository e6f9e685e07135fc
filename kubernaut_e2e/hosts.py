"""Remote hosts: the `[USER@]HOST[:PORT]` spec and the preflight that checks a host first.

A host is where the environment runs when it outgrows the laptop (a bigger Linux machine, a CI
worker). Before anything is sent or started there, `preflight_host` checks everything a run
needs from it and reports each failure as one line (exit 2): reachable, authenticated without
a password prompt (keys or agent only), podman and kind on the PATH of a non-interactive SSH
command, its architecture, and free disk where the run will keep its files. The parsing and
judging is pure (`parse_host`, `parse_probe`, `host_problems`); only `preflight_host` talks to
the host, through `remote.py`.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubernaut_e2e.errors import UsageError
from kubernaut_e2e.podman import normalize_arch

if TYPE_CHECKING:  # fabric is imported only when a host is really contacted
    from fabric import Connection

    from kubernaut_e2e.remote import SSHOptions

#: What the tools need on the host; the per-cluster folders, images and the Kind node live there.
TOOLS = ("podman", "kind")
#: Free space wanted where the run keeps its files: builder images, two builds, a Kind node.
MIN_FREE_BYTES = 10 * 2**30

_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class HostSpec:
    """One `--host` value. `user`/`port` None: from ~/.ssh/config, else the local user and 22."""

    host: str
    user: str | None = None
    port: int | None = None

    @property
    def label(self) -> str:
        """The spec as the user wrote it (normalised): how messages and summaries name the host."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"{user}{host}{port}"

    @property
    def slug(self) -> str:
        """A file-name-safe form of the label, for per-host local folders and records."""
        return re.sub(r"[^A-Za-z0-9_.@-]", "-", self.label.replace(":", "-")).strip("-")


def parse_host(text: str, *, source: str = "--host") -> HostSpec:
    """Parse `[USER@]HOST[:PORT]` (IPv6 as `[ADDR]`); bad input is one UsageError naming it. Pure."""

    def bad(why: str) -> UsageError:
        return UsageError(f"{source} {text!r}: {why} (expected [USER@]HOST[:PORT], e.g. ci@build1:2222)")

    value = text.strip()
    if not value:
        raise bad("is empty")
    if any(ch.isspace() for ch in value):
        raise bad("contains whitespace")
    user: str | None = None
    if "@" in value:
        user, _, value = value.rpartition("@")
        if not _USER.match(user):
            raise bad(f"user {user!r} is not a valid user name")
    port_text: str | None = None
    if value.startswith("["):
        addr, sep, rest = value[1:].partition("]")
        if not sep:
            raise bad("has '[' without a closing ']'")
        if rest and not rest.startswith(":"):
            raise bad(f"unexpected {rest!r} after ']'")
        host, port_text = addr, (rest[1:] if rest else None)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad(f"{host!r} is not an IPv6 address") from None
    else:
        if value.count(":") > 1:
            raise bad("an IPv6 address must be written in brackets, like [::1]:22")
        host, sep, port_text_ = value.partition(":")
        port_text = port_text_ if sep else None
        if not host:
            raise bad("has no host name")
        if not all(_HOST_LABEL.match(part) for part in host.split(".")):
            raise bad(f"{host!r} is not a valid host name or address")
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise bad(f"port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    return HostSpec(host=host, user=user, port=port)


@dataclass(frozen=True)
class HostFacts:
    """What preflight learned about a host."""

    arch: str  # normalised like podman's: amd64, arm64, ...
    tools: dict[str, str]  # tool -> its path on the host; "" when missing
    free_bytes: int | None  # free space at the run's folder (or its nearest existing parent)
    os: str = ""  # `uname -s`: Linux, Darwin, ...
    state_home: str = ""  # the remote user's $XDG_STATE_HOME (absolute), else ~/.local/state

    @property
    def work_root(self) -> str:
        """Where runs keep their files on the host: one folder per cluster below it."""
        return f"{self.state_home}/{WORK_FOLDER}" if self.state_home else ""


#: The folder below the remote user's XDG state home where runs keep their files (like the
#: `kubernaut-e2e` command's local default, cli.state_home).
WORK_FOLDER = "kubernaut-e2e"

#: Run on the host by preflight (as an argument list: $1 is the folder to measure, "" for the
#: work folder below the state home). One round trip.
PROBE_SCRIPT = r"""
echo "arch=$(uname -m)"
echo "os=$(uname -s)"
s=${XDG_STATE_HOME:-}
case $s in /*) ;; *) s=$HOME/.local/state ;; esac
echo "state=$s"
d=${1:-$s/kubernaut-e2e}
while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done
echo "free_kb=$(df -Pk -- "$d" | awk 'NR==2 {print $4}')"
shift
for t in "$@"; do echo "tool.$t=$(command -v "$t" 2>/dev/null)"; done
"""


def probe_argv(folder: str, tools: Sequence[str] = TOOLS) -> list[str]:
    """The preflight probe as an argument list for the host's runner. Pure."""
    return ["sh", "-c", PROBE_SCRIPT, "sh", folder, *tools]


def parse_probe(output: str) -> HostFacts:
    """Read PROBE_SCRIPT's `key=value` lines. Pure."""
    values: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    free_kb = values.get("free_kb", "")
    return HostFacts(
        arch=normalize_arch(values.get("arch", "")),
        tools={key[len("tool."):]: value for key, value in values.items() if key.startswith("tool.")},
        free_bytes=int(free_kb) * 1024 if free_kb.isdigit() else None,
        os=values.get("os", ""),
        state_home=values.get("state", "") if values.get("state", "").startswith("/") else "",
    )


def host_problems(label: str, facts: HostFacts, *, folder: str, min_free_bytes: int = MIN_FREE_BYTES,
                  required: Sequence[str] | None = None) -> list[str]:
    """Every reason the host cannot run the environment, one self-contained line each. Pure.

    `required`: the tools that must be there (default: every tool probed).
    """
    wanted = set(facts.tools if required is None else required)
    problems = [
        f"host {label}: {tool} is not on the PATH of non-interactive SSH commands there "
        "(install it, or add its folder to PATH in the host's ~/.bashrc or /etc/environment)"
        for tool, path in sorted(facts.tools.items()) if not path and tool in wanted
    ]
    if not facts.arch:
        problems.append(f"host {label}: `uname -m` gave no architecture")
    if not facts.state_home:
        problems.append(f"host {label}: the remote user has no absolute $HOME (runs keep their files below it)")
    if facts.free_bytes is None:
        problems.append(f"host {label}: could not measure free disk space at {folder}")
    elif facts.free_bytes < min_free_bytes:
        problems.append(f"host {label}: only {facts.free_bytes / 2**30:.1f} GiB free at {folder}, "
                        f"need {min_free_bytes / 2**30:.0f} GiB (images, builds and the Kind node live there)")
    return problems


def preflight_host(spec: HostSpec, options: SSHOptions, *, folder: str = "", tools: Sequence[str] = TOOLS,
                   min_free_bytes: int = MIN_FREE_BYTES, required: Sequence[str] | None = None,
                   ) -> tuple[Connection, HostFacts]:
    """Connect to the host and check it; the open connection and the facts, or UsageError.

    The error's message has one line per problem. `folder` is where the run will keep its
    files on the host (relative: to the remote user's home; "": WORK_FOLDER below the remote
    user's state home). `tools` are looked up, `required` (default: all of them) must be there.
    """
    from kubernaut_e2e.remote import open_connection, run_simple

    connection = open_connection(spec, options)
    try:
        try:
            probe = run_simple(connection, probe_argv(folder, tools), timeout=options.connect_timeout * 3)
        except TimeoutError:
            raise UsageError(f"host {spec.label}: the preflight probe got no answer within "
                             f"{options.connect_timeout * 3:g}s") from None
        if probe.returncode != 0:
            last = ((probe.stderr or probe.stdout).strip().splitlines() or [""])[-1]
            raise UsageError(f"host {spec.label}: the preflight probe (POSIX sh, uname, df) failed "
                             f"with exit {probe.returncode}: {last}")
        facts = parse_probe(probe.stdout)
        problems = host_problems(spec.label, facts, folder=folder or facts.work_root or "~",
                                 min_free_bytes=min_free_bytes, required=required)
        if problems:
            raise UsageError("\n".join(problems))
    except BaseException:
        connection.close()
        raise
    return connection, facts
