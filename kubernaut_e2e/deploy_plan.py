"""What each Kubernetes step does, in words, for `e2e.plan` (no kubernetes import here)."""
from __future__ import annotations

from kubernaut_e2e.config import E2EConfig


def describe(step: str, cfg: E2EConfig) -> list[str]:
    ns, src = cfg.namespace, cfg.source_dir
    api = "(Kubernetes API, server-side apply)"
    return {
        "crds": [f"apply {src / cfg.crd_glob} {api}",
                 f"wait until each CRD is Established (timeout {cfg.crd_timeout}s)"],
        "namespace": [f"apply manifests/namespace.yaml -> namespace {ns} {api}"],
        "infra": [f"apply manifests/postgresql.yaml, manifests/redis.yaml {api}",
                  f"wait for deployments postgresql, redis in {ns} (timeout {cfg.ready_timeout}s,"
                  " fail fast on crash loops)"],
        "migrations": [f"apply {src / cfg.migrations_glob} (goose Up sections, numeric order)"
                       " with a Job running psql",
                       "verify the expected tables exist"],
        "datastorage": [f"apply manifests/datastorage.yaml (image {cfg.datastorage_image}) {api}",
                        f"wait for deployment datastorage in {ns} (timeout {cfg.ready_timeout}s)"],
        "gateway": [f"apply manifests/gateway.yaml (image {cfg.gateway_image}) {api}",
                    f"wait for deployment gateway in {ns} (timeout {cfg.ready_timeout}s)"],
        "health": [f"GET http://localhost:{cfg.gateway_host_port}/health until 200 "
                   f"(timeout {cfg.health_timeout}s)",
                   f"GET http://localhost:{cfg.datastorage_host_port}/health until 200"],
    }[step]
