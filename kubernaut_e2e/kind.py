"""`kind` command lines and output parsers. Pure: nothing here runs a process."""
from __future__ import annotations

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
    import re

    match = re.search(r"\bv?(\d+)\.(\d+)\.(\d+)", stdout)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None
