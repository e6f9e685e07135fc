"""kubernaut_e2e.stack: the environment as data, loaded, merged and validated before anything runs."""
from __future__ import annotations

from pathlib import Path

import pytest

from kubernaut_e2e.errors import EXIT_USAGE, UsageError
from kubernaut_e2e.stack import DEFAULT_STACK, load_stack, template_names


def _overlay(tmp_path: Path, text: str, name: str = "stack.yaml") -> Path:
    path = tmp_path / name
    path.write_text("extends: default\n" + text)
    return path


def test_the_default_stack_is_upstreams_gateway_environment():
    stack = load_stack(DEFAULT_STACK)
    assert (stack.name, stack.namespace) == ("gateway-e2e", "kubernaut-system")
    assert stack.cluster.nodes == ("control-plane",)
    assert stack.cluster.kind_min_version == "v0.32.0" and stack.cluster.kubernetes_version == "v1.36.1"
    assert stack.image_names == ("gateway", "datastorage")
    assert dict(stack.preload) == {"postgres": "docker.io/library/postgres:16-alpine",
                                   "redis": "quay.io/jordigilh/redis:7-alpine"}
    assert stack.deployments == ("postgresql", "redis", "datastorage", "gateway")
    assert [c.name for c in stack.components_of("tls")] == ["tls"]
    assert DEFAULT_STACK in stack.files


def test_an_overlay_merges_mappings_replaces_lists_and_null_removes(tmp_path: Path):
    (tmp_path / "Dockerfile.x").write_text("FROM scratch\n")
    path = _overlay(tmp_path, "namespace: other\n"
                              "images:\n  gateway:\n    dockerfile: Dockerfile.x\n"
                              "cluster:\n  nodes: [control-plane, worker]\n"
                              "components:\n  suite-access: null\n")
    stack = load_stack(path)
    assert stack.namespace == "other"
    gateway = stack.image("gateway")
    assert gateway.dockerfile == str(tmp_path / "Dockerfile.x")  # relative to the file that says it
    assert gateway.repository == "localhost/kubernaut-gateway"  # the rest of the image is the base's
    assert stack.cluster.nodes == ("control-plane", "worker")
    assert "suite-access" not in [c.name for c in stack.components]
    assert stack.files == (DEFAULT_STACK, path.resolve())


@pytest.mark.parametrize("text, says", [
    ("bogus: 1\n", "bogus: unknown key"),
    ("namespace: Not_A_Name\n", "namespace: 'Not_A_Name' is not a DNS-1123 name"),
    ("cluster:\n  ports:\n    gateway-api: {node_port: 80, host_port: 8080}\n",
     "cluster.ports.gateway-api.node_port: 80 is outside the NodePort range"),
    ("cluster:\n  ports:\n    gateway-api: {node_port: 30180, host_port: 1}\n",
     "cluster.ports: gateway-health and gateway-api share node_port 30180"),
    ("images:\n  gateway:\n    source_dockerfile: ../x\n", "images.gateway: give exactly one of dockerfile"),
    ("components:\n  gateway:\n    needs: [nowhere]\n", "components.gateway.needs: 'nowhere' is not a component"),
    ("components:\n  gateway:\n    type: helm\n", "components.gateway.type: 'helm' is not a component type"),
    ("components:\n  gateway:\n    images: [nope]\n", "components.gateway.images: 'nope' is not one of images"),
    ("components:\n  namespace:\n    needs: [gateway]\n", "components: dependency cycle"),
    ("health:\n  - {name: x, endpoint: nowhere, path: /readyz}\n", "health[0].endpoint: 'nowhere' is not one of endpoints"),
    ("suite:\n  env:\n    X: ${not_a_value}\n", "suite.env.X: unknown placeholder ${not_a_value}"),
    ("preload:\n  postgres: 'Not An Image'\n", "preload.postgres: 'Not An Image' is not an image reference"),
])
def test_a_bad_stack_is_one_line_naming_the_file_and_key(tmp_path: Path, text: str, says: str):
    path = _overlay(tmp_path, text)
    with pytest.raises(UsageError) as info:
        load_stack(path)
    message = str(info.value)
    assert message.startswith(f"stack {path}: ") and says in message, message
    assert "\n" not in message and info.value.exit_code == EXIT_USAGE


