"""What one execution says, as the report's builders read it: `ExecutionFacts` (gathered by a target's collector),
`Lookups` (what must be asked now) and `ExecutionView` (finds a section's step, says why a section is empty)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pipelines.report.artifacts import Files
from pipelines.report.graph import WAITING, StepFacts
from pipelines.report.model import ReportData
from pipelines.validation import iter_steps


@dataclass
class ExecutionFacts:
    target: str
    pipeline_name: str
    arn: str
    status: str
    failure_reason: str | None
    started: str | None
    ended: str | None
    parameters: dict[str, Any]
    definition: dict[str, Any] | None
    runs: dict[str, StepFacts] | None  # None: the target could not list the steps
    runs_missing: str | None = None  # why runs is None

    @property
    def execution_id(self) -> str:
        return self.arn.rstrip("/").rsplit("/", 1)[-1]


class Lookups(Protocol):
    @property
    def files(self) -> Files:
        """The jobs' output files."""
        ...

    def model_package(self, arn: str) -> Mapping[str, Any] | None:
        """DescribeModelPackage as of now."""
        ...

    def endpoint(self, name: str) -> tuple[Mapping[str, Any] | None, str | None]:
        """DescribeEndpoint as of now (None once deleted), and the URL it answers at."""
        ...


class ExecutionView:
    """Finds a section's step and says why a section is empty, in the same words everywhere."""

    def __init__(self, facts: ExecutionFacts, data: ReportData) -> None:
        self.facts, self.data = facts, data

    def definition_steps(self) -> Iterator[Mapping[str, Any]]:
        yield from iter_steps((self.facts.definition or {}).get("Steps") or [])

    def find(self, step_type: str) -> tuple[str | None, StepFacts | None]:
        """The step of a type that ran (the first one in the definition when none ran); its run, if any."""
        names = [str(s.get("Name")) for s in self.definition_steps() if s.get("Type") == step_type]
        runs = self.facts.runs or {}
        names += [name for name, run in runs.items() if run.type == step_type and name not in names]
        ran = [name for name in names if name in runs]
        name = next(iter(ran or names), None)
        return name, runs.get(name) if name else None

    def arguments(self, name: str) -> dict[str, Any]:
        """The step's request as the definition has it (expressions unresolved)."""
        step = next((s for s in self.definition_steps() if s.get("Name") == name), {})
        return dict(step.get("Arguments") or {})

    def described(self, name: str, run: StepFacts) -> dict[str, Any]:
        """The Describe* response; a step that failed early has little of it, so the request fills the rest."""
        return {**self.arguments(name), **(run.properties or {})}

    def absent(self, name: str | None, run: StepFacts | None, label: str) -> str:
        if name is None and self.facts.definition is None:
            return f"no {label} step ran, and the execution's definition could not be read"
        if name is None:
            return f"the pipeline has no {label} step"
        if self.facts.runs is None:
            return f"step results are not available: {self.data.missing.get('steps')}"
        node = next((n for n in self.data.steps if n.name == name), None)
        if run is None:
            why = node.detail if node and node.detail else ""
            return f"{name} has not started yet" if why == WAITING else f"{name} did not run: {why}".rstrip(": ")
        if run.status in ("Starting", "Executing"):
            return f"{name} is still running"
        return f"{name} {run.status.lower()}" + (f": {run.failure_reason}" if run.failure_reason else "")
