"""`e2e.clean`: delete the cluster, the images this project built, and its run state.

Every command goes through the one runner, with e2e.command_timeout and the caller's
Cancellation, so a hanging `kind delete` times out and Ctrl-C stops it (exit 130) instead of
hanging `clean`, `up --clean-on-failure` or `ci`.

Images are shared by every cluster whose config names the same references, while locks are per
cluster. So images are kept (and said so) while another cluster still needs them: a live run
of another cluster that records them in its lock, or another existing cluster of this state
dir that was loaded with these very image IDs. The last cluster's clean removes them.
"""
from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from kubernaut_e2e import fingerprint, kind, podman
from kubernaut_e2e.config import E2EConfig
from kubernaut_e2e.context import LocalSite, Site
from kubernaut_e2e.errors import Cancelled, Interrupted, UsageError
from kubernaut_e2e.lock import ClusterLock, LockRecord, live_runs
from kubernaut_e2e.preflight import Tools, find_tools
from kubernaut_e2e.runner import Cancellation
from kubernaut_e2e.scheduler import parallel


@dataclass(frozen=True)
class CleanReport:
    removed: tuple[str, ...]
    kept: tuple[str, ...] = ()  # what was left on purpose, and why

    @property
    def nothing(self) -> bool:
        return not self.removed


def clean(cfg: E2EConfig, tools: Tools, *, keep_images: bool = False, dry: bool = False,
          echo: Callable[[str], None] = print, cancellation: Cancellation | None = None,
          site: Site | None = None) -> CleanReport:
    """Remove what `up` created. Safe to repeat: absent things are skipped, not errors.

    The run logs under <state_dir>/runs are kept: they are the history of past runs. Without
    kind (or a provider) installed there can be no cluster (or image) to remove, unless this
    cluster's run state says otherwise: then that is an error (exit 2) before anything is done.
    `site`: where the cluster and images are (default: this machine); its folder goes too.
    """
    site = site or LocalSite(cfg)
    session = cancellation or Cancellation()
    stop = session.child()  # a failed removal stops the other one, not the caller's run
    runner = site.runner(stop, dry=dry, echo=echo)
    env = kind.provider_env(tools.provider)
    timeout = float(cfg.command_timeout)
    have_kind = dry or (bool(tools.kind) and site.which(tools.kind) is not None)
    have_provider = dry or (bool(tools.provider) and site.which(tools.provider) is not None)
    if not have_kind and cfg.cluster_state_dir.exists():
        raise UsageError(f"kind is not installed: cannot check or delete cluster {cfg.cluster_name!r}, "
                         f"whose run state is in {cfg.cluster_state_dir}; install kind and retry")
    existing: list[str] = []

    def delete_cluster() -> list[str]:
        if not have_kind:
            return []
        if dry:
            runner.run(kind.get_clusters(), env=env, capture=True, timeout=timeout)  # shown, not run
        elif cfg.cluster_name not in existing:
            return []
        runner.run(kind.delete_cluster(cfg.cluster_name, site.cfg.kubeconfig), env=env, timeout=timeout)
        return [f"kind cluster {cfg.cluster_name}"]

    kept: list[str] = []

    def remove_images() -> list[str]:
        if keep_images or not have_provider:
            return []
        present = {}
        for svc in cfg.images:
            ref = cfg.image_ref(svc)
            found = runner.run(podman.image_id(tools.provider, ref), capture=True, check=False, timeout=timeout)
            if found.ok:
                present[ref] = found.stdout.strip()
        runs = live_runs(cfg.locks_dir, except_cluster=cfg.cluster_name) if not dry else {}
        users = _image_users(cfg, present, runs, existing if have_kind else [])
        for ref, user in users.items():
            kept.append(f"image {ref}: {user} uses it too")
        remove = [ref for ref in present if ref not in users]
        leftovers: list[str] = []
        if remove and tools.provider == "podman" and not dry:
            listed = runner.run(podman.containers_json(tools.provider), capture=True, check=False, timeout=timeout)
            leftovers = podman.build_leftovers(listed.stdout, {present[ref] for ref in remove})
            if leftovers:  # an interrupted build's working containers would block the rmi
                runner.run(podman.rm_containers(tools.provider, leftovers), timeout=timeout)
        if remove:
            runner.run(podman.rmi(tools.provider, remove), timeout=timeout)
        gone = [f"image {ref}" for ref in remove]
        if leftovers:
            gone.append(f"{len(leftovers)} working container(s) of interrupted builds")
        if runs:  # another run may be building right now: its intermediate images are not ours to prune
            return gone
        # Superseded builds of this cluster's images (retagged, now dangling) carry its label;
        # other clusters' builds carry theirs and are left alone.
        pruned = runner.run(podman.prune_labelled(tools.provider, f"{fingerprint.CLUSTER_LABEL}={cfg.cluster_name}"),
                            capture=True, check=False, timeout=timeout)
        old = [line for line in pruned.stdout.split() if line.strip()]
        return gone + ([f"{len(old)} superseded build(s)"] if old else [])

    try:
        if have_kind and not dry:  # both removals need the list of clusters
            listed = runner.run(kind.get_clusters(), env=env, capture=True, timeout=timeout)
            existing.extend(kind.parse_clusters(listed.stdout))
        # The cluster and the images are independent: remove them at the same time.
        cluster_gone, images_gone = parallel(delete_cluster, remove_images, cancellation=stop)
    except Cancelled:
        if session.interrupted:
            raise Interrupted(f"interrupted ({session.signal}): clean was stopped, every command it ran "
                              "too; run `invoke e2e.clean` again to finish") from None
        raise
    removed = [*cluster_gone, *images_gone]
    if site.folder is not None and (dry or site.exists(site.folder)):
        if dry:
            echo(f"rm -r {site.folder}   # on {site.label}")
        else:
            site.remove_tree(site.folder)
        removed.append(f"folder {site.folder} on {site.label}")
    state = cfg.cluster_state_dir
    if state.exists():
        if dry:
            echo(f"rm -r {state}")
        else:
            shutil.rmtree(state)
        removed.append(f"run state {state}")
    return CleanReport(tuple(removed), tuple(kept))


