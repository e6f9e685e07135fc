"""A real OpenSSH server on 127.0.0.1 for the remote-host tests (see shared/notes/machine.md).

`start_sshd` runs `/usr/sbin/sshd -D` with a config of its own: a free loopback port, a
generated host key, a generated client key as the only authorized key, no PAM, no passwords.
The `sshd` fixture is one such server for the whole session, with tests/bin (the stand-in kind)
first on the PATH its sessions get. Import the fixture into a test module to use it. When sshd
is not installed the fixture fails with one line: .ci/run installs it, a skip would hide that.
"""
from __future__ import annotations

import getpass
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubernaut_e2e.hosts import HostSpec
from kubernaut_e2e.remote import SSHOptions

SSHD = Path("/usr/sbin/sshd")
TESTS_BIN = Path(__file__).resolve().parent / "bin"
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class SSHServer:
    """A running sshd and what a client needs to reach it."""

    port: int
    user: str
    client_key: Path  # authorized on this server
    known_hosts: Path  # holds this server's host key
    folder: Path
    process: subprocess.Popen[bytes]

    @property
    def spec(self) -> HostSpec:
        return HostSpec(host="127.0.0.1", user=self.user, port=self.port)

    def options(self, **changes: object) -> SSHOptions:
        """Client options for this server: its key, its known_hosts, nothing from ~/.ssh."""
        values: dict[str, object] = {"identity": self.client_key, "known_hosts": self.known_hosts,
                                     "connect_timeout": 5.0, "ssh_config": False}
        values.update(changes)
        return SSHOptions(**values)  # type: ignore[arg-type]

    def connect(self):  # type: ignore[no-untyped-def]
        from kubernaut_e2e.remote import open_connection

        return open_connection(self.spec, self.options())


def free_port() -> int:
    from tests.conftest import free_ports

    return free_ports(1)[0]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubernaut-e2e-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


@contextmanager
def start_sshd(folder: Path, *, path: str | None = None, env: Mapping[str, str] | None = None
               ) -> Iterator[SSHServer]:
    """Run an sshd on 127.0.0.1 until the block ends; its sessions get PATH `path` and `env`."""
    if not SSHD.exists():
        pytest.fail(f"{SSHD} is missing: .ci/run installs it (apt-get install openssh-server)", pytrace=False)
    folder.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation directory
    host_key = keygen(folder / "host_key")
    client_key = keygen(folder / "client_key")
    (folder / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
    port = free_port()
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {' '.join(host_key.with_suffix('.pub').read_text().split()[:2])}\n")
    session_env = {"PATH": path or f"{TESTS_BIN}:{STANDARD_PATH}", **(env or {})}
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        f"PidFile {folder / 'sshd.pid'}",
        "UsePAM no",
        "StrictModes no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        "LogLevel ERROR",
        "SetEnv " + " ".join(f'{key}="{value}"' for key, value in session_env.items()),
        "",
    ]))
    log = (folder / "sshd.log").open("wb")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited with {proc.returncode}: {(folder / 'sshd.log').read_text().strip()}",
                            pytrace=False)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"sshd did not listen on 127.0.0.1:{port} within 10s", pytrace=False)
                time.sleep(0.05)
        yield SSHServer(port=port, user=getpass.getuser(), client_key=client_key, known_hosts=known_hosts,
                        folder=folder, process=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """One sshd for the session; tests/bin (the stand-in kind) first on its sessions' PATH."""
    with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def ssh_connection(sshd: SSHServer):  # type: ignore[no-untyped-def]
    """An open Fabric Connection to the session's sshd, closed after the test."""
    connection = sshd.connect()
    yield connection
    connection.close()


def process_group_alive(pgid: int) -> bool:
    """True while any process of group `pgid` exists on this machine (the "remote" is loopback)."""
    found = subprocess.run(["ps", "-e", "-o", "pgid=,stat="], capture_output=True, text=True, check=True)
    for line in found.stdout.splitlines():
        group, _, stat = line.strip().partition(" ")
        if group == str(pgid) and not stat.strip().startswith("Z"):
            return True
    return False


def wait_group_gone(pgid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_group_alive(pgid):
            return True
        time.sleep(0.1)
    return False


__all__ = ["SSHServer", "free_port", "process_group_alive", "ssh_connection", "sshd", "start_sshd",
           "wait_group_gone"]
