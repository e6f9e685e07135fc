"""kubernaut_e2e.manifests: every object of the default stack, rendered, is valid Kubernetes for
the stack's node version; the values come from the config and the stack, nowhere else."""
from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from kubernaut_e2e import kind, manifests, migrations, tls
from kubernaut_e2e.config import load_config
from kubernaut_e2e.errors import UsageError
from kubernaut_e2e.stack import DEFAULT_STACK
from tests.conftest import KUBERNAUT_FIXTURE

#: The default stack's node image is Kubernetes v1.36.1; kubernetes-validate knows 1.36.0.
K8S_VERSION = "1.36.0"
SECRETS = {"postgres_password": "b" * 48}


def _all_objects(cfg=None):  # type: ignore[no-untyped-def]
    cfg = cfg or load_config({"source_dir": str(KUBERNAUT_FIXTURE)})
    values = manifests.template_values(cfg, SECRETS)
    for comp in cfg.stack.components:
        yield from manifests.render_component(comp, values)


def _builtin(obj) -> bool:  # type: ignore[no-untyped-def]
    return not obj["apiVersion"].startswith("kubernaut.ai/")


@pytest.mark.parametrize("obj", [o for o in _all_objects() if _builtin(o)], ids=manifests.describe)
def test_rendered_manifest_is_valid_kubernetes(obj):
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_generated_objects_are_valid_kubernetes():
    cfg = load_config({"source_dir": str(KUBERNAUT_FIXTURE)})
    comp = cfg.stack.component("migrations")
    loaded = migrations.load_migrations(sorted((KUBERNAUT_FIXTURE / "migrations").glob("*.sql")))
    objects = [migrations.configmap(loaded, "kubernaut-system", {migrations.APPLIED_ANNOTATION: "x"}),
               migrations.job("kubernaut-system", "postgres:16", comp.settings["database"], 180),
               *tls.generate(cfg.stack.component("tls").settings, "kubernaut-system").objects]
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_kind_config_comes_from_the_stack_with_host_port_overrides(tmp_path: Path):
    cfg = load_config({"source_dir": str(tmp_path), "host_ports": "gateway-api=18080"})
    doc = kind.cluster_config(cfg.stack.cluster, cfg.host_ports, cfg.source_dir)
    assert [n["role"] for n in doc["nodes"]] == ["control-plane"]
    node = doc["nodes"][0]
    assert node["image"].startswith("kindest/node:v1.36.1@sha256:")
    mappings = {m["containerPort"]: m["hostPort"] for m in node["extraPortMappings"]}
    assert mappings == {30080: 18080, 30180: 28080, 30090: 9090, 30081: 18091, 30281: 28091,
                        30185: 28185, 30183: 28183, 30082: 28193}
    assert node["extraMounts"] == [{"hostPath": str(tmp_path / "coverdata"), "containerPath": "/coverdata",
                                    "readOnly": False}]
    patch = yaml.safe_load(doc["kubeadmConfigPatches"][0])
    args = {a["name"]: a["value"] for a in patch["apiServer"]["extraArgs"]}
    assert args == {"max-requests-inflight": "800", "max-mutating-requests-inflight": "400"}


def test_stack_and_config_are_the_one_source_of_refs_ports_and_namespace(tmp_path: Path):
    stack = tmp_path / "stack.yaml"
    stack.write_text("extends: default\nnamespace: gw-test\n"
                     "cluster:\n  ports:\n    gateway-api: {node_port: 30123, host_port: 8080}\n")
    cfg = load_config({"stack": str(stack), "image_tag": "abc", "source_dir": str(KUBERNAUT_FIXTURE)})
    objects = list(_all_objects(cfg))
    namespaced = [o for o in objects if o["kind"] not in ("ClusterRole", "ClusterRoleBinding", "Namespace")]
    assert all(o["metadata"]["namespace"] == "gw-test" for o in namespaced)
    gw = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "gateway")
    container = gw["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost/kubernaut-gateway:abc"
    assert container["imagePullPolicy"] == "Never"
    svc = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "gateway-service")
    assert {p["name"]: p["nodePort"] for p in svc["spec"]["ports"]}["http"] == 30123


def test_no_password_literal_in_the_shipped_manifests():
    import re

    for path in (DEFAULT_STACK.parent / "manifests").glob("*.yaml"):
        for line in path.read_text().splitlines():
            match = re.match(r"\s*(\w*PASSWORD|password):\s*(.*)$", line)
            if match and match.group(2) not in ('""',):
                assert match.group(2).startswith('"${secret_'), f"{path}: {line.strip()}"
    secret = next(o for o in _all_objects() if o["metadata"]["name"] == "postgresql-secret")
    assert secret["stringData"]["POSTGRES_PASSWORD"] == SECRETS["postgres_password"]
    assert yaml.safe_load(secret["stringData"]["db-secrets.yaml"]) == {"username": "slm_user",
                                                                       "password": SECRETS["postgres_password"]}


def test_pin_image_ids_annotates_only_containers_running_a_known_ref():
    objects = [o for o in _all_objects() if o["kind"] == "Deployment"]
    gw = next(o for o in objects if o["metadata"]["name"] == "gateway")
    ref = gw["spec"]["template"]["spec"]["containers"][0]["image"]
    pinned = manifests.pin_image_ids(copy.deepcopy(objects), {ref: "sha256:abc"})
    by_name = {o["metadata"]["name"]: o for o in pinned}
    notes = by_name["gateway"]["spec"]["template"]["metadata"]["annotations"]
    assert notes == {"e2e.kubernaut.ai/image-gateway": "sha256:abc"}
    assert "annotations" not in by_name["postgresql"]["spec"]["template"]["metadata"]


def test_bad_yaml_is_a_usage_error_naming_the_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: ConfigMap\nmetadata: {name: [unclosed\n")
    with pytest.raises(UsageError, match="bad.yaml: not valid YAML"):
        manifests.render(bad, {})


def test_unknown_placeholder_is_a_usage_error(tmp_path: Path):
    (tmp_path / "m.yaml").write_text("kind: ConfigMap\nmetadata: {name: ${nope}}\n")
    with pytest.raises(UsageError, match=r"unknown placeholder \$\{nope\}"):
        manifests.render(tmp_path / "m.yaml", {})
