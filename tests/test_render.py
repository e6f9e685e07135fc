"""`e2e.render`: what `up` would apply, in apply order, with generated values as placeholders; and
the default stack's rendering compared with the upstream fact sheet (../shared/notes/
kubernaut-upstream.md, sections 2-8): names, ports, paths, config keys and RBAC."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kubernaut_e2e.config import load_config
from kubernaut_e2e.render import render_stack
from tests.conftest import KUBERNAUT_FIXTURE, ROOT

K8S_VERSION = "1.36.0"  # the node image's v1.36.1; the newest kubernetes-validate knows here


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("render")
    cfg = load_config({"source_dir": str(KUBERNAUT_FIXTURE)})
    files = render_stack(cfg, out)
    return {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in files}


def _all(rendered) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [o for name, docs in rendered.items() if name != "00-kind-config.yaml" for o in docs]


def _find(rendered, kind: str, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return next(o for o in _all(rendered) if o["kind"] == kind and o["metadata"]["name"] == name)


def test_files_are_in_apply_order(rendered):
    names = list(rendered)
    assert names[0] == "00-kind-config.yaml"
    steps = [n.split("-", 1)[1].removesuffix(".yaml") for n in names[1:]]
    for before, after in (("crds", "actiontypes"), ("namespace", "postgresql"), ("postgresql", "migrations"),
                          ("migrations", "datastorage"), ("tls", "datastorage"), ("datastorage", "gateway")):
        assert steps.index(before) < steps.index(after), steps


def test_generated_values_are_placeholders_and_builtins_are_valid(rendered):
    text = yaml.safe_dump_all(_all(rendered))
    assert "<generated:postgres_password>" in text
    assert "BEGIN CERTIFICATE" not in text and "PRIVATE KEY" not in text
    for obj in _all(rendered):
        if obj["apiVersion"].split("/")[0] not in ("kubernaut.ai", "apiextensions.k8s.io"):
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_kind_cluster_matches_upstream(rendered):
    [config] = rendered["00-kind-config.yaml"]
    [node] = config["nodes"]
    assert node["role"] == "control-plane"
    assert node["image"] == ("kindest/node:v1.36.1@sha256:"
                             "3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5")
    assert {m["containerPort"]: m["hostPort"] for m in node["extraPortMappings"]} == {
        30080: 8080, 30180: 28080, 30090: 9090, 30081: 18091, 30281: 28091, 30185: 28185, 30183: 28183,
        30082: 28193}
    assert [m["containerPath"] for m in node["extraMounts"]] == ["/coverdata"]
    patch = yaml.safe_load(config["kubeadmConfigPatches"][0])
    args = lambda part: {a["name"]: a["value"] for a in patch[part]["extraArgs"]}  # noqa: E731
    assert args("apiServer") == {"max-requests-inflight": "800", "max-mutating-requests-inflight": "400"}
    assert {"kube-api-qps": "100", "kube-api-burst": "200"}.items() <= args("controllerManager").items()


def test_namespace_crds_and_actiontypes(rendered):
    ns = _find(rendered, "Namespace", "kubernaut-system")
    assert ns["metadata"]["labels"]["test"] == "datastorage-e2e"
    assert "kubernaut.ai/managed" not in ns["metadata"]["labels"]
    crds = {o["metadata"]["name"] for o in _all(rendered) if o["kind"] == "CustomResourceDefinition"}
    assert crds == {"remediationrequests.kubernaut.ai", "actiontypes.kubernaut.ai"}  # the fixture tree's
    actions = [o for o in _all(rendered) if o["kind"] == "ActionType"]
    assert sorted(o["metadata"]["name"] for o in actions) == sorted([
        "delete-pod", "drain-node", "fix-authorization-policy", "fix-certificate", "increase-memory-limits",
        "restart-deployment", "restart-pod", "rollback-deployment", "increase-cpu-limits", "scale-replicas",
        "reconfigure-resource"])
    assert all(set(o["spec"]["description"]) == {"what", "whenToUse"} and o["spec"]["name"] for o in actions)


def test_postgresql_and_redis(rendered):
    secret = _find(rendered, "Secret", "postgresql-secret")["stringData"]
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "db-secrets.yaml"} == set(secret)
    assert (secret["POSTGRES_USER"], secret["POSTGRES_DB"]) == ("slm_user", "action_history")
    assert set(yaml.safe_load(secret["db-secrets.yaml"])) == {"username", "password"}
    svc = _find(rendered, "Service", "postgresql")["spec"]
    assert svc["type"] == "NodePort" and svc["ports"][0]["port"] == 5432 and svc["ports"][0]["nodePort"] == 30432
    pvc = _find(rendered, "PersistentVolumeClaim", "postgresql-data")["spec"]
    assert pvc["accessModes"] == ["ReadWriteOnce"] and pvc["resources"]["requests"]["storage"] == "1Gi"
    pg = _find(rendered, "Deployment", "postgresql")["spec"]["template"]["spec"]["containers"][0]
    assert pg["image"] == "docker.io/library/postgres:16-alpine" and pg["args"] == ["-c", "max_connections=200"]
    env = {e["name"]: e for e in pg["env"]}
    assert env["PGDATA"]["value"] == "/var/lib/postgresql/data/pgdata"
    assert {m["mountPath"] for m in pg["volumeMounts"]} == {"/var/lib/postgresql/data"}
    assert pg["readinessProbe"]["exec"]["command"][0] == "pg_isready"
    assert "-h" in pg["readinessProbe"]["exec"]["command"]  # over TCP (see the manifest)
    redis_svc = _find(rendered, "Service", "redis")["spec"]
    assert redis_svc["type"] == "ClusterIP" and redis_svc["ports"][0]["port"] == 6379
    redis = _find(rendered, "Deployment", "redis")["spec"]["template"]["spec"]["containers"][0]
    assert redis["image"] == "quay.io/jordigilh/redis:7-alpine"
    assert redis["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]


def test_datastorage(rendered):
    config = yaml.safe_load(_find(rendered, "ConfigMap", "datastorage-config")["data"]["config.yaml"])
    assert {k: config["server"][k] for k in ("port", "metricsPort", "healthPort", "signerCertDir")} == {
        "port": 8080, "metricsPort": 9090, "healthPort": 8081, "signerCertDir": "/etc/signing-certs"}
    assert config["server"]["tls"] == {"certDir": "/etc/tls"}
    db = config["database"]
    assert (db["host"], db["port"], db["name"], db["user"]) == (
        "postgresql.kubernaut-system.svc.cluster.local", 5432, "action_history", "slm_user")
    assert (db["secretsFile"], db["usernameKey"], db["passwordKey"]) == (
        "/etc/datastorage/secrets/db-secrets.yaml", "username", "password")
    assert config["redis"]["addr"] == "redis.kubernaut-system.svc.cluster.local:6379"
    assert (config["redis"]["secretsFile"], config["redis"]["passwordKey"]) == (
        "/etc/datastorage/secrets/redis-secrets.yaml", "password")
    assert set(config["logging"]) == {"level", "format"}
    assert "redis-secrets.yaml" in _find(rendered, "Secret", "redis-secret")["stringData"]
    svc = _find(rendered, "Service", "data-storage-service")["spec"]
    assert svc["type"] == "NodePort" and svc["selector"] == {"app": "datastorage"}
    assert {p["name"]: (p["port"], p["nodePort"]) for p in svc["ports"]} == {
        "https": (8080, 30081), "metrics": (9090, 30181), "health": (8081, 30281)}
    pod = _find(rendered, "Deployment", "datastorage")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "data-storage-sa"
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    [c] = pod["containers"]
    assert {e["name"]: e.get("value") for e in c["env"]} == {"CONFIG_PATH": "/etc/datastorage/config.yaml",
                                                           "POD_NAMESPACE": "kubernaut-system"}
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/etc/datastorage", "/etc/datastorage/secrets",
                                                          "/etc/tls", "/etc/signing-certs"}
    assert (c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]) == (
        {"path": "/readyz", "port": 8081}, {"path": "/healthz", "port": 8081})
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls-certs"]["secret"] == {"secretName": "datastorage-tls", "optional": True}
    assert volumes["signing-certs"]["secret"] == {"secretName": "datastorage-signing"}


def _rules(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


def test_rbac_matches_upstream(rendered):
    gateway = _rules(_find(rendered, "ClusterRole", "gateway-role"))
    read = {"get", "list", "watch"}
    expected = {("kubernaut.ai", "remediationrequests", v) for v in ("create", "get", "list", "watch", "update", "patch")}
    expected |= {("kubernaut.ai", "remediationrequests/status", v) for v in ("update", "patch")}
    expected |= {("", r, v) for r in ("namespaces", "configmaps", "pods", "nodes", "services", "secrets",
                                      "persistentvolumes") for v in read}
    expected |= {("apps", r, v) for r in ("deployments", "replicasets", "statefulsets", "daemonsets") for v in read}
    expected |= {("batch", r, v) for r in ("jobs", "cronjobs") for v in read}
    expected |= {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update", "delete")}
    expected |= {("authentication.k8s.io", "tokenreviews", "create"), ("authorization.k8s.io", "subjectaccessreviews",
                                                                        "create")}
    assert gateway == expected
    binding = _find(rendered, "ClusterRoleBinding", "gateway-rolebinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gateway", "namespace": "kubernaut-system"}]
    client = _find(rendered, "ClusterRole", "data-storage-client")["rules"]
    assert client == [{"apiGroups": [""], "resources": ["services"], "resourceNames": ["data-storage-service"],
                       "verbs": ["create", "get", "list", "update", "delete"]}]
    middleware = _rules(_find(rendered, "ClusterRole", "data-storage-auth-middleware"))
    assert middleware == {("authentication.k8s.io", "tokenreviews", "create"),
                          ("authorization.k8s.io", "subjectaccessreviews", "create"),
                          *{("kubernaut.ai", r, v) for r in ("remediationworkflows", "actiontypes") for v in read}}
    access = _find(rendered, "RoleBinding", "gateway-datastorage-access")
    assert access["roleRef"]["name"] == "data-storage-client" and access["subjects"][0]["name"] == "gateway"
    suite = _find(rendered, "ClusterRole", "gateway-service-client")["rules"]
    assert suite == [{"apiGroups": [""], "resources": ["services"], "resourceNames": ["gateway-service"],
                      "verbs": ["create"]}]
    assert _find(rendered, "ClusterRoleBinding", "e2e-gateway-suite-sa-gateway-client")["subjects"][0]["name"] == \
        "e2e-gateway-suite-sa"
    audit = _find(rendered, "RoleBinding", "gateway-e2e-audit-client-data-storage-client")
    assert audit["roleRef"]["name"] == "data-storage-client"


def test_gateway(rendered):
    config = yaml.safe_load(_find(rendered, "ConfigMap", "gateway-config")["data"]["config.yaml"])
    assert config["server"]["listenAddr"] == ":8080"
    assert config["datastorage"]["url"] == "https://data-storage-service.kubernaut-system.svc.cluster.local:8080"
    assert config["datastorage"]["healthUrl"].endswith(":8080/readyz")
    assert set(config["datastorage"]["buffer"]) == {"bufferSize", "batchSize", "flushInterval", "maxRetries"}
    assert config["processing"]["environment"]["configmapName"] == "kubernaut-environment-overrides"
    dep = _find(rendered, "Deployment", "gateway")
    assert dep["metadata"]["labels"] == {"app": "gateway", "component": "webhook"}
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "gateway" and pod["terminationGracePeriodSeconds"] == 30
    [c] = pod["containers"]
    assert c["args"] == ["--config=/etc/gateway/config.yaml"]
    env = {e["name"]: e for e in c["env"]}
    assert env["TLS_CA_FILE"]["value"] == "/etc/tls-ca/ca.crt"
    assert env["KUBERNAUT_CONTROLLER_NAMESPACE"]["value"] == "kubernaut-system"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080, "health": 8081, "metrics": 9090}
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/etc/gateway", "/etc/tls-ca"}
    assert {k: c[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")} == {
        "startupProbe": {"path": "/healthz", "port": 8081}, "livenessProbe": {"path": "/healthz", "port": 8081},
        "readinessProbe": {"path": "/readyz", "port": 8081}}
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}
    svc = _find(rendered, "Service", "gateway-service")["spec"]
    assert {p["name"]: (p["port"], p["nodePort"]) for p in svc["ports"]} == {
        "http": (8080, 30080), "health": (8081, 30180), "metrics": (9090, 30090)}


def test_tls_material_and_migrations(rendered):
    assert "ca.crt" in _find(rendered, "ConfigMap", "inter-service-ca")["data"]
    secrets = {o["metadata"]["name"] for o in _all(rendered) if o.get("type") == "kubernetes.io/tls"}
    assert secrets == {"datastorage-tls", "gateway-tls", "kubernautagent-tls", "fleetmetadatacache-tls",
                       "apifrontend-tls", "dex-tls", "keycloak-tls", "datastorage-signing"}
    job = _find(rendered, "Job", "e2e-migrations")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in job["env"]}
    assert env["DB_USER"]["valueFrom"]["secretKeyRef"] == {"name": "postgresql-secret", "key": "POSTGRES_USER"}
    assert env["DB_HOST"]["value"] == "postgresql" and job["image"] == "docker.io/library/postgres:16-alpine"


def test_render_task_writes_the_folder_and_refuses_a_file(tmp_path: Path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "invoke", "e2e.render", "--out", str(out), "--source-dir",
                             str(KUBERNAUT_FIXTURE)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (out / "00-kind-config.yaml").is_file() and len(list(out.iterdir())) == 11  # the kind config + 10 components
    blocker = tmp_path / "file"
    blocker.write_text("x")
    refused = subprocess.run([sys.executable, "-m", "invoke", "e2e.render", "--out", str(blocker), "--source-dir",
                              str(KUBERNAUT_FIXTURE)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and f"--out {blocker}: exists and is not a folder" in refused.stderr
