"""The Kubernetes steps. Filled in by issue 3; until then each fails with a clear message."""
from __future__ import annotations

from tasks.context import StepContext
from tasks.errors import StepFailed


def _not_yet(ctx: StepContext) -> None:
    raise StepFailed(f"step {ctx.step} is not implemented yet (deploy steps: issue 3)")


crds = namespace = infra = migrations = datastorage = gateway = health = _not_yet
