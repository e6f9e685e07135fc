"""argv builders and parsers for kind and the container provider."""
from __future__ import annotations

from pathlib import Path

import pytest

from kubernaut_e2e import kind, podman


def test_kind_create_uses_a_dedicated_kubeconfig_and_wait():
    argv = kind.create_cluster("gateway-e2e", Path("/p/kind.yaml"), Path("/s/kubeconfig"), "5m")
    assert argv == ["kind", "create", "cluster", "--name", "gateway-e2e", "--config", "/p/kind.yaml",
                    "--kubeconfig", "/s/kubeconfig", "--wait", "5m"]


def test_kind_provider_env():
    assert kind.provider_env("podman") == {"KIND_EXPERIMENTAL_PROVIDER": "podman"}
    assert kind.provider_env("docker") == {}


def test_parse_clusters():
    assert kind.parse_clusters("a\ngateway-e2e\n") == ["a", "gateway-e2e"]
    assert kind.parse_clusters("") == []
    assert kind.parse_clusters("No kind clusters found.\n") == []


def test_load_uses_image_archive():
    assert kind.load_image_archive(Path("/t/x.tar"), "c") == [
        "kind", "load", "image-archive", "/t/x.tar", "--name", "c"]


def test_build_passes_target_arch_never_hardcoded():
    argv = podman.build("podman", Path("/d/Dockerfile.gateway"), "localhost/g:t", Path("/src"),
                        "arm64", {"GO_VERSION": "1.24"})
    assert argv == ["podman", "build", "-f", "/d/Dockerfile.gateway", "-t", "localhost/g:t",
                    "--build-arg", "TARGETARCH=arm64", "--build-arg", "GO_VERSION=1.24", "/src"]
    assert "amd64" not in " ".join(argv)


@pytest.mark.parametrize("raw, arch", [("x86_64\n", "amd64"), ("aarch64", "arm64"),
                                       ("arm64", "arm64"), ("amd64\n", "amd64")])
def test_parse_arch(raw, arch):
    assert podman.parse_arch(raw) == arch


def test_parse_arch_empty_is_an_error():
    with pytest.raises(ValueError):
        podman.parse_arch("")


def test_docker_and_podman_differ_where_they_must():
    assert podman.image_exists("podman", "r") == ["podman", "image", "exists", "r"]
    assert podman.image_exists("docker", "r")[:3] == ["docker", "image", "inspect"]
    assert podman.info_arch("docker") == ["docker", "info", "--format", "{{.Architecture}}"]
    assert podman.save("docker", "r", Path("/a.tar")) == ["docker", "save", "-o", "/a.tar", "r"]


# --- progress parsers (the live view's progress column) --------------------------------------

def test_build_progress_reads_podman_and_buildkit_steps():
    # Lines as podman 4.3 prints them for a two-stage build (seen on this machine).
    assert podman.build_progress("STEP 1/2: FROM scratch") == "step 1/2"
    assert podman.build_progress("[2/2] STEP 3/4: COPY hello /c") == "stage 2/2, step 3/4"
    assert podman.build_progress("#8 [builder 3/7] RUN go build ./cmd/gateway") == "builder 3/7"
    assert podman.build_progress("#3 [2/5] COPY . .") == "step 2/5"
    for other in ("--> 54fa8ab2556", "[2/2] COMMIT localhost/pt:1", "Successfully tagged x", "",
                  "go: downloading STEP 1/2: not at the start"):
        assert podman.build_progress(other) is None


def test_save_progress_names_the_phase():
    assert podman.save_progress("Copying blob sha256:9a91362f35b5b7ab1e35c18f0c9cf6b0f8") == \
        "copying blob 9a91362f35b5"
    assert podman.save_progress("Copying config sha256:54fa8ab25566d89b7") == "copying config 54fa8ab25566"
    assert podman.save_progress("Writing manifest to image destination") == "writing manifest"
    assert podman.save_progress("Error: no such image") is None


def test_kind_create_progress_drops_the_emoji_and_keeps_the_phase():
    assert kind.create_progress(" • Ensuring node image (kindest/node:v1.33.1) 🖼  ...") == \
        "Ensuring node image (kindest/node:v1.33.1)"
    assert kind.create_progress(" ✓ Preparing nodes 📦 📦") == "Preparing nodes: done"
    assert kind.create_progress(" ✗ Starting control-plane 🕹️") == "Starting control-plane: FAILED"
    assert kind.create_progress(" • Waiting ≤ 5m0s for control-plane = Ready ⏳  ...") == \
        "Waiting ≤ 5m0s for control-plane = Ready"
    assert kind.create_progress('Creating cluster "gateway-e2e" ...') is None


def test_kind_load_progress_names_the_node():
    line = ('Image: "localhost/g:t" with ID "sha256:1f" not yet present on node "gw-control-plane", '
            "loading...")
    assert kind.load_progress(line) == "loading onto gw-control-plane"
    assert kind.load_progress("enabling experimental podman provider") is None
