"""Go's caches survive between image builds: what our Dockerfiles' cache mounts rely on.

Our Dockerfiles (kubernaut_e2e/stacks/gateway-e2e/Dockerfile.*) run `go build` with
`RUN --mount=type=cache` on the go-toolset builder's module and build caches, so after a one-file
change only what changed is compiled (bench/inner_loop.py measures it: about a tenth of a build
without them). These tests check that the Dockerfiles keep that shape, and that the podman on this
machine (4.3, buildah underneath) really keeps a cache mount's content from one build to the next
and out of the image. podman keeps it under $TMPDIR/buildah-cache (default /var/tmp), keyed by the
target path, so the gateway and datastorage builds share one Go cache.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from kubernaut_e2e.stack import PACKAGE_DIR

OURS = sorted((PACKAGE_DIR / "stacks" / "gateway-e2e").glob("Dockerfile.*"))
#: Where ubi10/go-toolset (user 1001, HOME /opt/app-root/src) keeps Go's caches.
GO_CACHES = {"/opt/app-root/src/go/pkg/mod", "/opt/app-root/src/.cache/go-build"}

_PROBE_C = r"""
#include <dirent.h>
#include <stdio.h>
#include <string.h>
/* probe DIR NAME: list DIR ("missing" if it does not exist), then create DIR/NAME. */
int main(int argc, char **argv) {
    DIR *d = opendir(argv[1]);
    if (!d) { puts("missing"); return 0; }
    struct dirent *e;
    while ((e = readdir(d))) if (e->d_name[0] != '.') printf("seen %s\n", e->d_name);
    closedir(d);
    if (argc > 2) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], argv[2]);
        FILE *f = fopen(path, "w");
        if (!f) { perror(path); return 1; }
        fclose(f);
    }
    return 0;
}
"""


def test_our_go_builds_mount_the_builders_go_caches():
    assert len(OURS) == 2
    for dockerfile in OURS:
        text = dockerfile.read_text().replace("\\\n", " ")
        [run] = [line for line in text.splitlines() if line.startswith("RUN ") and "go build" in line]
        mounts = re.findall(r"--mount=type=cache,target=([^,\s]+),uid=1001,gid=0\b", run)
        assert set(mounts) == GO_CACHES, f"{dockerfile.name}: {run}"


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    (tmp_path / "probe.c").write_text(_PROBE_C)
    subprocess.run(["gcc", "-static", "-Os", "-o", str(tmp_path / "probe"), str(tmp_path / "probe.c")], check=True)
    return tmp_path / "probe"


def test_podman_keeps_a_cache_mount_between_builds_and_out_of_the_image(podman_env, probe: Path,
                                                                         tmp_path: Path):
    context = tmp_path / "context"
    context.mkdir()
    probe.rename(context / "probe")
    env = {**podman_env, "TMPDIR": str(tmp_path / "tmp")}  # where podman keeps cache mounts
    (tmp_path / "tmp").mkdir()
    ref = f"localhost/cache-mount-test:{tmp_path.name.lower()[-20:]}"
    outputs = []
    try:
        for nonce in ("first", "second"):
            (context / "Containerfile").write_text(
                "FROM scratch\nCOPY probe /probe\n"
                f'RUN --mount=type=cache,target=/root/.cache/go-build ["/probe", "/root/.cache/go-build", "{nonce}"]\n')
            built = subprocess.run(["podman", "build", "-t", ref, str(context)], env=env, capture_output=True,
                                   text=True)
            assert built.returncode == 0, built.stdout + built.stderr
            outputs.append(built.stdout)
        assert "seen first" not in outputs[0]
        assert "seen first" in outputs[1]  # what the first build wrote, the second one saw
        ran = subprocess.run(["podman", "run", "--rm", ref, "/probe", "/root/.cache/go-build"], env=env,
                             capture_output=True, text=True)
        assert ran.returncode == 0, ran.stderr
        assert "seen" not in ran.stdout  # the cache is not part of the image
        assert list((tmp_path / "tmp").glob("buildah-cache*/**/first")), "the cache is kept under TMPDIR"
    finally:
        subprocess.run(["podman", "rmi", "--force", ref], env=env, capture_output=True)
