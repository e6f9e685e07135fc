"""The `e2e` Invoke tasks. Thin on purpose: parse flags, call in, turn errors into exit codes.

Exit codes: 0 success, 1 a step failed, 2 usage/config/preflight error, 130 interrupted
(SIGINT, SIGTERM or SIGHUP).

Flags mean the same in every task, short ones included: `SHORT_FLAGS` is the one table of
short flags (Invoke would otherwise pick a letter per task, so `-c` meant --clean-on-failure
in one task and --cluster-name in the next). Flags whose values are numbers are typed
(`--jobs=INT`), and a bad value is one line naming the flag, exit 2, like any other config.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

from invoke import Collection, Context, Task, task
from invoke.exceptions import Exit
from invoke.parser import Argument

from kubernaut_e2e.config import DEFAULTS, E2EConfig, paths_root
from kubernaut_e2e.errors import EXIT_USAGE, E2EError

_COMMON_HELP = {
    "cluster-name": "Kind cluster name (default: e2e.cluster_name, 'gateway-e2e').",
    "source-dir": "Kubernaut checkout to build the images from (default: e2e.source_dir).",
    "provider": "Container provider: auto, podman or docker (default: auto, podman first).",
    "state-dir": "Folder for run state and run logs (default: .e2e).",
    "stack": "Stack file describing the environment (default: the Kubernaut Gateway E2E stack "
             "shipped with this tool; see kubernaut_e2e/stacks/gateway-e2e/stack.yaml).",
}

#: The only short flags, each with one meaning in every task that has the long flag.
SHORT_FLAGS = {"cluster-name": "c", "source-dir": "s", "provider": "p", "jobs": "j", "only": "o",
               "namespace": "n"}
#: Flags whose value is not a string: Invoke shows `--jobs=INT` and the value is checked here.
FLAG_KINDS: dict[str, type] = {"jobs": int}


class _CheckedArgument(Argument):
    """An Argument whose bad value is one line naming the flag (exit 2), not a traceback."""

    def set_value(self, value: Any, cast: bool = True) -> None:
        try:
            super().set_value(value, cast)
        except ValueError:
            kind = {int: "an integer"}.get(self.kind, self.kind.__name__)
            raise Exit(f"config e2e.{self.attr_name or self.name} (from --{self.name}): "
                       f"expected {kind}, got {value!r}", code=EXIT_USAGE) from None


class E2ETask(Task):
    """A Task whose flags follow SHORT_FLAGS and FLAG_KINDS instead of Invoke's per-task guesses."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        args = []
        for arg in super().get_arguments(ignore_unknown_help):
            name = arg.names[0]
            short = SHORT_FLAGS.get(name)
            args.append(_CheckedArgument(
                names=(name, short) if short else (name,), kind=FLAG_KINDS.get(name, arg.kind),
                default=arg.default, help=arg.help, positional=arg.positional, optional=arg.optional,
                incrementable=arg.incrementable, attr_name=arg.attr_name))
        return args


def e2e_task(*args: Any, **kwargs: Any) -> Any:
    """`@task` with this project's flag rules (see E2ETask)."""
    return task(*args, klass=E2ETask, auto_shortflags=False, **kwargs)


def _config(c: Context, **overrides: Any) -> E2EConfig:
    """Every source checked on its own, then the merge; errors name the key and the source."""
    from pathlib import Path

    from kubernaut_e2e.config import PROJECT_ROOT
    from kubernaut_e2e.config_sources import resolve

    section = c.config.get("e2e", {})
    # The config files Invoke read for this run: its system, user and project places with its file
    # name (invoke, or kubernaut-e2e for the command). Invoke keeps the places as private fields.
    name = c.config.file_prefix or c.config.prefix
    places = [getattr(c.config, f"_{level}_prefix", None) for level in ("system", "user", "project")]
    project = getattr(c.config, "_project_prefix", None)
    return resolve({k: section[k] for k in section}, overrides,
                   project_dir=Path(project) if project else PROJECT_ROOT, argv=sys.argv, environ=os.environ,
                   root=paths_root(c.config), prefixes=[f"{place}{name}." for place in places if place])


def _exits(fn: Callable[..., int | None]) -> Callable[..., None]:
    """Turn E2EError into Invoke's Exit with the error's exit code and a one-line message.

    stdout is wrapped so that a reader that stops reading (`| head -1`) ends the output
    quietly instead of with a BrokenPipeError traceback; the exit code stays the task's own.
    """

    @wraps(fn)
    def wrapper(c: Context, *args: Any, **kwargs: Any) -> None:
        from kubernaut_e2e.console import PipeSafe

        real_stdout = sys.stdout
        sys.stdout = PipeSafe(real_stdout)
        try:
            code = fn(c, *args, **kwargs)
        except E2EError as exc:
            raise Exit(f"e2e.{fn.__name__}: {exc}", code=exc.exit_code) from None
        finally:
            sys.stdout.flush()
            sys.stdout = real_stdout
        if code:
            raise Exit(code=code)

    return wrapper


