"""`e2e.clean`: delete the cluster, the images this project built, and its run state."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass

from kubernaut_e2e import fingerprint, kind, podman
from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.preflight import Tools
from kubernaut_e2e.runner import Cancellation, LocalRunner
from kubernaut_e2e.scheduler import parallel


@dataclass(frozen=True)
class CleanReport:
    removed: tuple[str, ...]

    @property
    def nothing(self) -> bool:
        return not self.removed


def clean(cfg: E2EConfig, tools: Tools, *, keep_images: bool = False, dry: bool = False,
          echo: Callable[[str], None] = print) -> CleanReport:
    """Remove what `up` created. Safe to repeat: absent things are skipped, not errors.

    The run logs under <state_dir>/runs are kept: they are the history of past runs.
    """
    runner = LocalRunner(Cancellation(), dry=dry, echo=echo)
    env = kind.provider_env(tools.provider)

    def delete_cluster() -> list[str]:
        listed = runner.run(kind.get_clusters(), env=env, capture=True)
        if not listed.dry and cfg.cluster_name not in kind.parse_clusters(listed.stdout):
            return []
        runner.run(kind.delete_cluster(cfg.cluster_name, cfg.kubeconfig), env=env)
        return [f"kind cluster {cfg.cluster_name}"]

    def remove_images() -> list[str]:
        if keep_images:
            return []
        present = []
        for svc in cfg.images:
            ref = cfg.image_ref(svc)
            found = runner.run(podman.image_exists(tools.provider, ref), check=False)
            if found.ok:
                present.append(ref)
        if present:
            runner.run(podman.rmi(tools.provider, present))
        # Superseded builds of this cluster's images (retagged, now dangling) carry our labels;
        # other clusters' images carry another cluster label and are left alone.
        pruned = runner.run(podman.prune_labelled(tools.provider, f"{fingerprint.CLUSTER_LABEL}={cfg.cluster_name}"),
                            capture=True, check=False)
        old = [line for line in pruned.stdout.split() if line.strip()]
        return [f"image {ref}" for ref in present] + ([f"{len(old)} superseded build(s)"] if old else [])

    # The cluster and the images are independent: remove them at the same time.
    cluster_gone, images_gone = parallel(delete_cluster, remove_images)
    removed = [*cluster_gone, *images_gone]
    state = cfg.cluster_state_dir
    if state.exists():
        if dry:
            echo(f"rm -r {state}")
        else:
            shutil.rmtree(state)
        removed.append(f"run state {state}")
    return CleanReport(tuple(removed))
