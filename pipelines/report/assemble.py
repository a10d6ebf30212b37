"""`build_report`: ReportData from what a target says about one execution. The same code serves both targets.

A target's collector (`local.py`, `sagemaker.py`) gathers `ExecutionFacts` — the execution, its definition and its
steps with Describe*-shaped properties — and offers `Lookups` for what must be asked now (the model's approval may
have changed since the step ran; the endpoint may be gone). Everything else is read from the jobs' output files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pipelines.report.artifacts import Files, parent_uri, read_json
from pipelines.report.graph import WAITING, StepFacts, step_nodes
from pipelines.report.model import ReportData
from pipelines.report.sections import endpoint_section, evaluation_section, model_section, number, tuning_section
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
    files: Files

    def model_package(self, arn: str) -> Mapping[str, Any] | None:
        """DescribeModelPackage as of now."""
        ...

    def endpoint(self, name: str) -> tuple[Mapping[str, Any] | None, str | None]:
        """DescribeEndpoint as of now (None once deleted), and the URL it answers at."""
        ...


def build_report(facts: ExecutionFacts, lookups: Lookups) -> ReportData:
    from pipelines.report.collect_training import add_training

    data = ReportData(target=facts.target, pipeline_name=facts.pipeline_name, execution_arn=facts.arn,
                      execution_id=facts.execution_id, status=facts.status,
                      generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
                      failure_reason=facts.failure_reason, started=facts.started, ended=facts.ended,
                      parameters=dict(facts.parameters))
    data.steps = step_nodes(facts.definition, facts.runs, facts.status)
    if facts.runs is None:
        data.missing["steps"] = facts.runs_missing or "the target did not list the execution's steps"
    view = ExecutionView(facts, data)
    _add_tuning(view)
    add_training(view, lookups.files)
    _add_evaluation(view, lookups.files)
    _add_model(view, lookups)
    _add_endpoint(view, lookups)
    return data


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
        name = (ran or names or [None])[0]
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


def _add_tuning(view: ExecutionView) -> None:
    name, run = view.find("Tuning")
    if run is None or not (run.properties or {}).get("HyperParameterTuningJobName"):
        view.data.missing["tuning"] = view.absent(name, run, "tuning")
        return
    described = view.described(name, run)
    view.data.tuning = tuning_section(described, described.get("TrainingJobSummaries"))


# ---------------------------------------------------------------------------------------------- evaluation
def _add_evaluation(view: ExecutionView, files: Files) -> None:
    name, run, property_file = _evaluation_step(view)
    if run is None or run.status != "Succeeded" or property_file is None:
        view.data.missing["evaluation"] = view.absent(name, run, "evaluation (a Processing step with a PropertyFile)")
        return
    uri = _output_uri(view.described(name, run), property_file)
    document = read_json(files, uri) if uri else None
    source = uri or "the step's property file"
    if document is None:
        document, source = (run.property_files or {}).get(property_file.get("PropertyFileName")), "property file"
    folder = parent_uri(uri) if uri else None
    evaluation = evaluation_section(document, read_json(files, f"{folder}/confusion_matrix.json") if folder else None,
                                    files.read(f"{folder}/confusion_matrix.png") if folder else None, source)
    if evaluation is None:
        view.data.missing["evaluation"] = f"{name} succeeded but its report was not found (looked for {source})"
        return
    evaluation.threshold, evaluation.gate_passed = _gate(view, name)
    view.data.evaluation = evaluation


def _evaluation_step(view: ExecutionView) -> tuple[str | None, StepFacts | None, Mapping[str, Any] | None]:
    runs = view.facts.runs or {}
    for step in view.definition_steps():
        if step.get("Type") == "Processing" and step.get("PropertyFiles"):
            return str(step["Name"]), runs.get(str(step["Name"])), step["PropertyFiles"][0]
    return None, None, None


def _output_uri(described: Mapping[str, Any], property_file: Mapping[str, Any]) -> str | None:
    for output in (described.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
        uri = (output.get("S3Output") or {}).get("S3Uri")
        if output.get("OutputName") == property_file.get("OutputName") and isinstance(uri, str):
            return f"{uri.rstrip('/')}/{property_file.get('FilePath', '').lstrip('/')}"
    return None


def _gate(view: ExecutionView, evaluation_step: str) -> tuple[float | None, bool | None]:
    """The threshold of the condition that reads the evaluation, and which way it went."""
    for step in view.definition_steps():
        conditions = (step.get("Arguments") or {}).get("Conditions") or []
        if step.get("Type") != "Condition" or f"Steps.{evaluation_step}." not in json.dumps(conditions):
            continue
        right = conditions[0].get("RightValue") if conditions else None
        if isinstance(right, Mapping) and str(right.get("Get", "")).startswith("Parameters."):
            right = view.facts.parameters.get(right["Get"].split(".", 1)[1])
        run = (view.facts.runs or {}).get(str(step.get("Name")))
        outcome = (run.properties or {}).get("Outcome") if run else None
        return number(right), outcome if isinstance(outcome, bool) else None
    return None, None


# ---------------------------------------------------------------------------------------------- model, endpoint
def _add_model(view: ExecutionView, lookups: Lookups) -> None:
    name, run = view.find("RegisterModel")
    arn = (run.properties or {}).get("ModelPackageArn") if run else None
    if run is None or not arn:
        view.data.missing["model"] = view.absent(name, run, "RegisterModel")
        return
    described = lookups.model_package(arn) or run.properties
    accuracy = view.data.evaluation.accuracy if view.data.evaluation else None
    if accuracy is None:
        statistics = ((described.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}
        registered = evaluation_section(read_json(lookups.files, statistics.get("S3Uri", "")), None, None, "")
        accuracy = registered.accuracy if registered else None
    view.data.model = model_section(described, accuracy)


def _add_endpoint(view: ExecutionView, lookups: Lookups) -> None:
    name, run = view.find("Endpoint")
    deployed = (run.properties or {}) if run else {}
    if run is None or not deployed.get("EndpointName"):
        view.data.missing["endpoint"] = view.absent(name, run, "Endpoint")
        return
    now, url = lookups.endpoint(deployed["EndpointName"])
    endpoint = endpoint_section(now or deployed, url, _instance_type(view))
    if now is None:
        endpoint.status, endpoint.url = "Deleted", None
        endpoint.note = "the endpoint no longer exists: it was deleted after this execution deployed it"
    elif now.get("EndpointConfigName") != deployed.get("EndpointConfigName"):
        endpoint.note = (f"this execution deployed config {deployed.get('EndpointConfigName')}; the endpoint now "
                         f"serves {now.get('EndpointConfigName')} (a later deployment)")
    view.data.endpoint = endpoint


def _instance_type(view: ExecutionView) -> str | None:
    _, run = view.find("EndpointConfig")
    variants = (run.properties or {}).get("ProductionVariants") if run else None
    return variants[0].get("InstanceType") if variants else None
