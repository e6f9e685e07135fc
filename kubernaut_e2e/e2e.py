"""The `e2e` Invoke tasks. Thin on purpose: parse flags, call in, turn errors into exit codes.

Exit codes: 0 success, 1 a step failed, 2 usage/config/preflight error, 130 interrupted.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from invoke import Collection, Context, task
from invoke.exceptions import Exit

from kubernaut_e2e.config import DEFAULTS, E2EConfig, load_config, paths_root
from kubernaut_e2e.errors import E2EError

_COMMON_HELP = {
    "cluster-name": "Kind cluster name (default: e2e.cluster_name, 'gateway-e2e').",
    "source-dir": "Kubernaut checkout to build the images from (default: e2e.source_dir).",
    "provider": "Container provider: auto, podman or docker (default: auto, podman first).",
    "state-dir": "Folder for run state and run logs (default: .e2e).",
    "stack": "Stack file describing the environment (default: the Kubernaut Gateway E2E stack "
             "shipped with this tool; see kubernaut_e2e/stacks/gateway-e2e/stack.yaml).",
}


def _config(c: Context, **overrides: Any) -> E2EConfig:
    section = c.config.get("e2e", {})
    return load_config({k: section[k] for k in section}, overrides, root=paths_root(c.config))


def _exits(fn: Callable[..., int | None]) -> Callable[..., None]:
    """Turn E2EError into Invoke's Exit with the error's exit code and a one-line message."""

    @wraps(fn)
    def wrapper(c: Context, *args: Any, **kwargs: Any) -> None:
        try:
            code = fn(c, *args, **kwargs)
        except E2EError as exc:
            raise Exit(f"e2e.{fn.__name__}: {exc}", code=exc.exit_code) from None
        if code:
            raise Exit(code=code)

    return wrapper


@task(
    iterable=["only"],
    help={
        "only": "Run only this step or group (and what it needs); repeatable. "
                "Groups: images, deploy, check. See `invoke e2e.plan`.",
        "jobs": "Run at most N steps at once (default 4; 1 = one at a time, the sequential baseline).",
        "keep-going": "After a failure, let steps that do not depend on it finish.",
        "recreate": "Delete and recreate the Kind cluster even if one of that name exists.",
        "clean-on-failure": "When a step fails, delete the cluster (default: keep it for diagnosis).",
        **_COMMON_HELP,
    },
)
@_exits
def up(c: Context, only: list[str] | None = None, jobs: int | None = None, keep_going: bool = False,
       recreate: bool = False, clean_on_failure: bool = False, cluster_name: str | None = None,
       source_dir: str | None = None, provider: str | None = None, state_dir: str | None = None,
       stack: str | None = None) -> int:
    """Stand up the Gateway E2E environment: cluster, images, PostgreSQL, Redis, services.

    Steps start as soon as what they need is done (image builds overlap cluster creation).
    Honors `invoke --dry e2e.up` (prints the commands, runs none).
    """
    from kubernaut_e2e.up import UpOptions, run_up

    cfg = _config(c, cluster_name=cluster_name, source_dir=source_dir, provider=provider,
                  state_dir=state_dir, jobs=jobs, stack=stack)
    opts = UpOptions(only=tuple(only or ()), jobs=cfg.jobs, keep_going=keep_going,
                     recreate=recreate, dry=bool(c.config.run.dry), clean_on_failure=clean_on_failure)
    return run_up(cfg, opts)


@task(help={"keep-images": "Keep the built images; remove only the cluster and run state.",
            **{k: v for k, v in _COMMON_HELP.items() if k != "source-dir"}})
@_exits
def clean(c: Context, keep_images: bool = False, cluster_name: str | None = None,
          provider: str | None = None, state_dir: str | None = None, stack: str | None = None) -> int:
    """Delete the Kind cluster, the images this project built, and its run state.

    Idempotent: when there is nothing left it says so and exits 0. Run logs are kept.
    Honors `invoke --dry e2e.clean`.
    """
    from kubernaut_e2e.clean import clean as do_clean
    from kubernaut_e2e.preflight import find_tools

    from kubernaut_e2e.lock import ClusterLock

    cfg = _config(c, cluster_name=cluster_name, provider=provider, state_dir=state_dir, stack=stack)
    tools = find_tools(cfg)
    if c.config.run.dry:
        report = do_clean(cfg, tools, keep_images=keep_images, dry=True)
    else:
        with ClusterLock(cfg.locks_dir, cfg.cluster_name, "clean"):
            report = do_clean(cfg, tools, keep_images=keep_images)
    if report.nothing:
        print(f"nothing to remove for cluster {cfg.cluster_name!r}")
    else:
        for item in report.removed:
            print(f"removed {item}")
    return 0


@task(iterable=["only"], help={"json": "Print the plan as JSON: {steps: [{name, needs, commands}]}.",
                               "only": "Plan only this step or group (and what it needs).",
                               **_COMMON_HELP})
@_exits
def plan(c: Context, json_: bool = False, only: list[str] | None = None,
         cluster_name: str | None = None, source_dir: str | None = None,
         provider: str | None = None, state_dir: str | None = None, stack: str | None = None) -> int:
    """Print the step graph (each step, what it needs, the commands it would run); runs nothing."""
    import platform

    from kubernaut_e2e.podman import normalize_arch
    from kubernaut_e2e.preflight import choose_provider
    from kubernaut_e2e.up import plan_document, stack_graph

    cfg = _config(c, cluster_name=cluster_name, source_dir=source_dir, provider=provider,
                  state_dir=state_dir, stack=stack)
    # Plan runs nothing, so it also works where no provider is installed yet.
    chosen = choose_provider(cfg) or (cfg.provider if cfg.provider != "auto" else "podman")
    doc = plan_document(cfg, stack_graph(cfg, only or ()), chosen, normalize_arch(platform.machine()))
    if json_:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"cluster {doc['cluster']} | provider {doc['provider']} | images for {doc['target_arch']} "
          "(at run time: the provider's architecture)")
    for step in doc["steps"]:
        needs = ", ".join(step["needs"]) or "-"
        print(f"\n{step['name']}  (needs: {needs})  {step['help']}")
        for command in step["commands"]:
            print(f"    {command}")
    return 0


@task(iterable=["namespace"], help={
    "json": "Print the report as JSON.",
    "out": "Also write a bundle here: pod descriptions, logs, events, findings, `kind export logs`.",
    "logs": "Analyse a log file or a folder of logs (CI artifact, kind logs) offline: no cluster needed.",
    "namespace": "Namespace to examine; repeatable (default: e2e.namespace).",
    "cluster-name": _COMMON_HELP["cluster-name"],
    "state-dir": _COMMON_HELP["state-dir"],
    "stack": _COMMON_HELP["stack"],
})
@_exits
def diagnose(c: Context, json_: bool = False, out: str | None = None, logs: str | None = None,
             namespace: list[str] | None = None, cluster_name: str | None = None,
             state_dir: str | None = None, stack: str | None = None) -> int:
    """Say why the environment is broken: one finding per problem with evidence and fix.

    Looks at nodes (with architecture) and every pod that is not ready or has restarted: states,
    exit codes, events, current and previous logs, matched against a knowledge base of causes
    (e.g. an amd64 binary emulated on an arm64 node). Exit 0: nothing wrong; 1: problems found;
    2: bad input or no cluster.
    """
    import sys
    from pathlib import Path

    from kubernaut_e2e.diagnose import run_diagnose

    cfg = _config(c, cluster_name=cluster_name, state_dir=state_dir, stack=stack)
    return run_diagnose(cfg, namespaces=namespace or [cfg.namespace], as_json=json_,
                        out=Path(out).resolve() if out else None,
                        logs=Path(logs).resolve() if logs else None, stream=sys.stdout)


@task(iterable=["dockerfile"], help={
    "dockerfile": "Dockerfile to check; repeatable (default: the project's two).",
    "arch": "Target architecture (default: the Kind node's, else the provider's).",
    "json": "Print the checks as JSON.",
    "cluster-name": _COMMON_HELP["cluster-name"],
    "source-dir": _COMMON_HELP["source-dir"],
    "provider": _COMMON_HELP["provider"],
    "stack": _COMMON_HELP["stack"],
})
@_exits
def toolchain(c: Context, dockerfile: list[str] | None = None, arch: str | None = None, json_: bool = False,
              cluster_name: str | None = None, source_dir: str | None = None, provider: str | None = None,
              stack: str | None = None) -> int:
    """Check host, provider, kind, node and Dockerfile architectures and base images.

    Each check is ok / warn / fail with the fix: approved registries (ADR-028), the builder's Go
    version, hard-coded GOARCH or --platform that differ from the target, TARGETARCH reaching
    `go build`, built images' architecture vs the node's, go.mod's go/toolchain lines.
    Exit 1 when any check fails, 2 on bad input.
    """
    import sys

    from kubernaut_e2e.toolchain import document, render, run_toolchain

    cfg = _config(c, cluster_name=cluster_name, source_dir=source_dir, provider=provider, stack=stack)
    facts, checks = run_toolchain(cfg, dockerfiles=dockerfile or [], arch=arch, approved=cfg.registries)
    if json_:
        print(json.dumps(document(facts, checks), indent=2))
    else:
        render(checks, sys.stdout)
    return 1 if any(ch.status == "fail" for ch in checks) else 0


_REUSES_ENV_HELP = ("The suite was changed to reuse an existing environment: skip the check that it "
                    "stands up its own, and write the files it reads (the stack's suite.files, e.g. "
                    "~/.kube/gateway-e2e-config and ~/.kube/inter-service-ca.pem), announced.")


@task(help={
    "suite-reuses-env": _REUSES_ENV_HELP,
    "cluster-name": _COMMON_HELP["cluster-name"],
    "source-dir": _COMMON_HELP["source-dir"],
    "state-dir": _COMMON_HELP["state-dir"],
    "stack": _COMMON_HELP["stack"],
})
@_exits
def test(c: Context, suite_reuses_env: bool = False, cluster_name: str | None = None,
         source_dir: str | None = None, state_dir: str | None = None, stack: str | None = None) -> int:
    """Run the Gateway E2E suite (e2e.test_command) against the environment `up` made.

    The suite gets the stack's suite environment (KUBECONFIG, the service URLs, the CA file, and
    SKIP_CLEANUP/KEEP_CLUSTER so it never deletes the cluster). A suite that stands up its own
    environment (upstream's today) is refused before anything runs, with the options. Progress is
    printed per test, counts are parsed from `go test -json`, and junit.xml is written to the run
    directory. Exit status: the suite's.
    """
    from kubernaut_e2e.suite import check_inputs, run_suite
    from kubernaut_e2e.up import new_run_dir

    cfg = _config(c, cluster_name=cluster_name, source_dir=source_dir, state_dir=state_dir, stack=stack)
    check_inputs(cfg, suite_reuses_env=suite_reuses_env)  # bad input: no run directory is made
    return run_suite(cfg, new_run_dir(cfg), suite_reuses_env=suite_reuses_env).exit_code


@task(help={
    "keep": "Keep the cluster and images at the end (default: clean up).",
    "jobs": "As for e2e.up.",
    "suite-reuses-env": _REUSES_ENV_HELP,
    **_COMMON_HELP,
})
@_exits
def ci(c: Context, keep: bool = False, jobs: int | None = None, suite_reuses_env: bool = False,
       cluster_name: str | None = None, source_dir: str | None = None, provider: str | None = None,
       state_dir: str | None = None, stack: str | None = None) -> int:
    """One command for CI: up -> smoke -> test -> on failure diagnose -> clean (unless --keep).

    Everything lands in one run directory (timings.json, smoke.json, junit.xml, diagnose/,
    ci.json) and one summary: timings, checklist, smoke hops, spec counts, findings.
    Exit status: 0 only if all passed.
    """
    from kubernaut_e2e.ci import run_ci

    cfg = _config(c, cluster_name=cluster_name, source_dir=source_dir, provider=provider,
                  state_dir=state_dir, jobs=jobs, stack=stack)
    return run_ci(cfg, keep=keep, suite_reuses_env=suite_reuses_env)


@task(help={
    "out": "Folder to write into (created; files are numbered in apply order).",
    "cluster-name": _COMMON_HELP["cluster-name"],
    "source-dir": _COMMON_HELP["source-dir"],
    "stack": _COMMON_HELP["stack"],
})
@_exits
def render(c: Context, out: str | None = None, cluster_name: str | None = None,
           source_dir: str | None = None, stack: str | None = None) -> int:
    """Write the kind config and every manifest `up` would apply, in apply order, to --out.

    Generated credentials, keys and certificates appear as <generated:...> placeholders. Nothing
    is contacted (no cluster, no provider): use it to review or diff what the stack deploys.
    """
    from pathlib import Path

    from kubernaut_e2e.errors import UsageError
    from kubernaut_e2e.render import render_stack

    if not out:
        raise UsageError("--out DIR is required (the folder to write the manifests into)")
    cfg = _config(c, cluster_name=cluster_name, source_dir=source_dir, stack=stack)
    for path in render_stack(cfg, Path(out).resolve()):
        print(path)
    return 0


def collection() -> Collection:
    ns = Collection("e2e", up, clean, plan, render, diagnose, toolchain, test, ci)
    ns.configure({"e2e": dict(DEFAULTS)})
    return ns
