"""A real PostgreSQL server for tests (Debian's postgresql package; .ci/run installs it).

It runs as the `postgres` user when the tests run as root (initdb refuses root), on a free
loopback port, in a temporary folder, and is stopped at the end of the session.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str
    password: str
    database: str

    def env(self) -> dict[str, str]:
        return {"DB_HOST": "127.0.0.1", "DB_PORT": str(self.port), "DB_USER": self.user,
                "DB_PASSWORD": self.password, "DB_NAME": self.database}

    def query(self, sql: str) -> str:
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", self.database,
                              "-tAc", sql], env={**os.environ, "PGPASSWORD": self.password},
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        pytest.fail(f"PostgreSQL's {name} is not installed: .ci/run installs it (apt-get install postgresql)")
    return found[-1]


def start_postgres(folder: Path, port: int) -> tuple[Postgres, subprocess.Popen[bytes]]:
    as_user: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = folder / "data"
    folder.mkdir(parents=True, exist_ok=True)
    if as_user:
        shutil.chown(folder, "postgres", "postgres")
    (folder / "pw").write_text("test-superuser-pw\n")
    if as_user:
        shutil.chown(folder / "pw", "postgres", "postgres")
    init = subprocess.run([*as_user, _bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
                           f"--pwfile={folder / 'pw'}"], capture_output=True, text=True)
    if init.returncode != 0:
        pytest.fail(f"initdb failed: {init.stderr.strip()}")
    proc = subprocess.Popen([*as_user, _bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(folder),
                             "-c", "listen_addresses=127.0.0.1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    su = {**os.environ, "PGPASSWORD": "test-superuser-pw"}
    deadline = time.monotonic() + 30
    while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode != 0:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("the test PostgreSQL server did not start")
        time.sleep(0.2)
    user, password, database = "slm_user", "slm-test-password-123", "action_history"
    for sql in (f"CREATE ROLE {user} LOGIN PASSWORD '{password}'", f"CREATE DATABASE {database} OWNER {user}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres", "-c", sql],
                       env=su, check=True, capture_output=True)
    return Postgres(port, user, password, database), proc


@pytest.fixture
def postgres():  # type: ignore[no-untyped-def]
    """An empty database owned by slm_user on a real PostgreSQL server of its own."""
    import tempfile

    from tests.conftest import free_ports

    # Directly under /tmp: the postgres user cannot enter pytest's root-only temporary folders.
    folder = Path(tempfile.mkdtemp(prefix="e2e-pg-"))
    folder.chmod(0o711)  # the server's own folder inside is the postgres user's
    try:
        server, proc = start_postgres(folder / "pg", free_ports(1)[0])
        yield server
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def goose_binary() -> Path:
    """The goose CLI .ci/build-control-plane builds (upstream's pinned version); fail saying how."""
    from tests.realcluster import BUILD_SCRIPT, control_plane_bin_dir

    goose = control_plane_bin_dir() / "goose"
    if not goose.is_file():
        pytest.fail(f"goose is not built in {goose.parent}: run {BUILD_SCRIPT}", pytrace=False)
    return goose
