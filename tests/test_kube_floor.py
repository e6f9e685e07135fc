"""kube.py against the oldest `kubernetes` client pyproject.toml allows, in a venv of its own.

kube.py used `ApiClient.param_serialize`, which clients up to v36 lack, while pyproject said
`kubernetes>=30`: this runs the public interface (get/list/apply/create/delete/pod_log/
watch_pods/events_for, KubeError) with the floor version against the API stand-in, so CI
checks the floor. The venv is cached (with a stamp) under ~/.cache/kubernaut-e2e-tests.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

FLOOR = re.search(r'"kubernetes>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)  # type: ignore[union-attr]
CACHE = Path(os.environ.get("KUBERNAUT_E2E_TEST_CACHE", Path.home() / ".cache" / "kubernaut-e2e-tests"))

_EXERCISE = r"""
import json, sys
import kubernetes
from kubernetes.client import ApiClient
from kubernaut_e2e.kube import Kube, KubeError
from kubernaut_e2e.runner import Cancellation

kube = Kube(sys.argv[1], cancellation=Cancellation())
ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "floor"}}
cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "floor"}, "data": {"k": "v"}}
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "floor", "labels": {"app": "p"}},
       "spec": {"containers": [{"name": "c", "image": "x"}]}}
out = {"version": kubernetes.__version__, "param_serialize": hasattr(ApiClient, "param_serialize")}
out["apply"] = [kube.apply(o).action for o in (ns, cm)] + [kube.apply(cm).action]
out["get"] = kube.get("ConfigMap", "c", "floor")["data"]
out["missing"] = kube.get("ConfigMap", "nope", "floor")
out["create"] = kube.create(pod)["metadata"]["name"]
out["list"] = [p["metadata"]["name"] for p in kube.list("Pod", "floor", selector="app=p")]
out["watch"] = [p["metadata"]["name"] for p in kube.watch_pods("floor", "app=p", timeout=1)][:1]
out["log"] = kube.pod_log("floor", "p", "c")
out["events"] = isinstance(kube.events_for("floor", "p"), list)
out["delete"] = [kube.delete("ConfigMap", "c", "floor"), kube.delete("ConfigMap", "c", "floor")]
try:
    kube.create(pod)
except KubeError as exc:
    out["conflict"] = [exc.status, str(exc)]
kube.close()
print(json.dumps(out))
"""


def _floor_python() -> Path:
    venv = CACHE / f"kubernetes-{FLOOR}"
    python = venv / "bin" / "python"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions at once build it once
        if not (venv / "ready").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            f"kubernetes=={FLOOR}"], check=True, timeout=600)
            (venv / "ready").write_text(FLOOR + "\n")
    return python


def test_kube_works_with_the_oldest_allowed_client(tmp_path: Path, kubeapi):
    python = _floor_python()
    config = tmp_path / "kubeconfig"
    kubeapi.kubeconfig(config)
    result = subprocess.run([str(python), "-c", _EXERCISE, str(config)], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["version"] == FLOOR
    assert out["param_serialize"] is False  # what the old kube.py needed and this client lacks
    assert out["apply"] == ["created", "created", "unchanged"]
    assert out["get"] == {"k": "v"} and out["missing"] is None
    assert out["create"] == "p" and out["list"] == ["p"] and out["watch"] == ["p"]
    assert out["events"] is True and out["delete"] == [True, False]
    status, text = out["conflict"]
    assert status == 409 and "\n" not in text and text.startswith("Kubernetes API: HTTP 409 AlreadyExists: POST")
