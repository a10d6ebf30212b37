"""The step graph of a pipeline definition: what each step waits for, and which condition branch it belongs to.

A step depends on
- every step its arguments read (`Get Steps.X...`, `Std:JsonGet` of X's PropertyFiles, conditions included),
- every step in its `DependsOn`,
- for a step in a condition's IfSteps/ElseSteps: the condition step. It runs only when the condition picked its
  branch; a step of the other branch does not run and does not appear, as on SageMaker — nor does any step that
  depends on a step that did not run.
The graph is checked before anything runs: unknown step types, references to steps that do not exist and cycles
fail the execution at start, with the step named.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.local.expressions import referenced_steps

CONTROL_STEP_TYPES = ("Condition", "Fail")


class DefinitionError(Exception):
    """The definition cannot be run locally; the message names the step(s) at fault."""


@dataclass(frozen=True)
class StepNode:
    name: str
    type: str
    step: Mapping[str, Any]
    depends_on: frozenset[str]
    # (condition step, the outcome that runs this step); None for a step outside any branch.
    branch: tuple[str, bool] | None = None


def build_graph(definition: Mapping[str, Any], runnable_types: Collection[str]) -> dict[str, StepNode]:
    """Every step of the definition (branch steps included), in definition order; DefinitionError when unrunnable."""
    nodes: dict[str, StepNode] = {}
    _add_steps(definition.get("Steps", []), None, nodes)
    _check_types(nodes.values(), runnable_types)
    _check_references(nodes)
    _check_acyclic(nodes)
    return nodes


def _add_steps(steps: Iterable[Mapping[str, Any]], branch: tuple[str, bool] | None,
               nodes: dict[str, StepNode]) -> None:
    for step in steps:
        name, arguments = step.get("Name"), step.get("Arguments", {})
        if not isinstance(name, str):
            raise DefinitionError(f"a step has no Name: {dict(step)!r:.200}")
        if name in nodes:
            raise DefinitionError(f"two steps are named {name}: step names must be unique")
        depends_on = referenced_steps(arguments) | set(step.get("DependsOn", []))
        if branch is not None:
            depends_on.add(branch[0])
        nodes[name] = StepNode(name, str(step.get("Type")), step, frozenset(depends_on), branch)
        if step.get("Type") == "Condition":
            _add_steps(arguments.get("IfSteps", []), (name, True), nodes)
            _add_steps(arguments.get("ElseSteps", []), (name, False), nodes)


def _check_types(nodes: Iterable[StepNode], runnable_types: Collection[str]) -> None:
    known = [*runnable_types, *CONTROL_STEP_TYPES]
    unknown = [node for node in nodes if node.type not in known]
    if unknown:
        named = "; ".join(f"step {node.name} has type {node.type!r}" for node in unknown)
        raise DefinitionError(f"{named}, which the local engine does not run (it runs: {', '.join(known)})")


def _check_references(nodes: Mapping[str, StepNode]) -> None:
    for node in nodes.values():
        missing = sorted(node.depends_on - nodes.keys())
        if missing:
            raise DefinitionError(f"step {node.name} depends on steps that do not exist: {', '.join(missing)}")


def _check_acyclic(nodes: Mapping[str, StepNode]) -> None:
    waiting = {name: set(node.depends_on) for name, node in nodes.items()}
    while waiting:
        free = [name for name, deps in waiting.items() if not deps]
        if not free:
            raise DefinitionError(f"steps {', '.join(sorted(waiting))} depend on each other (a cycle): none can start")
        for name in free:
            del waiting[name]
        for deps in waiting.values():
            deps.difference_update(free)
