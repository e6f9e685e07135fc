"""Tests of the stand-in `kind` executable itself (tests/bin/kind).

Every test runs the stand-in as a real subprocess, the way the product does,
with the environment from `standin_env`.
"""
from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kindstate import KIND_STANDIN, clusters, interrupted_create, read_calls, set_behaviour, standin_env


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "kind-state"


@pytest.fixture
def env(state: Path) -> dict[str, str]:
    return standin_env(state)


def kind(env: dict[str, str], *args: str, cwd: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `kind ARGS...` resolved through PATH, as the product would."""
    return subprocess.run(
        ["kind", *args], env=env, cwd=cwd, input=input, capture_output=True, text=True, timeout=30
    )


def docker_archive(path: Path, repo_tags: list[str] | None) -> Path:
    """Write a minimal docker-archive (the `podman save` default format)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as inner:
        data = b"hello\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        inner.addfile(info, io.BytesIO(data))
    manifest = json.dumps([{"Config": "config.json", "RepoTags": repo_tags, "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(path, "w") as archive:
        for name, payload in (("config.json", config), ("layer.tar", layer.getvalue()), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return path


def write_config(path: Path, nodes: list[dict[str, Any]] | None = None, **extra: Any) -> Path:
    config: dict[str, Any] = {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", **extra}
    if nodes is not None:
        config["nodes"] = nodes
    path.write_text(yaml.safe_dump(config))
    return path


# ----------------------------------------------------------------------------- basics


def test_standin_env_puts_standin_first_on_path(env: dict[str, str], state: Path) -> None:
    assert env["PATH"].split(os.pathsep)[0] == str(KIND_STANDIN.parent)
    assert env["KIND_STANDIN_STATE"] == str(state.resolve())
    assert "KUBECONFIG" not in env
    assert standin_env(state, api_server="http://127.0.0.1:1234")["KIND_STANDIN_API_SERVER"] == "http://127.0.0.1:1234"
    assert os.access(KIND_STANDIN, os.X_OK)


def test_version(env: dict[str, str]) -> None:
    result = kind(env, "version")
    assert result.returncode == 0
    assert result.stdout.startswith("kind v0.32.0 go1.26.2 linux/")
    assert result.stdout.strip().split("/")[-1] in ("amd64", "arm64")
    # like kind, -q reduces it to the bare semver
    assert kind(env, "version", "-q").stdout == "0.32.0\n"


def test_state_dir_is_required(env: dict[str, str]) -> None:
    del env["KIND_STANDIN_STATE"]
    result = kind(env, "get", "clusters")
    assert result.returncode == 1
    assert result.stderr == "ERROR: KIND_STANDIN_STATE is not set (stand-in kind)\n"


def test_unknown_command_flag_and_missing_argument(env: dict[str, str]) -> None:
    result = kind(env, "frobnicate")
    assert result.returncode == 1
    assert result.stderr.startswith('ERROR: unknown command "frobnicate" for "kind"')

    result = kind(env, "create", "cluster", "--foo")
    assert result.returncode == 1
    assert result.stderr == "ERROR: unknown flag: --foo\n"

    result = kind(env, "load", "image-archive")
    assert result.returncode == 1
    assert result.stderr == "ERROR: name of image archive is required\n"

    result = kind(env, "create", "cluster", "--name")
    assert result.returncode == 1
    assert result.stderr == "ERROR: flag needs an argument: --name\n"

    result = kind(env, "create", "cluster", "--wait", "soon")
    assert result.returncode == 1
    assert 'invalid argument "soon" for "--wait" flag' in result.stderr

    result = kind(env, "get")  # group command without subcommand: help + error
    assert result.returncode == 1
    assert "Usage:" in result.stdout
    assert result.stderr == "ERROR: Subcommand is required\n"
    assert clusters(env["KIND_STANDIN_STATE"]) == {}


def test_global_flags_are_accepted_anywhere(env: dict[str, str]) -> None:
    assert kind(env, "-v", "3", "get", "clusters").returncode == 0
    assert kind(env, "get", "clusters", "--verbosity=1").returncode == 0
    quiet = kind(env, "--quiet", "get", "kubeconfig", "--name", "absent")
    assert quiet.returncode == 1
    assert quiet.stderr == ""  # -q silences all of stderr, ERROR included


# ----------------------------------------------------------------------------- create


def test_create_default_cluster_writes_state_and_kubeconfig(env: dict[str, str], state: Path, tmp_path: Path) -> None:
    result = kind(env, "create", "cluster", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == 'Creating cluster "kind" ...'
    for expected in (
        " ✓ Ensuring node image (kindest/node:v1.36.1) 🖼",
        " ✓ Writing configuration 📜",
        " ✓ Starting control-plane 🕹️",
        " ✓ Installing CNI 🔌",
        " ✓ Installing StorageClass 💾",
        'Set kubectl context to "kind-kind"',
        "You can now use your cluster with:",
        "kubectl cluster-info --context kind-kind",
    ):
        assert expected in lines, expected
    assert not any("Joining worker nodes" in line for line in lines)
    assert not any("Waiting" in line for line in lines)  # no --wait given

    record = clusters(state)["kind"]
    assert record["nodes"] == ["kind-control-plane"]
    assert record["images"] == []
    assert record["config"] is None
    assert record["provider"] == "docker"
    home_kubeconfig = state / "home-kube-config"
    assert record["kubeconfig"] == str(home_kubeconfig)
    assert stat.S_IMODE(home_kubeconfig.stat().st_mode) == 0o600

    kubeconfig = yaml.safe_load(home_kubeconfig.read_text())
    assert kubeconfig["apiVersion"] == "v1"
    assert kubeconfig["kind"] == "Config"
    assert kubeconfig["current-context"] == "kind-kind"
    assert kubeconfig["clusters"] == [
        {"name": "kind-kind", "cluster": {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}}
    ]
    assert kubeconfig["contexts"] == [{"name": "kind-kind", "context": {"cluster": "kind-kind", "user": "kind-kind"}}]
    assert kubeconfig["users"] == [{"name": "kind-kind", "user": {"token": "kind-standin-token"}}]


def test_create_from_config_with_workers_kubeconfig_flag_and_wait(state: Path, tmp_path: Path) -> None:
    env = standin_env(state, api_server="http://127.0.0.1:18080")
    config = write_config(tmp_path / "kind-config.yaml", [{"role": "control-plane"}, {"role": "worker"}])
    kubeconfig = tmp_path / "nested" / "dir" / "kubeconfig"
    result = kind(
        env, "create", "cluster", "--name", "gw-e2e", "--config", str(config),
        "--kubeconfig", str(kubeconfig), "--wait", "5m",
    )
    assert result.returncode == 0, result.stderr
    assert " ✓ Preparing nodes 📦 📦 " in result.stderr.splitlines()
    assert " ✓ Joining worker nodes 🚜" in result.stderr.splitlines()
    assert " ✓ Waiting ≤ 5m0s for control-plane = Ready ⏳" in result.stderr.splitlines()
    assert " • Ready after 0s 💚" in result.stderr.splitlines()
    assert f"kubectl cluster-info --context kind-gw-e2e --kubeconfig {kubeconfig}" in result.stderr

    record = clusters(state)["gw-e2e"]
    assert record["nodes"] == ["gw-e2e-control-plane", "gw-e2e-worker"]
    assert record["config"] == str(config)
    assert record["kubeconfig"] == str(kubeconfig)
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    written = yaml.safe_load(kubeconfig.read_text())
    # plain http: no insecure-skip-tls-verify
    assert written["clusters"][0]["cluster"] == {"server": "http://127.0.0.1:18080"}
    assert not (state / "home-kube-config").exists()

    nodes = kind(env, "get", "nodes", "--name", "gw-e2e")
    assert nodes.stdout.splitlines() == ["gw-e2e-control-plane", "gw-e2e-worker"]
    printed = kind(env, "get", "kubeconfig", "--name", "gw-e2e")
    assert printed.returncode == 0
    assert yaml.safe_load(printed.stdout) == written


def test_create_merges_into_existing_kubeconfig_env(env: dict[str, str], tmp_path: Path) -> None:
    kubeconfig = tmp_path / "existing-config"
    other = {
        "apiVersion": "v1", "kind": "Config", "current-context": "other",
        "clusters": [{"name": "other", "cluster": {"server": "https://10.0.0.1"}}],
        "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}}],
        "users": [{"name": "other", "user": {"token": "x"}}],
    }
    kubeconfig.write_text(yaml.safe_dump(other))
    env["KUBECONFIG"] = str(kubeconfig)
    assert kind(env, "create", "cluster", "--name", "one").returncode == 0
    merged = yaml.safe_load(kubeconfig.read_text())
    assert [c["name"] for c in merged["clusters"]] == ["other", "kind-one"]
    assert merged["current-context"] == "kind-one"

    # delete removes only the kind entries and keeps the file
    result = kind(env, "delete", "cluster", "--name", "one")
    assert result.returncode == 0
    remaining = yaml.safe_load(kubeconfig.read_text())
    assert [c["name"] for c in remaining["clusters"]] == ["other"]
    assert [c["name"] for c in remaining["users"]] == ["other"]


def test_never_writes_the_real_home_kubeconfig(env: dict[str, str], state: Path, tmp_path: Path) -> None:
    # even when $KUBECONFIG names ~/.kube/config (HOME redirected for safety)
    home = tmp_path / "home"
    env["HOME"] = str(home)
    env["KUBECONFIG"] = str(home / ".kube" / "config")
    assert kind(env, "create", "cluster").returncode == 0
    assert not (home / ".kube" / "config").exists()
    assert clusters(state)["kind"]["kubeconfig"] == str(state / "home-kube-config")
    assert (state / "home-kube-config").is_file()


def test_create_twice_fails(env: dict[str, str], state: Path) -> None:
    assert kind(env, "create", "cluster", "--name", "dup").returncode == 0
    again = kind(env, "create", "cluster", "--name", "dup")
    assert again.returncode == 1
    assert again.stderr == 'ERROR: failed to create cluster: node(s) already exist for a cluster with the name "dup"\n'
    assert list(clusters(state)) == ["dup"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha3\n", "unknown apiVersion: kind.x-k8s.io/v1alpha3"),
        ("kind: Pod\napiVersion: kind.x-k8s.io/v1alpha4\n", "unknown kind Pod for apiVersion: kind.x-k8s.io/v1alpha4"),
        ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  rol: worker\n",
         "line 5: field rol not found in type v1alpha4.Node"),
        ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: worker\n",
         "must have at least one control-plane node"),
        ("kind: [unclosed\n", "could not determine kind / apiVersion for config"),
    ],
)
def test_create_rejects_bad_config(env: dict[str, str], state: Path, tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    result = kind(env, "create", "cluster", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR: failed to create cluster: ")
    assert message in result.stderr
    assert clusters(state) == {}


def test_create_rejects_missing_config_and_bad_name(env: dict[str, str], state: Path, tmp_path: Path) -> None:
    missing = kind(env, "create", "cluster", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1
    assert "ERROR: failed to create cluster: error reading file" in missing.stderr
    assert "no such file or directory" in missing.stderr

    bad = kind(env, "create", "cluster", "--name", "Bad_Name")
    assert bad.returncode == 1
    assert bad.stderr.startswith(
        "ERROR: failed to create cluster: 'Bad_Name' is not a valid cluster name, cluster names must match"
    )
    assert clusters(state) == {}


def test_cluster_name_from_env_and_config(env: dict[str, str], state: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "named.yaml", name="from-config")
    assert kind(env, "create", "cluster", "--config", str(config)).returncode == 0
    env["KIND_CLUSTER_NAME"] = "from-env"
    assert kind(env, "create", "cluster", "--config", str(config)).returncode == 0
    assert sorted(clusters(state)) == ["from-config", "from-env"]
    assert kind(env, "get", "nodes").stdout == "from-env-control-plane\n"


# ----------------------------------------------------------------------------- get / delete


def test_get_clusters_empty_then_sorted(env: dict[str, str]) -> None:
    empty = kind(env, "get", "clusters")
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "No kind clusters found.\n")
    for name in ("zeta", "alpha"):
        assert kind(env, "create", "cluster", "--name", name).returncode == 0
    listed = kind(env, "get", "clusters")
    assert (listed.returncode, listed.stdout) == (0, "alpha\nzeta\n")


def test_get_nodes_and_kubeconfig_of_missing_cluster(env: dict[str, str]) -> None:
    nodes = kind(env, "get", "nodes", "--name", "ghost")
    assert (nodes.returncode, nodes.stdout, nodes.stderr) == (0, "", 'No kind nodes found for cluster "ghost".\n')
    config = kind(env, "get", "kubeconfig", "--name", "ghost")
    assert config.returncode == 1
    assert config.stderr == (
        "ERROR: could not locate any control plane nodes for cluster named 'ghost'. "
        "Use the --name option to select a different cluster\n"
    )


def test_delete_is_idempotent_and_cleans_kubeconfig(env: dict[str, str], state: Path, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    config = write_config(tmp_path / "c.yaml", [{"role": "control-plane"}, {"role": "worker"}])
    assert kind(env, "create", "cluster", "--name", "gone", "--config", str(config), "--kubeconfig", str(kubeconfig)).returncode == 0

    first = kind(env, "delete", "cluster", "--name", "gone", "--kubeconfig", str(kubeconfig))
    assert first.returncode == 0
    assert first.stderr == 'Deleting cluster "gone" ...\nDeleted nodes: ["gone-control-plane" "gone-worker"]\n'
    assert clusters(state) == {}
    assert not kubeconfig.exists()  # nothing but kind-gone was in it

    second = kind(env, "delete", "cluster", "--name", "gone", "--kubeconfig", str(kubeconfig))
    assert (second.returncode, second.stderr) == (0, 'Deleting cluster "gone" ...\n')


def test_provider_scopes_clusters_like_real_kind(env: dict[str, str], state: Path) -> None:
    podman = dict(env, KIND_EXPERIMENTAL_PROVIDER="podman")
    created = kind(podman, "create", "cluster", "--name", "pod")
    assert created.returncode == 0
    assert created.stderr.splitlines()[:3] == [
        "using podman due to KIND_EXPERIMENTAL_PROVIDER",
        "enabling experimental podman provider",
        'Creating cluster "pod" ...',
    ]
    assert clusters(state)["pod"]["provider"] == "podman"
    # without the provider variable kind talks to docker, which has no such cluster
    assert kind(env, "get", "clusters").stdout == ""
    assert kind(podman, "get", "clusters").stdout == "pod\n"


# ----------------------------------------------------------------------------- load image-archive


def test_load_docker_archive_records_repo_tags(env: dict[str, str], state: Path, tmp_path: Path) -> None:
    assert kind(env, "create", "cluster", "--name", "img").returncode == 0
    archive = docker_archive(tmp_path / "gateway.tar", ["localhost/kubernaut-gateway:e2e", "quay.io/x/y:1"])
    result = kind(env, "load", "image-archive", str(archive), "--name", "img")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert clusters(state)["img"]["images"] == ["localhost/kubernaut-gateway:e2e", "quay.io/x/y:1"]

    # loading again does not duplicate
    assert kind(env, "load", "image-archive", str(archive), "--name", "img").returncode == 0
    assert clusters(state)["img"]["images"] == ["localhost/kubernaut-gateway:e2e", "quay.io/x/y:1"]


def test_load_oci_archive(env: dict[str, str], state: Path, tmp_path: Path) -> None:
    assert kind(env, "create", "cluster").returncode == 0
    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "0" * 64,
                       "size": 1, "annotations": {"org.opencontainers.image.ref.name": "localhost/app:oci"}}],
    }).encode()
    archive = tmp_path / "oci.tar"
    with tarfile.open(archive, "w") as tar:
        for name, payload in (("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'), ("index.json", index)):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    assert kind(env, "load", "image-archive", str(archive)).returncode == 0
    assert clusters(state)["kind"]["images"] == ["localhost/app:oci"]


def test_load_rejects_non_image_archives(env: dict[str, str], state: Path, tmp_path: Path) -> None:
    assert kind(env, "create", "cluster").returncode == 0
    not_tar = tmp_path / "image.tar"
    not_tar.write_text("definitely not a tarball\n")
    result = kind(env, "load", "image-archive", str(not_tar))
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR: failed to load image: ")
    assert "not a tar archive" in result.stderr

    no_manifest = tmp_path / "plain.tar"
    with tarfile.open(no_manifest, "w") as tar:
        info = tarfile.TarInfo("readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    result = kind(env, "load", "image-archive", str(no_manifest))
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR: failed to load image: ")
    assert "no manifest.json" in result.stderr
    assert clusters(state)["kind"]["images"] == []


def test_load_missing_archive_or_cluster(env: dict[str, str], tmp_path: Path) -> None:
    archive = docker_archive(tmp_path / "a.tar", ["localhost/a:1"])
    no_cluster = kind(env, "load", "image-archive", str(archive), "--name", "nowhere")
    assert no_cluster.returncode == 1
    assert no_cluster.stderr == 'ERROR: no nodes found for cluster "nowhere"\n'

    assert kind(env, "create", "cluster").returncode == 0
    missing = kind(env, "load", "image-archive", str(tmp_path / "missing.tar"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("ERROR: failed to load image: ")
    assert missing.stderr.rstrip().endswith("no such file or directory")


def test_concurrent_loads_do_not_lose_images(env: dict[str, str], state: Path, tmp_path: Path) -> None:
    assert kind(env, "create", "cluster").returncode == 0
    archives = [docker_archive(tmp_path / f"i{n}.tar", [f"localhost/img{n}:t"]) for n in range(4)]
    procs = [
        subprocess.Popen(["kind", "load", "image-archive", str(a)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for a in archives
    ]
    assert [p.wait(timeout=30) for p in procs] == [0, 0, 0, 0]
    assert sorted(clusters(state)["kind"]["images"]) == [f"localhost/img{n}:t" for n in range(4)]


# ----------------------------------------------------------------------------- export logs


def test_export_logs(env: dict[str, str], tmp_path: Path) -> None:
    missing = kind(env, "export", "logs", str(tmp_path / "logs"), "--name", "nope")
    assert (missing.returncode, missing.stderr) == (1, 'ERROR: unknown cluster "nope"\n')

    config = write_config(tmp_path / "c.yaml", [{"role": "control-plane"}, {"role": "worker"}])
    assert kind(env, "create", "cluster", "--config", str(config)).returncode == 0
    out_dir = tmp_path / "logs"
    result = kind(env, "export", "logs", str(out_dir))
    assert result.returncode == 0
    assert result.stdout == f"{out_dir}\n"
    assert result.stderr == 'Exporting logs for cluster "kind" to:\n'
    assert (out_dir / "kind-version.txt").is_file()
    for node in ("kind-control-plane", "kind-worker"):
        assert (out_dir / node / "kubelet.log").is_file()
        assert (out_dir / node / "containerd.log").is_file()
        assert (out_dir / node / "pods").is_dir()


# ----------------------------------------------------------------------------- behaviour and call log


def test_delay_slows_create_before_state_is_written(env: dict[str, str], state: Path) -> None:
    set_behaviour(state, delay={"create cluster": 0.6})
    began = time.monotonic()
    result = kind(env, "create", "cluster")
    assert result.returncode == 0
    assert time.monotonic() - began >= 0.6
    call = read_calls(state)[-1]
    assert call["end"] - call["start"] >= 0.6


def test_killed_during_delay_leaves_started_call_and_no_cluster(env: dict[str, str], state: Path) -> None:
    set_behaviour(state, delay={"create cluster": 20})
    proc = subprocess.Popen(["kind", "create", "cluster"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # wait for the first progress line: the stand-in is now sleeping
    assert proc.stderr is not None
    assert proc.stderr.readline() == 'Creating cluster "kind" ...\n'
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM
    proc.stderr.close()
    assert proc.stdout is not None
    proc.stdout.close()

    assert read_calls(state) == []
    started = read_calls(state, include_started=True)
    assert [(c["event"], c["argv"], c["pid"]) for c in started] == [("start", ["create", "cluster"], proc.pid)]
    assert clusters(state) == {}


def test_fail_times_one_then_succeeds(env: dict[str, str], state: Path, tmp_path: Path) -> None:
    assert kind(env, "create", "cluster").returncode == 0
    archive = docker_archive(tmp_path / "a.tar", ["localhost/a:1"])
    message = "ERROR: failed to load image: injected flake"
    set_behaviour(state, fail={"load image-archive": {"exit": 3, "message": message, "times": 1}})

    first = kind(env, "load", "image-archive", str(archive))
    assert (first.returncode, first.stderr) == (3, message + "\n")
    assert clusters(state)["kind"]["images"] == []  # failed without acting

    second = kind(env, "load", "image-archive", str(archive))
    assert second.returncode == 0
    assert clusters(state)["kind"]["images"] == ["localhost/a:1"]
    assert json.loads((state / "behaviour.json").read_text())["fail"]["load image-archive"]["times"] == 0


def test_fail_without_times_always_fails(env: dict[str, str], state: Path) -> None:
    set_behaviour(state, fail={"get clusters": {"exit": 2, "message": "ERROR: boom"}})
    for _ in range(2):
        result = kind(env, "get", "clusters")
        assert (result.returncode, result.stderr) == (2, "ERROR: boom\n")
    set_behaviour(state)  # clears everything
    assert kind(env, "get", "clusters").returncode == 0


def test_calls_log_records_argv_provider_and_exit(env: dict[str, str], state: Path, tmp_path: Path) -> None:
    assert kind(env, "create", "cluster", "--name", "c1", cwd=tmp_path).returncode == 0
    podman = dict(env, KIND_EXPERIMENTAL_PROVIDER="podman")
    assert kind(podman, "delete", "cluster", "--name", "c1").returncode == 0
    assert kind(env, "nonsense").returncode == 1

    calls = read_calls(state)
    assert [(c["argv"], c["provider"], c["exit"]) for c in calls] == [
        (["create", "cluster", "--name", "c1"], None, 0),
        (["delete", "cluster", "--name", "c1"], "podman", 0),
        (["nonsense"], None, 1),
    ]
    assert calls[0]["cwd"] == str(tmp_path)
    assert all(c["start"] <= c["end"] for c in calls)
    assert all(isinstance(c["pid"], int) for c in calls)
    # the docker-provider cluster was invisible to the podman delete
    assert list(clusters(state)) == ["c1"]
    assert len(read_calls(state, include_started=True)) == 2 * len(calls)


def test_interrupted_create_leaves_a_listed_but_unusable_cluster(state: Path, env: dict[str, str], tmp_path: Path):
    kubeconfig = tmp_path / "kc"
    interrupted_create(state, "half", env, kubeconfig=kubeconfig)
    assert kind(env, "get", "clusters").stdout == "half\n"
    assert kind(env, "get", "nodes", "--name", "half").stdout == "half-control-plane\n"
    result = kind(env, "get", "kubeconfig", "--name", "half")
    assert result.returncode == 1
    assert result.stderr.startswith(
        'ERROR: failed to get cluster internal kubeconfig: command "docker exec --privileged half-control-plane '
        'cat /etc/kubernetes/admin.conf" failed with error: exit status 1\n')
    assert "cat: /etc/kubernetes/admin.conf: No such file or directory" in result.stderr
    assert not kubeconfig.exists()  # kind writes the kubeconfig only at the end
    again = kind(env, "create", "cluster", "--name", "half")
    assert again.returncode == 1 and 'node(s) already exist for a cluster with the name "half"' in again.stderr
    assert kind(env, "delete", "cluster", "--name", "half").returncode == 0
    assert clusters(state) == {}


def test_a_stall_that_ends_completes_the_create(state: Path, env: dict[str, str], tmp_path: Path):
    set_behaviour(state, stall={"create cluster": 0.2})
    assert kind(env, "create", "cluster", "--name", "slow", "--kubeconfig", str(tmp_path / "kc")).returncode == 0
    assert clusters(state)["slow"]["usable"] is True
    assert kind(env, "get", "kubeconfig", "--name", "slow").returncode == 0
