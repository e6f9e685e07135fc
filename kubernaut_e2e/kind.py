"""`kind` command lines and output parsers. Pure: nothing here runs a process."""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernaut_e2e.stack import ClusterSpec, Mount


def provider_env(provider: str) -> dict[str, str]:
    """kind talks to docker by default; podman must be asked for explicitly."""
    return {"KIND_EXPERIMENTAL_PROVIDER": "podman"} if provider == "podman" else {}


def get_clusters() -> list[str]:
    return ["kind", "get", "clusters"]


def parse_clusters(stdout: str) -> list[str]:
    # With no clusters kind prints "No kind clusters found." on stderr and nothing on stdout.
    return [line.strip() for line in stdout.splitlines()
            if line.strip() and not line.startswith("No kind clusters")]


def create_cluster(name: str, config: Path, kubeconfig: Path, wait: str) -> list[str]:
    return ["kind", "create", "cluster", "--name", name, "--config", str(config),
            "--kubeconfig", str(kubeconfig), "--wait", wait]


def delete_cluster(name: str, kubeconfig: Path | None = None) -> list[str]:
    argv = ["kind", "delete", "cluster", "--name", name]
    return argv + ["--kubeconfig", str(kubeconfig)] if kubeconfig else argv


def get_kubeconfig(name: str) -> list[str]:
    return ["kind", "get", "kubeconfig", "--name", name]


def get_nodes(name: str) -> list[str]:
    return ["kind", "get", "nodes", "--name", name]


def load_image_archive(archive: Path, name: str) -> list[str]:
    # `kind load docker-image` cannot see podman's store; an archive works with both providers.
    return ["kind", "load", "image-archive", str(archive), "--name", name]


def export_logs(name: str, directory: Path) -> list[str]:
    return ["kind", "export", "logs", str(directory), "--name", name]


def version() -> list[str]:
    return ["kind", "version"]


def cluster_config(stack: ClusterSpec, host_ports: Mapping[str, int], source_dir: Path) -> dict[str, Any]:
    """The kind `Cluster` config for a stack's cluster. Pure.

    The first node (the control plane, where the services run) publishes every port and gets
    the mounts; kind can add neither once the cluster exists. Host paths of mounts are taken
    relative to the source tree, as upstream's harness runs kind from there.
    """
    nodes: list[dict[str, Any]] = []
    for index, role in enumerate(stack.nodes):
        node: dict[str, Any] = {"role": role, "image": stack.node_image}
        if index == 0:
            if stack.mounts:
                node["extraMounts"] = [
                    {"hostPath": str(mount_path(m, source_dir)), "containerPath": m.container_path,
                     "readOnly": m.read_only}
                    for m in stack.mounts]
            if stack.ports:
                node["extraPortMappings"] = [
                    {"containerPort": p.node_port, "hostPort": host_ports.get(p.name, p.host_port),
                     "protocol": p.protocol}
                    for p in stack.ports]
        nodes.append(node)
    config: dict[str, Any] = {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "nodes": nodes}
    if stack.kubeadm_patches:
        config["kubeadmConfigPatches"] = list(stack.kubeadm_patches)
    return config


def mount_path(mount: Mount, source_dir: Path) -> Path:
    path = Path(mount.host_path).expanduser()
    return path if path.is_absolute() else (source_dir / path)


def parse_version(stdout: str) -> tuple[int, int, int] | None:
    """`kind v0.32.0 go1.26.2 linux/amd64` -> (0, 32, 0); None when it says no version."""
    match = re.search(r"\bv?(\d+)\.(\d+)\.(\d+)", stdout)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


# --- progress, read from the output of a running command (for the live view) -----------------

#: `kind create cluster` without a terminal: " • Preparing nodes 📦  ..." then " ✓ Preparing nodes 📦".
_CREATE_PHASE = re.compile(r"^\s*([•✓✗])\s+(.+?)\s*(?:\.\.\.)?\s*$")
#: `kind load docker-image`, per node that lacks the image.
_LOAD_NODE = re.compile(r'not yet present on node "([^"]+)", loading')


def create_progress(line: str) -> str | None:
    """The phase `kind create cluster` is in ("Preparing nodes"), from one output line, else None."""
    found = _CREATE_PHASE.match(line)
    if not found:
        return None
    mark, phase = found.groups()
    # Drop kind's emoji: keep the words (and "≤ 5m0s"-style values) only.
    words = " ".join(w for w in phase.split() if any(c.isalnum() or c in "≤=" for c in w))
    if not words:
        return None
    return {"•": words, "✓": f"{words}: done", "✗": f"{words}: FAILED"}[mark]


def load_progress(line: str) -> str | None:
    """Which node an image is being loaded onto, from one line of `kind load` output, else None.

    `kind load docker-image` names each node that lacks the image; `kind load image-archive`
    prints nothing while it works, so its progress is only the elapsed time.
    """
    found = _LOAD_NODE.search(line)
    return f"loading onto {found.group(1)}" if found else None
