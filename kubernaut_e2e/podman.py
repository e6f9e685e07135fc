"""Container provider (podman or docker) command lines and parsers. Pure: runs nothing.

Both CLIs accept the same build/save/rmi arguments; they differ in how to ask for the host
architecture and whether an image exists.
"""
from __future__ import annotations

import re
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
          build_args: Mapping[str, str] | None = None, labels: Mapping[str, str] | None = None,
          target: str | None = None, platform: str | None = None) -> list[str]:
    # TARGETARCH is passed explicitly: the image must match the Kind node, never a hard-coded amd64.
    argv = [tool, "build", "-f", str(dockerfile), "-t", ref, "--build-arg", f"TARGETARCH={target_arch}"]
    if target:
        argv += ["--target", target]
    if platform:  # the image's recorded os/arch, and which variant of a multi-arch base is used
        argv += ["--platform", platform]
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


def pull(tool: str, ref: str) -> list[str]:
    return [tool, "pull", "--quiet", ref]


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


# --- progress, read from the output of a running command (for the live view) -----------------

#: podman/buildah: "STEP 3/7: RUN ..." or, in a multi-stage build, "[2/2] STEP 3/7: RUN ...".
_PODMAN_STEP = re.compile(r"^(?:\[(\d+)/(\d+)\] )?STEP (\d+)/(\d+): ")
#: docker (BuildKit, plain progress): "#8 [builder 3/7] RUN go build ...".
_BUILDKIT_STEP = re.compile(r"^#\d+ \[(?:(\S+) )?(\d+)/(\d+)\] ")


def build_progress(line: str) -> str | None:
    """Where a build is, from one line of `podman build` / `docker build` output, else None.

    "[2/2] STEP 3/7: COPY ..." -> "stage 2/2, step 3/7"; "#8 [builder 3/7] RUN ..." ->
    "builder 3/7".
    """
    found = _PODMAN_STEP.match(line)
    if found:
        stage, stages, step, steps = found.groups()
        where = f"step {step}/{steps}"
        return f"stage {stage}/{stages}, {where}" if stage else where
    found = _BUILDKIT_STEP.match(line)
    if found:
        stage, step, steps = found.groups()
        return f"{stage} {step}/{steps}" if stage else f"step {step}/{steps}"
    return None


_SAVE_PHASE = re.compile(r"^(Copying blob|Copying config|Writing manifest|Storing signatures)\b\s*(\S*)")


def save_progress(line: str) -> str | None:
    """The phase of a `podman save` from one output line ("copying blob 9a91362f35b5"), else None.

    podman prints one "Copying blob" line per layer, then the config and the manifest; docker
    save prints nothing, so its progress is only the elapsed time.
    """
    found = _SAVE_PHASE.match(line.strip())
    if not found:
        return None
    phase, subject = found.groups()
    digest = subject.split(":", 1)[-1][:12] if subject.startswith("sha256:") else ""
    return f"{phase.lower()} {digest}".strip()


#: The label kind puts on every node container of a cluster (value: the cluster's name).
KIND_CLUSTER_LABEL = "io.x-k8s.kind.cluster"


def kind_nodes(tool: str, cluster: str) -> list[str]:
    """Every node container of a kind cluster, running or not, with its state."""
    return [tool, "ps", "--all", "--filter", f"label={KIND_CLUSTER_LABEL}={cluster}",
            "--format", "{{.Names}}\t{{.State}}"]


def parse_node_states(stdout: str) -> dict[str, str]:
    """`name<TAB>state` lines -> {name: state}; podman says "exited", docker "exited" too."""
    states = {}
    for line in stdout.splitlines():
        name, _, state = line.strip().partition("\t")
        if name:
            states[name] = state.strip().lower() or "unknown"
    return states


def start(tool: str, names: list[str]) -> list[str]:
    return [tool, "start", *names]
