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
