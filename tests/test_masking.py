"""No secret, in any form, in any file or output: a crash run, then `diagnose --out`, then every
byte of the state dir, the run dir and the bundle (binary files included) is searched for the
password as itself, URL-encoded, base64, and base64 of `user:password` (basic auth)."""
from __future__ import annotations

import base64
import os
from pathlib import Path
from urllib.parse import quote

from kubernaut_e2e.redact import Redactor
from tests.conftest import MIGRATION_LOG, ROOT, Project
from tests.kubeapi import CrashLoop, JobSucceeds

NS = "kubernaut-system"
ADMIN = "Adm1n-Pa55word-with/slash+plus"
APP = "app-db-password-0123456789abcdef"


def forms(secret: str) -> dict[str, bytes]:
    """Every shape the tests look for; the base64 ones at each alignment after a prefix."""
    found = {"plain": secret.encode(), "url-encoded": quote(secret, safe="").encode(),
             "base64": base64.b64encode(secret.encode()), "base64url": base64.urlsafe_b64encode(secret.encode())}
    for user in ("slm_user", "postgres", "u"):
        token = base64.b64encode(f"{user}:{secret}".encode())
        found[f"basic auth {user}"] = token.rstrip(b"=")[-16:]  # its secret-only tail
    return found


CRASH_LOG = (
    f"connecting to postgres://slm_user:{quote(APP, safe='')}@postgresql:5432/action_history\n"
    f"Authorization: Basic {base64.b64encode(f'slm_user:{APP}'.encode()).decode()}\n"
    f"env POSTGRES_PASSWORD={ADMIN} APP_PASSWORD_B64={base64.b64encode(APP.encode()).decode()}\n"
    f"admin token {base64.b64encode(f'postgres:{ADMIN}'.encode()).decode()}\n"
    "fatal error: cannot connect\n"
)


def _grep(folder: Path) -> list[str]:
    hits = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            for secret in (ADMIN, APP):
                for name, needle in forms(secret).items():
                    if needle in data:
                        hits.append(f"{path}: {name} of {secret[:4]}...")
    return hits


def test_crash_run_and_bundle_hold_no_secret_in_any_form(project: Project, kubeapi, tmp_path: Path):
    kubeapi.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    # The stack's own credential (read back from its Secret), and one the stack knows nothing of.
    kubeapi.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "postgresql-secret", "namespace": NS},
                    "stringData": {"POSTGRES_PASSWORD": APP}})
    kubeapi.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "admin-credentials", "namespace": NS},
                    "stringData": {"password": ADMIN}})
    kubeapi.script("gateway", CrashLoop(after=0.3, exit_code=1, log=CRASH_LOG))
    kubeapi.script_job("e2e-migrations", JobSucceeds(after=0.2, log=MIGRATION_LOG))
    # A kind-exported container log that is not UTF-8 and holds the secrets in all their forms.
    planted = tmp_path / "containerd-gateway.log"
    planted.write_bytes(b"\xff\xfe\x80 binary prefix \x00\x01\n" + CRASH_LOG.encode() + b"\xc3\x28 tail\n")
    env = {"KIND_STANDIN_API_SERVER": kubeapi.url,
           "PATH": f"{ROOT / 'tests' / 'faults'}{os.pathsep}{project.env['PATH']}",
           "FAULT_SPEC": "kind export:plant", "FAULT_PLANT": str(planted)}
    up = project.run("e2e.up", extra_env=env)
    assert up.returncode == 1, up.stdout + up.stderr
    assert "CrashLoopBackOff" in up.stdout and "***" in up.stdout  # the log was shown, masked
    bundle = project.state / "bundle"
    diag = project.run("e2e.diagnose", "--out", str(bundle), extra_env=env)
    assert diag.returncode == 1, diag.stdout + diag.stderr
    exported = list((bundle / "kind-logs").rglob(planted.name))
    assert exported, "the planted kind log is in the bundle"
    assert exported[0].read_bytes().startswith(b"\xff\xfe\x80")  # still the binary file, masked in place
    assert b"***" in exported[0].read_bytes()
    assert _grep(project.state) == []  # state dir: run dirs (logs, timings.json), bundle
    for output in (up.stdout, up.stderr, diag.stdout, diag.stderr):
        for secret in (ADMIN, APP):
            for name, needle in forms(secret).items():
                assert needle.decode() not in output, name


def test_redactor_masks_every_form_in_text_and_bytes():
    redactor = Redactor([ADMIN, APP])
    text = CRASH_LOG + f"urlsafe {base64.urlsafe_b64encode(f'xy:{ADMIN}'.encode()).decode()}\n"
    masked = redactor.redact(text)
    masked_bytes = redactor.redact_bytes(b"\xff\x00" + text.encode() + b"\x80")
    for secret in (ADMIN, APP):
        for name, needle in forms(secret).items():
            assert needle.decode() not in masked, name
            assert needle not in masked_bytes, name
    assert "fatal error: cannot connect" in masked and b"\xff\x00" in masked_bytes
    assert Redactor(["short"]).redact("short words stay") == "short words stay"
    unrelated = base64.b64encode(os.urandom(3000)).decode()
    assert redactor.redact(unrelated) == unrelated  # no stray masking of other base64 data
