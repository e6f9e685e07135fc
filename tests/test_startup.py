"""`invoke --list` stays fast: it must not import the kubernetes client or fabric."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kubernaut_e2e.project_config import problem
from tests.conftest import ROOT

_PROBE = """
import sys
from invoke.main import program
try:
    program.run(["invoke", "--list"], exit=False)
finally:
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("kubernetes", "fabric", "paramiko", "urllib3"))
    print("HEAVY:", ",".join(heavy))
"""


def test_list_does_not_import_heavy_libraries():
    result = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "e2e.up" in result.stdout and "e2e.diagnose" in result.stdout and "e2e.ci" in result.stdout
    heavy = result.stdout.split("HEAVY:")[-1].strip()
    assert heavy == "", heavy


def test_every_task_has_help_for_the_user():
    for task in ("up", "clean", "plan", "diagnose", "toolchain", "test", "ci"):
        result = subprocess.run([sys.executable, "-m", "invoke", "--help", f"e2e.{task}"], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "Docstring:" in result.stdout and "Options:" in result.stdout


def test_malformed_invoke_yaml_is_named_with_its_line(tmp_path: Path):
    (tmp_path / "invoke.yaml").write_text("e2e:\n  jobs: [1, 2\n")
    found = problem(tmp_path)
    assert found and "invoke.yaml: not valid YAML (line 3)" in found
    (tmp_path / "invoke.yaml").write_text("- just\n- a list\n")
    assert "must be a mapping" in (problem(tmp_path) or "")
    (tmp_path / "invoke.yaml").write_text("e2e:\n  jobs: 2\n")
    assert problem(tmp_path) is None
