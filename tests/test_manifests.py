"""Every manifest, rendered with defaults, is valid against the Kubernetes schemas of the Kind
node's version; rendering uses the config as the one source of truth."""
from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from kubernaut_e2e import manifests, migrations
from kubernaut_e2e.config import load_config
from kubernaut_e2e.errors import UsageError

# kind v0.29 ships kindest/node v1.33.1.
K8S_VERSION = "1.33.0"
SECRETS = {"postgres_admin_password": "a" * 48, "postgres_password": "b" * 48}


def _all_objects(cfg=None):  # type: ignore[no-untyped-def]
    cfg = cfg or load_config({})
    values = manifests.template_values(cfg, SECRETS)
    for names in manifests.STEP_MANIFESTS.values():
        for name in names:
            yield from manifests.render(name, values)


@pytest.mark.parametrize("obj", list(_all_objects()), ids=manifests.describe)
def test_rendered_manifest_is_valid_kubernetes(obj):
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_generated_objects_are_valid_kubernetes():
    m = [migrations.Migration(1, "001_x.sql", "CREATE TABLE x (id int);\n")]
    for obj in (migrations.configmap(m, "kubernaut-system"), migrations.job("kubernaut-system", "postgres:16")):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_kind_config_renders_ports_from_config():
    cfg = load_config({"gateway_node_port": 30500, "gateway_host_port": 18080})
    doc = yaml.safe_load(manifests.render_text(cfg.kind_config, manifests.template_values(cfg, {})))
    mappings = doc["nodes"][0]["extraPortMappings"]
    assert {"containerPort": 30500, "hostPort": 18080, "protocol": "TCP"} in mappings
    assert [n["role"] for n in doc["nodes"]] == ["control-plane", "worker"]


def test_config_is_the_one_source_of_image_refs_ports_and_namespace():
    cfg = load_config({"namespace": "gw-test", "gateway_image": "localhost/gw:abc",
                       "gateway_node_port": 30123, "memory_limit": "1Gi"})
    objects = list(_all_objects(cfg))
    assert all(o["metadata"].get("namespace", "gw-test") == "gw-test" for o in objects
               if o["kind"] not in ("ClusterRole", "ClusterRoleBinding"))
    gw = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "gateway")
    container = gw["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost/gw:abc"
    assert container["imagePullPolicy"] == "Never"
    assert container["resources"]["limits"]["memory"] == "1Gi"
    svc = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "gateway")
    assert svc["spec"]["ports"][0]["nodePort"] == 30123


def test_gateway_rbac_covers_remediationrequests_and_status():
    role = next(o for o in _all_objects() if o["kind"] == "ClusterRole")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert {"remediationrequests", "remediationrequests/status", "namespaces", "configmaps"} <= resources


def test_no_password_literal_in_the_repo_manifests():
    import re

    for path in manifests.MANIFEST_DIR.glob("*.yaml"):
        for line in path.read_text().splitlines():
            match = re.match(r"\s*(\w*PASSWORD|password):\s*(.*)$", line)
            if match:
                assert match.group(2).startswith('"${'), f"{path}: {line.strip()}"
    secret = next(o for o in _all_objects() if o["metadata"]["name"] == "postgresql-credentials")
    assert secret["stringData"]["APP_PASSWORD"] == SECRETS["postgres_password"]


def test_bad_yaml_is_a_usage_error_naming_the_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: ConfigMap\nmetadata: {name: [unclosed\n")
    with pytest.raises(UsageError, match="bad.yaml: not valid YAML"):
        manifests.render("bad.yaml", {}, directory=tmp_path)


def test_unknown_placeholder_is_a_usage_error(tmp_path: Path):
    (tmp_path / "m.yaml").write_text("kind: ConfigMap\nmetadata: {name: ${nope}}\n")
    with pytest.raises(UsageError, match=r"unknown placeholder \$\{nope\}"):
        manifests.render("m.yaml", {}, directory=tmp_path)
