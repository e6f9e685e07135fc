"""A hash of everything an image build reads, so an unchanged image is not rebuilt.

It covers the Dockerfile, the build args (including the target architecture) and the build
context's file names, sizes and modification times: cheap on a large Go tree, and any edit,
checkout or new file changes it. Content is not read; a touched-but-identical file rebuilds.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

#: The image label that records the hash; also what the build step compares against.
LABEL = "io.kubernaut.e2e.inputs"
#: The image label naming the cluster an image was built for (images are per cluster).
CLUSTER_LABEL = "io.kubernaut.e2e.cluster"
#: Folders that are no input of a build (also not sent to a remote host by sync.py).
SKIP_DIRS = frozenset({".git", ".e2e", "node_modules", "__pycache__"})


def build_inputs(dockerfile: Path, context: Path, build_args: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    h.update(dockerfile.read_bytes())
    for key in sorted(build_args):
        h.update(f"\0arg {key}={build_args[key]}".encode())
    for root, dirs, files in os.walk(context):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            path = Path(root) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            rel = path.relative_to(context).as_posix()
            h.update(f"\0{rel}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]
