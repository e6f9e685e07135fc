"""Steps, their dependencies, and the registry they are declared in.

A step is declared once with the steps it needs (like a nox session with a decorator); the
graph is validated (unknown needs, cycles) when it is built, and a selection (`--only`) is a
set of step or group names closed over what they need.
"""
from __future__ import annotations

import graphlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernaut_e2e.errors import UsageError

#: A step body gets the run's StepContext (see kubernaut_e2e.steps) and returns the step's result.
Body = Callable[[Any], object]
#: What a step would run, for `e2e.plan`: human-readable commands, given the run's config.
PlanFn = Callable[[Any], list[str]]


@dataclass(frozen=True)
class Step:
    name: str
    body: Body
    needs: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    plan: PlanFn | None = None
    help: str = ""


@dataclass(frozen=True)
class Graph:
    """An immutable, validated set of steps in a deterministic topological order."""

    steps: Mapping[str, Step]
    order: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, steps: Iterable[Step]) -> Graph:
        by_name: dict[str, Step] = {}
        for step in steps:
            if step.name in by_name:
                raise ValueError(f"step {step.name!r} declared twice")
            by_name[step.name] = step
        for step in by_name.values():
            for need in step.needs:
                if need not in by_name:
                    raise ValueError(f"step {step.name!r} needs unknown step {need!r}")
        return cls(by_name, _topological(by_name))

    def groups(self) -> dict[str, tuple[str, ...]]:
        groups: dict[str, list[str]] = {}
        for name in self.order:
            for group in self.steps[name].groups:
                groups.setdefault(group, []).append(name)
        return {g: tuple(names) for g, names in groups.items()}

    def closure(self, names: Iterable[str]) -> set[str]:
        """The named steps plus everything they need, transitively."""
        todo, seen = list(names), set()
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.steps[name].needs)
        return seen

    def select(self, only: Iterable[str]) -> Graph:
        """Restrict to steps/groups in `only` and what they need; unknown names are usage errors."""
        only = [n for n in only if n]
        if not only:
            return self
        groups = self.groups()
        wanted: list[str] = []
        for name in only:
            if name in self.steps:
                wanted.append(name)
            elif name in groups:
                wanted.extend(groups[name])
            else:
                known = ", ".join([*self.order, *sorted(groups)])
                raise UsageError(f"--only {name}: no such step or group (known: {known})")
        keep = self.closure(wanted)
        return Graph({n: s for n, s in self.steps.items() if n in keep},
                     tuple(n for n in self.order if n in keep))

    def children(self) -> dict[str, tuple[str, ...]]:
        """The steps that need each step directly, in graph order. O(steps + needs)."""
        out: dict[str, list[str]] = {name: [] for name in self.order}
        for name in self.order:
            for need in dict.fromkeys(self.steps[name].needs):  # a need named twice counts once
                out[need].append(name)
        return {name: tuple(kids) for name, kids in out.items()}

    def remaining_path(self, weights: Mapping[str, float] | None = None) -> dict[str, float]:
        """Per step: its estimated duration plus the longest chain of steps that wait for it.

        This is what the scheduler ranks ready steps by (critical-path priority): starting the
        step with the most work behind it first is what keeps a wide graph from ending on a
        long tail. A step missing from `weights` counts 1 (no history: all steps alike).
        """
        weights = weights or {}
        children = self.children()
        path: dict[str, float] = {}
        for name in reversed(self.order):  # every dependent comes later in a topological order
            after = max((path[kid] for kid in children[name]), default=0.0)
            path[name] = max(0.0, float(weights.get(name, 1.0))) + after
        return path

    def dependents(self, name: str) -> set[str]:
        """Every step that needs `name`, directly or not."""
        out: set[str] = set()
        for other in self.order:
            if any(need == name or need in out for need in self.steps[other].needs):
                out.add(other)
        return out


def _topological(steps: Mapping[str, Step]) -> tuple[str, ...]:
    # graphlib in waves, each wave in declaration order, so plans and tables are stable.
    position = {name: i for i, name in enumerate(steps)}
    sorter = graphlib.TopologicalSorter({name: step.needs for name, step in steps.items()})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        raise ValueError(f"dependency cycle among steps: {' -> '.join(exc.args[1])}") from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return tuple(order)


class Registry:
    """Where steps are declared, with `@registry.step(...)` or `registry.add(Step(...))`."""

    def __init__(self) -> None:
        self._steps: list[Step] = []

    def add(self, step: Step) -> Step:
        self._steps.append(step)
        return step

    def step(
        self,
        name: str,
        *,
        needs: Iterable[str] = (),
        groups: Iterable[str] = (),
        plan: PlanFn | None = None,
    ) -> Callable[[Body], Body]:
        def decorate(body: Body) -> Body:
            doc = (body.__doc__ or "").strip().splitlines()
            self.add(Step(name, body, tuple(needs), tuple(groups), plan, doc[0] if doc else ""))
            return body

        return decorate

    def graph(self) -> Graph:
        return Graph.of(self._steps)
