"""Container provider (podman or docker) command lines and parsers. Pure: runs nothing.

Both CLIs accept the same build/save/rmi arguments; they differ in how to ask for the host
architecture and whether an image exists.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

#: uname/Go/OCI spellings of the same architectures, mapped to the OCI/Go name.
_ARCH_ALIASES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
                 "armv7l": "arm", "arm": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def normalize_arch(value: str) -> str:
    value = value.strip().lower()
    return _ARCH_ALIASES.get(value, value)


def info_arch(tool: str) -> list[str]:
    """The architecture the provider runs containers on (a podman machine's, on macOS)."""
    if tool == "podman":
        return ["podman", "info", "--format", "{{.Host.Arch}}"]
    return ["docker", "info", "--format", "{{.Architecture}}"]


def parse_arch(stdout: str) -> str:
    arch = normalize_arch(stdout.strip().splitlines()[-1] if stdout.strip() else "")
    if not arch:
        raise ValueError("the container provider reported no architecture")
    return arch


def build(tool: str, dockerfile: Path, ref: str, context: Path, target_arch: str,
          build_args: Mapping[str, str] | None = None, labels: Mapping[str, str] | None = None) -> list[str]:
    # TARGETARCH is passed explicitly: the image must match the Kind node, never a hard-coded amd64.
    argv = [tool, "build", "-f", str(dockerfile), "-t", ref, "--build-arg", f"TARGETARCH={target_arch}"]
    for key, value in (build_args or {}).items():
        argv += ["--build-arg", f"{key}={value}"]
    for key, value in (labels or {}).items():
        argv += ["--label", f"{key}={value}"]
    return argv + [str(context)]


def image_label(tool: str, ref: str, label: str) -> list[str]:
    """Print one label of a local image (fails when the image does not exist)."""
    where = ".Labels" if tool == "podman" else ".Config.Labels"
    return [tool, "image", "inspect", "--format", f'{{{{index {where} "{label}"}}}}', ref]


def image_id(tool: str, ref: str) -> list[str]:
    return [tool, "image", "inspect", "--format", "{{.Id}}", ref]


def save(tool: str, ref: str, archive: Path) -> list[str]:
    return [tool, "save", "-o", str(archive), ref]


def image_exists(tool: str, ref: str) -> list[str]:
    """Exit 0 when the image exists locally (no output needed)."""
    if tool == "podman":
        return ["podman", "image", "exists", ref]
    return ["docker", "image", "inspect", "--format", "{{.Id}}", ref]


def image_arch(tool: str, ref: str) -> list[str]:
    return [tool, "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", ref]


def rmi(tool: str, refs: list[str]) -> list[str]:
    return [tool, "rmi", *refs]


def containers_json(tool: str) -> list[str]:
    """Every container as JSON, podman's build (buildah) working containers included."""
    return [tool, "ps", "--all", "--external", "--format", "json"]


def build_leftovers(stdout: str, image_ids: set[str]) -> list[str]:
    """IDs of build working containers left on `image_ids` by a build that was killed. Pure.

    podman 4.3 leaves them when a build is stopped; they make `podman rmi` of those images
    fail ("image is in use by a container"). Only `buildah` containers: never a user's own.
    """
    import json

    try:
        listed = json.loads(stdout or "[]")
    except ValueError:
        return []
    found = []
    for container in listed if isinstance(listed, list) else []:
        image = str(container.get("ImageID") or "")
        if container.get("Command") == ["buildah"] and image and any(i.startswith(image) or image.startswith(i)
                                                                      for i in image_ids if i):
            found.append(str(container.get("Id")))
    return found


def rm_containers(tool: str, ids: list[str]) -> list[str]:
    return [tool, "rm", "--force", *ids]


def prune_labelled(tool: str, label: str) -> list[str]:
    """Remove dangling images carrying `label`: old builds of ours, never anyone else's."""
    return [tool, "image", "prune", "--force", "--filter", f"label={label}"]


def version(tool: str) -> list[str]:
    return [tool, "version", "--format", "{{.Client.Version}}"]