@e2e_task(
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


@e2e_task(help={"keep-images": "Keep the built images; remove only the cluster and run state.",
            **{k: v for k, v in _COMMON_HELP.items() if k != "source-dir"}})
@_exits
def clean(c: Context, keep_images: bool = False, cluster_name: str | None = None,
          provider: str | None = None, state_dir: str | None = None, stack: str | None = None) -> int:
    """Delete the Kind cluster, the images this project built, and its run state.

    Idempotent: when there is nothing left it says so and exits 0 (without kind installed, too).
    Images another cluster still uses are kept, and named. Run logs are kept.
    Honors `invoke --dry e2e.clean`. Ctrl-C stops it (exit 130) with nothing left running.
    """
    from kubernaut_e2e.clean import run_clean

    cfg = _config(c, cluster_name=cluster_name, provider=provider, state_dir=state_dir, stack=stack)
    return run_clean(cfg, keep_images=keep_images, dry=bool(c.config.run.dry))


@e2e_task(iterable=["only"], help={"json": "Print the plan as JSON: {steps: [{name, needs, commands}]}.",
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


@e2e_task(iterable=["namespace"], help={
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

    from kubernaut_e2e.errors import Cancelled, Interrupted
    from kubernaut_e2e.runner import Cancellation
    from kubernaut_e2e.signals import owned_signals

    cfg = _config(c, cluster_name=cluster_name, state_dir=state_dir, stack=stack)
    session = Cancellation()
    try:
        with owned_signals(session):
            try:
                return run_diagnose(cfg, namespaces=namespace or [cfg.namespace], as_json=json_,
                                    out=Path(out).resolve() if out else None,
                                    logs=Path(logs).resolve() if logs else None, stream=sys.stdout,
                                    cancellation=session)
            except Cancelled:
                raise Interrupted(f"interrupted ({session.signal or 'SIGINT'})") from None
    except E2EError as exc:
        if json_:  # --json always prints JSON: a script reads the error from it, too
            print(json.dumps({"error": str(exc), "exit_code": exc.exit_code, "findings": []}, indent=2))
        raise


@e2e_task(iterable=["dockerfile"], help={
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


@e2e_task(help={
    "cluster-name": _COMMON_HELP["cluster-name"],
    "state-dir": _COMMON_HELP["state-dir"],
    "stack": _COMMON_HELP["stack"],
})
@_exits
def smoke(c: Context, cluster_name: str | None = None, state_dir: str | None = None,
          stack: str | None = None) -> int:
    """Prove the live environment works end to end: a signal in at the Gateway, its audit out of DataStorage.

    Creates a managed namespace with a pod, POSTs one Prometheus alert to the Gateway with a
    ServiceAccount token and an X-Timestamp (201 expected), checks the RemediationRequest, then
    reads the Gateway's audit events back from DataStorage over HTTPS verified against the
    environment's CA. Prints each hop with its latency; exit 1 naming the hop that failed.
    """
    from kubernaut_e2e.errors import Interrupted
    from kubernaut_e2e.runner import Cancellation
    from kubernaut_e2e.signals import owned_signals
    from kubernaut_e2e.smoke import check_inputs, run_smoke
    from kubernaut_e2e.up import new_run_dir

    cfg = _config(c, cluster_name=cluster_name, state_dir=state_dir, stack=stack)
    check_inputs(cfg)  # bad input: no run directory is made
    session = Cancellation()
    with owned_signals(session):
        code = run_smoke(cfg, cancellation=session, run_dir=new_run_dir(cfg))
    if session.interrupted:
        raise Interrupted(f"interrupted ({session.signal or 'SIGINT'})")
    return code


_REUSES_ENV_HELP = ("The suite was changed to reuse an existing environment: skip the check that it "
                    "stands up its own, and write the files it reads (the stack's suite.files, e.g. "
                    "~/.kube/gateway-e2e-config and ~/.kube/inter-service-ca.pem), announced.")


@e2e_task(help={
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


@e2e_task(help={
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


@e2e_task(help={
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
    ns = Collection("e2e", up, clean, plan, render, diagnose, toolchain, smoke, test, ci)
    ns.configure({"e2e": dict(DEFAULTS)})
    return ns
