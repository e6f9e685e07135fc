"""`kind` command lines and output parsers. Pure: nothing here runs a process."""
from __future__ import annotations

from pathlib import Path


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