def test_a_manifest_with_an_unknown_placeholder_is_named_with_its_line(tmp_path: Path):
    (tmp_path / "extra.yaml").write_text("kind: ConfigMap\nmetadata:\n  name: ${namespace}-x\n  labels: {a: ${nope}}\n")
    path = _overlay(tmp_path, "components:\n  extra:\n    manifests: [extra.yaml]\n")
    with pytest.raises(UsageError, match=rf"{tmp_path / 'extra.yaml'}:4: unknown placeholder \$\{{nope\}}"):
        load_stack(path)


def test_aliases_loops_and_missing_files_are_refused(tmp_path: Path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x]\nb: [*a, *a]\n")
    with pytest.raises(UsageError, match="YAML aliases"):
        load_stack(bomb)
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(UsageError, match="loops back to itself"):
        load_stack(tmp_path / "a.yaml")
    with pytest.raises(UsageError, match="cannot be read"):
        load_stack(tmp_path / "none.yaml")


def test_template_names_cover_images_ports_endpoints_and_secrets():
    names = template_names(load_stack(DEFAULT_STACK))
    assert {"namespace", "image_gateway", "preload_postgres", "node_port_gateway_api", "host_port_datastorage_health",
            "url_datastorage", "secret_postgres_password", "kubeconfig", "ca_file"} <= names


# --- images.<name>.build: host (kubernaut_e2e.gobuild) ----------------------------------------------

_HOST = "images:\n  gateway:\n    dockerfile: null\n    build: host\n    package: ./cmd/gateway\n    base: scratch\n"


def test_a_host_built_image_takes_its_defaults_and_has_no_dockerfile(tmp_path: Path):
    spec = load_stack(_overlay(tmp_path, _HOST)).image("gateway")
    assert (spec.on_host, spec.package, spec.base, spec.binary, spec.user, spec.dockerfile) == (
        True, "./cmd/gateway", "scratch", "/usr/local/bin/gateway", "1001", "")
    assert not load_stack(DEFAULT_STACK).image("gateway").on_host  # the Dockerfile path stays the default


@pytest.mark.parametrize("image, says", [
    ("    build: host\n    package: ./cmd/gateway\n    base: scratch\n",
     "images.gateway.dockerfile: an image with `build: host` has no Dockerfile"),
    ("    dockerfile: null\n    build: host\n    base: scratch\n", "images.gateway.package: missing"),
    ("    dockerfile: null\n    build: host\n    package: ./...\n    base: scratch\n",
     "images.gateway.package: './...' must be one package of the module"),
    ("    dockerfile: null\n    build: host\n    package: ./cmd/gateway\n", "images.gateway.base: missing"),
    ("    dockerfile: null\n    build: host\n    package: ./cmd/gateway\n    base: scratch\n    binary: bin/gw\n",
     "images.gateway.binary: 'bin/gw' must be an absolute path in the image"),
    ("    dockerfile: null\n    build: host\n    package: ./cmd/gateway\n    base: scratch\n"
     "    files: {../secret: /etc/x}\n", "images.gateway.files.../secret: must be a path inside the source tree"),
    ("    package: ./cmd/gateway\n", "images.gateway.package: only an image with `build: host` takes this key"),
    ("    build: ko\n", "images.gateway.build: 'ko' must be one of dockerfile, host"),
])
def test_bad_host_build_settings_are_one_line_naming_the_key(tmp_path: Path, image: str, says: str):
    path = _overlay(tmp_path, "images:\n  gateway:\n" + image)
    with pytest.raises(UsageError) as err:
        load_stack(path)
    message = str(err.value)
    assert message.startswith(f"stack {path.resolve()}: {says}") and "\n" not in message, message
