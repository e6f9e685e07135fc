"""`e2e.clean` and other clusters. Each cluster has images of its own by default (their tag is the
cluster's name); clusters given the same e2e.image_tag share them, while locks are per cluster:
clean of one cluster must not pull the images from under another one."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.conftest import ROOT, Project, free_ports, host_ports_setting
from tests.kindstate import clusters, set_behaviour


def _west(project: Project) -> dict[str, str]:
    """A second cluster of the same project: host ports of its own (two kind clusters cannot
    publish the same ones) and, like east, images tagged `shared`."""
    ports = dict(zip(project.host_ports, free_ports(len(project.host_ports))))
    return {"INVOKE_E2E_HOST_PORTS": host_ports_setting(ports), "INVOKE_E2E_IMAGE_TAG": "shared"}


_SHARED = {"INVOKE_E2E_IMAGE_TAG": "shared"}


def _shared_refs(project: Project) -> list[str]:
    return [ref.rsplit(":", 1)[0] + ":shared" for ref in project.images.values()]


def test_each_cluster_has_its_own_images_by_default(project: Project):
    assert project.run("e2e.up", "--only", "images", "-c", "east").returncode == 0
    west = {k: v for k, v in _west(project).items() if k != "INVOKE_E2E_IMAGE_TAG"}
    assert project.run("e2e.up", "--only", "images", "-c", "west", extra_env=west).returncode == 0
    refs = {name: [ref.rsplit(":", 1)[0] + f":{name}" for ref in project.images.values()] for name in ("east", "west")}
    try:
        cleaned = project.run("e2e.clean", "-c", "east")
        assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
        assert not any(project.image_exists(ref) for ref in refs["east"])
        assert all(project.image_exists(ref) for ref in refs["west"])  # not east's to remove
    finally:
        project.run("e2e.clean", "-c", "west", extra_env=west)


def test_clean_keeps_images_another_cluster_was_loaded_with(project: Project):
    assert project.run("e2e.up", "--only", "images", "-c", "east", extra_env=_SHARED).returncode == 0
    assert project.run("e2e.up", "--only", "images", "-c", "west", extra_env=_west(project)).returncode == 0
    cleaned = project.run("e2e.clean", "-c", "east", extra_env=_SHARED)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert "removed kind cluster east" in cleaned.stdout
    for ref in _shared_refs(project):
        assert project.image_exists(ref), ref
        assert f"kept image {ref}: cluster 'west' uses it too" in cleaned.stdout
    assert "east" not in clusters(project.kind_state) and "west" in clusters(project.kind_state)
    last = project.run("e2e.clean", "-c", "west", extra_env=_west(project))
    assert last.returncode == 0, last.stdout + last.stderr
    assert not any(project.image_exists(ref) for ref in _shared_refs(project))


def test_clean_keeps_images_a_running_up_of_another_cluster_uses(project: Project):
    assert project.run("e2e.up", "--only", "images", "-c", "east", extra_env=_SHARED).returncode == 0
    set_behaviour(project.kind_state, delay={"create cluster": 60})
    other = subprocess.Popen([sys.executable, "-m", "invoke", "e2e.up", "--only", "images", "-c", "west"],
                             cwd=ROOT, env={**project.env, **_west(project)}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        lock = project.state / "locks" / "west.lock"
        while not (lock.exists() and "images" in lock.read_text()):
            assert time.monotonic() < deadline, "west's up did not take its lock"
            time.sleep(0.1)
        cleaned = project.run("e2e.clean", "-c", "east", extra_env=_SHARED)
        assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
        for ref in _shared_refs(project):
            assert project.image_exists(ref), ref
            assert f"kept image {ref}: the running e2e.up (PID {other.pid}) of cluster 'west' uses it too" \
                in cleaned.stdout
    finally:
        other.send_signal(signal.SIGINT)
        other.communicate(timeout=60)
    assert other.returncode == 130


def test_only_build_containers_on_our_images_are_leftovers():
    from kubernaut_e2e.podman import build_leftovers

    listed = ('[{"Id": "aaa1", "ImageID": "c19202ff2809d", "Command": ["buildah"], "Status": "Storage"},'
              ' {"Id": "bbb2", "ImageID": "c19202ff2809d", "Command": ["/usr/local/bin/gateway"]},'
              ' {"Id": "ccc3", "ImageID": "ffff", "Command": ["buildah"]},'
              ' {"Id": "ddd4", "ImageID": "", "Command": ["buildah"]}]')
    # A user's own container on our image (bbb2) is never removed; nor builds on other images.
    assert build_leftovers(listed, {"c19202ff2809d0e1"}) == ["aaa1"]
    assert build_leftovers("not json", {"x"}) == []
