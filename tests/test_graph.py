from __future__ import annotations

import pytest

from kubernaut_e2e.errors import UsageError
from kubernaut_e2e.graph import Graph, Registry, Step
from kubernaut_e2e.config import load_config
from kubernaut_e2e.steps import build_registry


def _step(name: str, *needs: str, groups: tuple[str, ...] = ()) -> Step:
    return Step(name, body=lambda ctx: None, needs=needs, groups=groups)


def test_order_is_topological_and_stable():
    g = Graph.of([_step("c", "a", "b"), _step("a"), _step("b", "a")])
    assert g.order == ("a", "b", "c")


def test_unknown_need_and_cycles_are_rejected():
    with pytest.raises(ValueError, match="unknown step 'x'"):
        Graph.of([_step("a", "x")])
    with pytest.raises(ValueError, match="cycle"):
        Graph.of([_step("a", "b"), _step("b", "a")])
    with pytest.raises(ValueError, match="twice"):
        Graph.of([_step("a"), _step("a")])


def test_select_by_group_includes_what_it_needs():
    g = Graph.of([_step("pre"), _step("x", "pre", groups=("g",)), _step("y", "pre"), _step("z", "x")])
    assert set(g.select(["g"]).order) == {"pre", "x"}
    assert set(g.select(["z"]).order) == {"pre", "x", "z"}


def test_select_unknown_name_is_a_usage_error():
    g = Graph.of([_step("a")])
    with pytest.raises(UsageError, match="--only nope: no such step or group"):
        g.select(["nope"])


def test_registry_decorator_takes_first_docstring_line():
    reg = Registry()

    @reg.step("hello", needs=())
    def hello(ctx):  # type: ignore[no-untyped-def]
        """Say hello.

        More text."""

    assert reg.graph().steps["hello"].help == "Say hello."


def test_stack_dependencies_match_the_environment():
    g = build_registry(load_config({}).stack).graph()
    needs = {name: set(g.steps[name].needs) for name in g.order}
    # Builds need only preflight, so they overlap cluster creation; only loads need the cluster.
    assert needs["build-gateway"] == {"preflight"} and needs["build-datastorage"] == {"preflight"}
    assert needs["cluster"] == {"preflight"}
    assert needs["load-gateway"] == {"save-gateway", "cluster"}
    assert needs["preload-postgres"] == {"cluster"}
    assert needs["postgresql"] == {"namespace", "preload-postgres"}
    assert needs["migrations"] == {"postgresql"}
    assert needs["datastorage"] == {"crds", "migrations", "redis", "tls", "load-datastorage"}
    assert needs["gateway"] == {"crds", "datastorage", "tls", "load-gateway"}
    assert needs["health"] == {"postgresql", "redis", "datastorage", "gateway"}
    assert set(g.groups()["deploy"]) == {c.name for c in load_config({}).stack.components}
