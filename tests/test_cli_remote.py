"""The tasks with `--host`, over a real sshd on 127.0.0.1 (tests/sshd.py).

"The host" is this machine reached over SSH: its sessions get tests/bin (the stand-in kind) on
their PATH, the podman store and kind state of the test, and a state home of their own. The
product runs with a HOME whose ~/.ssh holds the client key and known_hosts (keys only, never a
password), without the stand-in kind on its PATH and with an empty podman store of its own: so
every podman and kind command can only have worked on the host. The API server is the stand-in
`kubeapi` (reached through the SSH tunnel the run opens to the address the host's kubeconfig
names), the stack's host ports are the stand-in kind's port publishers (reached through tunnels).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import MIGRATION_LOG, ROOT, Project
from tests.kindstate import BIN_DIR, clusters, read_calls, set_behaviour
from tests.kubeapi import JobSucceeds, KubeAPI, Ready
from tests.sshd import SSHServer, free_port, start_sshd

FAKE_SUITE = ROOT / "tests" / "bin" / "fake-go-suite"
NS = "kubernaut-system"


@dataclass
class Host:
    """One sshd standing in for a remote host, and where its side keeps things."""

    server: SSHServer
    state_home: Path  # the remote user's XDG_STATE_HOME
    kind_state: Path
    storage_conf: str  # the podman store its commands use

    @property
    def label(self) -> str:
        return f"{self.server.user}@127.0.0.1:{self.server.port}"

    def folder(self, cluster: str) -> Path:
        return self.state_home / "kubernaut-e2e" / cluster

    def podman(self, *args: str, conf: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CONTAINERS_CONF": conf, "CONTAINERS_STORAGE_CONF": self.storage_conf}
        return subprocess.run(["podman", *args], env=env, capture_output=True, text=True)


@dataclass
class Remote:
    """The product's side: a local environment that reaches hosts only over SSH."""

    project: Project
    env: dict[str, str]
    home: Path
    hosts: list[Host] = field(default_factory=list)

    @property
    def cluster(self) -> str:
        return self.project.env["INVOKE_E2E_CLUSTER_NAME"]

    def run(self, *args: str, hosts: list[Host] | None = None, extra_env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        flags = [f"--host={h.label}" for h in (self.hosts if hosts is None else hosts)]
        return subprocess.run([sys.executable, "-m", "invoke", *args, *flags], cwd=ROOT,
                              env={**self.env, **(extra_env or {})}, capture_output=True, text=True, timeout=timeout)

    def popen(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        flags = [f"--host={h.label}" for h in self.hosts]
        return subprocess.Popen([sys.executable, "-m", "invoke", *args, *flags], cwd=ROOT,
                                env={**self.env, **(extra_env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def local_state(self, host: Host) -> Path:
        """The run state this machine keeps for the host (per host: <state_dir>/hosts/<host>)."""
        return self.project.state / "hosts" / host.label.replace(":", "-")

    def timings(self, host: Host) -> dict:
        runs = sorted((self.local_state(host) / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
        return json.loads((runs[-1] / "timings.json").read_text())


@pytest.fixture
def remote(project: Project, tmp_path: Path, containers_conf: Path) -> Iterator[Remote]:
    """The local side; `add_host` starts an sshd per host (see the module's docstring)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    env = {k: v for k, v in project.env.items() if not k.startswith("KIND_")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != BIN_DIR)
    empty = tmp_path / "local-store"
    (tmp_path / "local-storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{empty / "run"}"\ngraphroot = "{empty / "graph"}"\n')
    env.update({"HOME": str(home), "CONTAINERS_STORAGE_CONF": str(tmp_path / "local-storage.conf")})
    assert shutil.which("kind", path=env["PATH"]) is None
    with ExitStack() as stack:
        world = Remote(project, env, home)

        def add_host(name: str, *, kind_state: Path | None = None, storage_conf: str | None = None,
                     path: str | None = None, **remote_env: str) -> Host:
            kind_state = kind_state or project.kind_state
            kind_state.mkdir(parents=True, exist_ok=True)
            store = storage_conf or project.env["CONTAINERS_STORAGE_CONF"]
            # A HOME of its own: the remote user's shell reads no rc files (this machine's root
            # ~/.bashrc runs `pyenv init`, 150 ms for every command; bench/remote_overhead.py).
            (tmp_path / f"{name}-home").mkdir()
            session = {"KIND_STANDIN_STATE": str(kind_state), "CONTAINERS_CONF": str(containers_conf),
                       "CONTAINERS_STORAGE_CONF": store, "XDG_STATE_HOME": str(tmp_path / f"{name}-state"),
                       "HOME": str(tmp_path / f"{name}-home"), "KIND_STANDIN_PUBLISH_PORTS": "1", **remote_env}
            server = stack.enter_context(start_sshd(tmp_path / f"{name}-sshd", env=session, path=path))
            key = home / ".ssh" / f"id_{name}"
            shutil.copy(server.client_key, key)
            key.chmod(0o600)
            with (home / ".ssh" / "config").open("a") as fh:  # how a user names their key: ~/.ssh/config
                fh.write(f"Host 127.0.0.1\n  IdentityFile {key}\n")
            with (home / ".ssh" / "known_hosts").open("a") as fh:
                fh.write(server.known_hosts.read_text())
            host = Host(server, tmp_path / f"{name}-state", kind_state, store)
            world.hosts.append(host)
            return host

        world.add_host = add_host  # type: ignore[attr-defined]
        yield world
        for host in world.hosts:  # never leave a cluster (its port publishers) behind
            subprocess.run([str(BIN_DIR / "kind"), "delete", "clusters", "--all"],
                           env={**project.env, "KIND_STANDIN_STATE": str(host.kind_state),
                                "KIND_EXPERIMENTAL_PROVIDER": "podman"}, capture_output=True)


def _steps(timings: dict) -> dict[str, dict]:
    return {s["name"]: s for s in timings["steps"]}


def _argv_of(calls: list[dict], *words: str) -> list[list[str]]:
    return [c["argv"] for c in calls if c["argv"][: len(words)] == list(words)]


def test_up_only_images_builds_on_the_host_from_the_synced_tree(remote: Remote):
    host = remote.add_host("a")  # type: ignore[attr-defined]
    result = remote.run("e2e.up", "--only", "images")
    assert result.returncode == 0, result.stdout + result.stderr
    project, cluster = remote.project, remote.cluster

    # Built by the host's podman, into its store (the local store is empty and has no kind).
    for ref in project.images.values():
        assert project.image_exists(ref), ref
    folder = host.folder(cluster)
    assert (folder / "source" / "go.mod").read_bytes() == (project.source / "go.mod").read_bytes()
    assert (folder / "dockerfiles" / "gateway.Dockerfile").is_file()
    # Every path the commands got is the host's.
    calls = [c for c in read_calls(host.kind_state)]
    create = _argv_of(calls, "create", "cluster")[0]
    assert create[create.index("--config") + 1] == str(folder / "state" / cluster / "kind-config.yaml")
    assert create[create.index("--kubeconfig") + 1] == str(folder / "state" / cluster / "kubeconfig")
    archives = {Path(argv[2]) for argv in _argv_of(calls, "load", "image-archive")}
    assert archives and all(folder / "state" / cluster / "archives" in a.parents for a in archives)
    assert not any(a.exists() for a in archives)  # deleted on the host once loaded
    kind_config = yaml.safe_load((folder / "state" / cluster / "kind-config.yaml").read_text())
    mount = kind_config["nodes"][0]["extraMounts"][0]["hostPath"]
    assert mount == str(folder / "source" / "coverdata")  # relative mounts are in the host's tree
    published = {m["hostPort"] for m in kind_config["nodes"][0]["extraPortMappings"]}
    assert published == set(project.host_ports.values())
    # The local kubeconfig reaches the host's API server through a tunnel, not directly.
    local = remote.local_state(host)
    remote_server = yaml.safe_load((folder / "state" / cluster / "kubeconfig").read_text())["clusters"][0]
    local_server = yaml.safe_load((local / "state" / cluster / "kubeconfig").read_text())["clusters"][0]
    assert urlsplit(local_server["cluster"]["server"]).port != urlsplit(remote_server["cluster"]["server"]).port
    assert f"kubeconfig for host {host.label}: {local / 'state' / cluster / 'kubeconfig'}" in result.stdout
    steps = _steps(remote.timings(host))
    assert steps["sync-source"]["note"].startswith("full copy")
    assert steps["build-gateway"]["start"] >= steps["sync-source"]["end"]  # the builds need the tree
    # The host's logs name the host.
    build_log = next((local / "runs").iterdir()) / "build-gateway.log"
    assert f"[{host.label}] podman build" in build_log.read_text()

    # Again: nothing changed, nothing sent, nothing rebuilt.
    again = remote.run("e2e.up", "--only", "images")
    assert again.returncode == 0, again.stdout + again.stderr
    steps = _steps(remote.timings(host))
    assert steps["sync-source"]["note"] == "reused: nothing changed, nothing sent"
    assert steps["build-gateway"]["note"].startswith("reused")

    # One file changed: only it is sent, and the images that read it are rebuilt.
    (project.source / "cmd" / "gateway" / "main.go").write_text("package main\n// changed\n")
    third = remote.run("e2e.up", "--only", "images")
    assert third.returncode == 0, third.stdout + third.stderr
    steps = _steps(remote.timings(host))
    assert steps["sync-source"]["note"].startswith("1 changed entry: ")
    assert not steps["build-gateway"].get("note", "").startswith("reused")
    assert (folder / "source" / "cmd" / "gateway" / "main.go").read_text() == "package main\n// changed\n"


def test_full_environment_on_a_host_through_tunnels(remote: Remote, kubeapi, tmp_path: Path):
    """ci --keep (up, the suite here, clean skipped), then diagnose, test, tunnel and clean with --host."""
    kubeapi.script("gateway", Ready(after=0.3))
    kubeapi.script_job("e2e-migrations", JobSucceeds(after=0.2, log=MIGRATION_LOG))
    host = remote.add_host("a", KIND_STANDIN_API_SERVER=kubeapi.url)  # type: ignore[attr-defined]
    project, cluster = remote.project, remote.cluster
    # The frozen stand-in API server cannot mint tokens, so ci's smoke hops are left out here;
    # test_real_smoke walks them against a real control plane.
    suite_env = {"INVOKE_E2E_TEST_COMMAND": str(FAKE_SUITE), "FAKE_SUITE_SCENARIO": "pass",
                 "FAKE_SUITE_ENV_OUT": str(tmp_path / "suite-env.json"),
                 "INVOKE_E2E_STACK": str(project.stack.parent / "no-smoke.yaml")}
    result = remote.run("e2e.ci", "--keep", extra_env=suite_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED" in result.stdout

    deployments = {d["metadata"]["name"] for d in kubeapi.objects("deployments", NS)}
    assert deployments == {"postgresql", "redis", "datastorage", "gateway"}
    timings = remote.timings(host)
    assert all(c["passed"] for c in timings["checklist"]), timings["checklist"]
    # Health went through the tunnels: local ports that are not the host's ports.
    local = remote.local_state(host)
    tunnel_ports = json.loads((local / "state" / cluster / "tunnels.json").read_text())["ports"]
    health_log = (Path(timings["run_dir"]) / "health.log").read_text()
    gateway_port = tunnel_ports["gateway-health"]
    assert gateway_port != project.host_ports["gateway-health"]
    assert f"127.0.0.1:{gateway_port}" in health_log
    assert f"127.0.0.1:{project.host_ports['gateway-health']}" not in health_log
    # The suite ran here, against the tunnels.
    seen = json.loads((tmp_path / "suite-env.json").read_text())
    assert seen["GATEWAY_URL"] == f"http://127.0.0.1:{tunnel_ports['gateway-api']}"
    assert seen["KUBECONFIG"] == str(local / "state" / cluster / "kubeconfig")
    kubeconfig = yaml.safe_load(Path(seen["KUBECONFIG"]).read_text())
    api_port = urlsplit(kubeconfig["clusters"][0]["cluster"]["server"]).port
    assert api_port == tunnel_ports["api-server"] != urlsplit(kubeapi.url).port

    diagnosed = remote.run("e2e.diagnose", "--out", str(tmp_path / "bundle"))
    assert diagnosed.returncode == 0, diagnosed.stdout + diagnosed.stderr
    assert f"cluster {cluster}" in diagnosed.stdout and "no problems found" in diagnosed.stdout
    assert (tmp_path / "bundle" / "findings.json").is_file()
    # `kind export logs` ran on the host; its files were brought back (and the host's scratch removed).
    assert _argv_of(read_calls(host.kind_state), "export", "logs")
    assert (tmp_path / "bundle" / "kind-logs").is_dir()
    assert not list(host.folder(cluster).glob("collect-*"))

    tested = remote.run("e2e.test", extra_env=suite_env)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "tests: 4 passed" in tested.stdout

    # e2e.tunnel re-opens the tunnels on the same local ports, until Ctrl-C.
    proc = remote.popen("e2e.tunnel")
    try:
        lines = []
        deadline = time.monotonic() + 60
        while not any(line.strip().startswith("export KUBECONFIG=") for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            lines.append(proc.stdout.readline())  # type: ignore[union-attr]
        assert f"127.0.0.1:{tunnel_ports['gateway-health']}" in "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway_port}/health", timeout=10) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/version", timeout=10) as resp:
            assert resp.status == 200  # the API server, through the re-opened tunnel
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(lines) + rest
    assert "tunnels closed" in rest
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{gateway_port}/health", timeout=5)

    cleaned = remote.run("e2e.clean")
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert f"removed kind cluster {cluster}" in cleaned.stdout
    assert f"removed folder {host.folder(cluster)} on {host.label}" in cleaned.stdout
    assert cluster not in clusters(host.kind_state)
    assert not host.folder(cluster).exists()
    assert not any(project.image_exists(ref) for ref in project.images.values())
    assert not (local / "state" / cluster).exists()
    again = remote.run("e2e.clean")
    assert again.returncode == 0 and f"nothing to remove for cluster {cluster!r}" in again.stdout


def test_ctrl_c_over_ssh_leaves_no_process_on_the_host(remote: Remote):
    host = remote.add_host("a")  # type: ignore[attr-defined]
    set_behaviour(host.kind_state, delay={"create cluster": 120})
    proc = remote.popen("e2e.up", "--only", "cluster")
    try:
        deadline = time.monotonic() + 60
        while not any(c["argv"][:2] == ["create", "cluster"]
                      for c in read_calls(host.kind_state, include_started=True)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()  # type: ignore[union-attr]
            time.sleep(0.1)
        started = [c["pid"] for c in read_calls(host.kind_state, include_started=True) if c.get("event") == "start"]
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert took < 10, took
    assert "interrupted" in out
    deadline = time.monotonic() + 10
    alive = started
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in started if Path(f"/proc/{pid}").exists()
                 and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]]
        time.sleep(0.1)
    assert not alive, f"kind processes still running on the host: {alive}"


def test_two_hosts_run_concurrently_and_report_separately(remote: Remote, tmp_path: Path, containers_conf: Path):
    """Each host its own podman store, kind state and API server: the same machine, two independent
    "hosts". Their host ports would collide on one machine, so nothing is published here."""
    with ExitStack() as stack:
        hosts = []
        for name in ("a", "b"):
            api = KubeAPI().start()
            stack.callback(api.stop)
            root = tmp_path / f"{name}-store"
            conf = tmp_path / f"{name}-storage.conf"
            conf.write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{root / "run"}"\ngraphroot = "{root / "graph"}"\n')
            host = remote.add_host(name, kind_state=tmp_path / f"{name}-kind",  # type: ignore[attr-defined]
                                   storage_conf=str(conf), KIND_STANDIN_PUBLISH_PORTS="0",
                                   KIND_STANDIN_API_SERVER=api.url)
            set_behaviour(host.kind_state, delay={"create cluster": 2.0})
            hosts.append(host)
        only = ["--only", "load-gateway", "--only", "load-datastorage"]
        result = remote.run("e2e.up", *only)
        assert result.returncode == 0, result.stdout + result.stderr
        cluster = remote.cluster
        for host in hosts:
            assert f"[{host.label}] " in result.stdout
            assert f"up on host {host.label}" in result.stdout
            ref = remote.project.images["gateway"]
            assert host.podman("image", "exists", ref, conf=str(containers_conf)).returncode == 0
            assert cluster in clusters(host.kind_state)
            assert all(s["status"] == "done" for s in remote.timings(host)["steps"])
        assert "2/2 host(s) passed; exit 0" in result.stdout
        # The hosts worked at the same time: their cluster creations overlap.
        creates = [next(c for c in read_calls(h.kind_state) if c["argv"][:2] == ["create", "cluster"])
                   for h in hosts]
        assert creates[0]["start"] < creates[1]["end"] and creates[1]["start"] < creates[0]["end"], creates

        # One host failing: its table says so, the other passes, one overall exit status.
        set_behaviour(hosts[1].kind_state, fail={"load image-archive": {"exit": 1, "message": "ERROR: boom\n"}})
        mixed = remote.run("e2e.up", "--recreate", *only)
        assert mixed.returncode == 1, mixed.stdout + mixed.stderr
        first, second = mixed.stdout.split(f"up on host {hosts[0].label}")[1].split(f"up on host {hosts[1].label}")
        assert "passed (exit 0)" in first and "FAILED (exit 1)" in second
        assert "1/2 host(s) passed; exit 1" in mixed.stdout
        set_behaviour(hosts[1].kind_state)

        # diagnose and clean work across the same set.
        report = remote.run("e2e.diagnose", "--json")
        assert report.returncode == 0, report.stdout + report.stderr
        documents = json.loads(report.stdout)["hosts"]
        assert set(documents) == {h.label for h in hosts}
        assert all(doc["source"] == f"cluster {cluster}" for doc in documents.values())
        plain = remote.run("e2e.diagnose")
        assert plain.returncode == 0, plain.stdout + plain.stderr
        for host in hosts:
            assert f"[{host.label}] diagnose cluster {cluster}" in plain.stdout
            assert f"diagnose on host {host.label}" in plain.stdout
        cleaned = remote.run("e2e.clean")
        assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
        for host in hosts:
            assert f"[{host.label}] removed kind cluster {cluster}" in cleaned.stdout
            assert cluster not in clusters(host.kind_state) and not host.folder(cluster).exists()


def test_toolchain_checks_the_hosts_tools(remote: Remote):
    remote.add_host("a")  # type: ignore[attr-defined]
    result = remote.run("e2e.toolchain", "--json")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    doc = json.loads(result.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["kind"]["status"] == "ok" and "0.32.0" in checks["kind"]["detail"]  # the host's stand-in kind
    assert doc["facts"]["provider"] == "podman" and doc["facts"]["host_os"] == "Linux"


def test_a_host_that_cannot_serve_is_one_line_each_and_nothing_starts(remote: Remote):
    good = remote.add_host("good")  # type: ignore[attr-defined]
    bad = remote.add_host("nokind", path="/usr/local/bin:/usr/bin:/bin")  # type: ignore[attr-defined]
    result = remote.run("e2e.up")
    assert result.returncode == 2, result.stdout + result.stderr
    message = result.stderr.strip()
    assert f"host {bad.label}: kind is not on the PATH" in message
    assert good.label not in message
    assert not good.folder(remote.cluster).exists() and not bad.folder(remote.cluster).exists()
    assert read_calls(good.kind_state) == []

    unreachable = f"root@127.0.0.1:{free_port()}"
    result = remote.run("e2e.clean", f"--host={unreachable}", hosts=[])
    assert result.returncode == 2 and f"host {unreachable}: cannot connect" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("where, value, message", [
    ("flag", "root@bad host", "e2e.up: config e2e.host (from --host): 'root@bad host': contains whitespace"),
    ("env", "a,a", "config e2e.host (from INVOKE_E2E_HOST): 'a' is given twice"),
])
def test_a_bad_host_value_is_a_config_error_naming_its_source(remote: Remote, where: str, value: str, message: str):
    if where == "flag":
        result = remote.run("e2e.up", f"--host={value}", hosts=[])
    else:
        result = remote.run("e2e.up", hosts=[], extra_env={"INVOKE_E2E_HOST": value})
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_tunnel_needs_a_host(remote: Remote):
    result = remote.run("e2e.tunnel", hosts=[])
    assert result.returncode == 2 and "--host [USER@]HOST[:PORT] is required" in result.stderr
