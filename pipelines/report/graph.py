"""The DAG section's data: every step of the definition, how it ran, and what it waited for.

Dependencies come from the local engine's reading of the definition (`pipelines.local.dag`: `Get`/`JsonGet`
references, DependsOn, condition branches), the same on both targets. Edges implied by others are dropped for the
picture (PrepareData -> EvaluateModel is implied by PrepareData -> ... -> TrainModel -> EvaluateModel).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.local.dag import DefinitionError, build_graph
from pipelines.report.model import StepNode, seconds_between
from pipelines.validation import iter_steps

RUNNING = ("Starting", "Executing", "Stopping")
WAITING = "waiting for the steps before it"


@dataclass
class StepFacts:
    """One step as the target reports it: status, times and its Describe*-shaped properties."""

    name: str
    type: str
    status: str
    started: str | None = None
    ended: str | None = None
    failure_reason: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    property_files: dict[str, Any] = field(default_factory=dict)
    cache_hit_from: str | None = None  # the execution whose result a cache hit reused


def step_nodes(definition: Mapping[str, Any] | None, runs: Mapping[str, StepFacts] | None,
               execution_status: str) -> list[StepNode]:
    """Definition order; steps that ran but are not in the definition (should not happen) come last."""
    graph = _graph(definition)
    reduced = _reduce({name: deps for name, (_, deps, _) in graph.items()})
    nodes = []
    for name, (step_type, _, branch) in graph.items():
        run = runs.get(name) if runs is not None else None
        node = StepNode(name=name, type=step_type, status="Unknown" if runs is None else "NotRun",
                        depends_on=sorted(reduced[name]), branch=branch)
        if run is not None:
            _fill(node, run)
        elif runs is not None:
            node.detail = _why_not_run(branch, runs, execution_status)
        nodes.append(node)
    for name, run in (runs or {}).items():
        if name not in graph:
            node = StepNode(name=name, type=run.type, status=run.status)
            _fill(node, run)
            nodes.append(node)
    return nodes


def _graph(definition: Mapping[str, Any] | None) -> dict[str, tuple[str, set[str], tuple[str, bool] | None]]:
    """name -> (type, dependencies, branch); no edges when the definition cannot be read."""
    if not definition:
        return {}
    steps = list(iter_steps(definition.get("Steps") or []))
    try:
        nodes = build_graph(definition, {str(step.get("Type")) for step in steps})
    except (DefinitionError, KeyError, TypeError, AttributeError):
        return {str(s.get("Name")): (str(s.get("Type")), set(), None) for s in steps if s.get("Name")}
    return {name: (node.type, set(node.depends_on), node.branch) for name, node in nodes.items()}


def _reduce(dependencies: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """Transitive reduction: keep d -> n only when no other dependency of n already waits for d."""
    ancestors: dict[str, set[str]] = {}

    def of(name: str) -> set[str]:  # the graph is acyclic: build_graph checked
        if name not in ancestors:
            ancestors[name] = set().union(*({dep} | of(dep) for dep in dependencies.get(name, ())))
        return ancestors[name]

    return {name: {d for d in deps if not any(d in of(other) for other in deps if other != d)}
            for name, deps in dependencies.items()}


def _fill(node: StepNode, run: StepFacts) -> None:
    node.status, node.started, node.ended = run.status, run.started, run.ended
    node.failure_reason = run.failure_reason
    node.duration_s = seconds_between(run.started, run.ended)
    node.detail = step_detail(run)


def step_detail(run: StepFacts) -> str | None:
    """One line of what the step made or decided."""
    properties = run.properties or {}
    if run.cache_hit_from:
        made = next((properties[key] for key in ("HyperParameterTuningJobName", "TrainingJobName",
                                                  "ProcessingJobName") if properties.get(key)), "its result")
        return f"cache hit: {made} of execution {run.cache_hit_from.rsplit('/', 1)[-1]}"
    if "Outcome" in properties:
        return f"outcome: {str(properties['Outcome']).lower()}"
    if run.type == "RegisterModel" and properties.get("ModelPackageVersion") is not None:
        return f"version {properties['ModelPackageVersion']} ({properties.get('ModelApprovalStatus', '')})"
    for key in ("HyperParameterTuningJobName", "TrainingJobName", "ProcessingJobName", "EndpointName",
                "EndpointConfigName", "ModelName", "ErrorMessage"):
        if properties.get(key):
            return str(properties[key])
    return None


def _why_not_run(branch: tuple[str, bool] | None, runs: Mapping[str, StepFacts], execution_status: str) -> str:
    if branch is not None:
        condition = runs.get(branch[0])
        outcome = (condition.properties or {}).get("Outcome") if condition else None
        if isinstance(outcome, bool) and outcome != branch[1]:
            return f"{branch[0]} was {str(outcome).lower()}"
    if execution_status in RUNNING:
        return WAITING
    if execution_status in ("Failed", "Stopped"):
        return f"the execution {execution_status.lower()} before it"
    return "no step it depends on ran"