def _image_users(cfg: E2EConfig, present: dict[str, str], runs: dict[str, LockRecord],
                 clusters: list[str]) -> dict[str, str]:
    """Which of our images another cluster still needs, and who: ref -> "cluster 'b'"."""
    users: dict[str, str] = {}
    for other, record in runs.items():
        for ref in record.images:
            if ref in present:
                users.setdefault(ref, f"the running {record.what or 'run'} (PID {record.pid}) of cluster {other!r}")
    states = cfg.state_dir / "state"
    if states.is_dir():
        for folder in sorted(states.iterdir()):
            if folder.name == cfg.cluster_name or folder.name not in clusters:
                continue
            try:
                loaded = set(json.loads((folder / "loaded.json").read_text()).values())
            except (OSError, ValueError, AttributeError):
                continue
            for ref, image_id in present.items():
                if image_id and image_id in loaded:
                    users.setdefault(ref, f"cluster {folder.name!r}")
    return users


def run_clean(cfg: E2EConfig, *, keep_images: bool, dry: bool, out: TextIO | None = None,
              site: Site | None = None, cancellation: Cancellation | None = None) -> int:
    """The whole `e2e.clean` task: lock, signals, clean, the report. Returns the exit code.

    With the caller's `cancellation` (a run on several hosts) the caller owns the signals.
    """
    from contextlib import nullcontext

    from kubernaut_e2e.signals import owned_signals

    out = out or sys.stdout
    site = site or LocalSite(cfg)
    tools = find_tools(cfg, site.which, need=False)  # a tool that is missing is handled by clean()
    session = cancellation or Cancellation()
    with owned_signals(session) if cancellation is None else nullcontext():
        if dry or not cfg.locks_dir.is_dir():
            # No run ever took a lock in this state dir, so none runs now: no need to create one.
            report = clean(cfg, tools, keep_images=keep_images, dry=dry,
                           echo=lambda line: print(line, file=out), cancellation=session, site=site)
        else:
            with ClusterLock(cfg.locks_dir, cfg.cluster_name, "clean") as lock:
                session.add_watcher(lock)
                report = clean(cfg, tools, keep_images=keep_images,
                               echo=lambda line: print(line, file=out), cancellation=session, site=site)
    if report.nothing:
        print(f"nothing to remove for cluster {cfg.cluster_name!r}", file=out)
    for item in report.removed:
        print(f"removed {item}", file=out)
    for item in report.kept:
        print(f"kept {item}", file=out)
    return 0
