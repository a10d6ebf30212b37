"""`build_report`: ReportData from what a target says about one execution. The same code serves both targets.

A target's collector (`local.py`, `sagemaker.py`) gathers `ExecutionFacts` — the execution, its definition and its
steps with Describe*-shaped properties — and offers `Lookups` for what must be asked now (the model's approval may
have changed since the step ran; the endpoint may be gone). Everything else is read from the jobs' output files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pipelines.report.artifacts import Files, parent_uri, read_json
from pipelines.report.collect_batch import add_batch
from pipelines.report.collect_explain import add_explanation
from pipelines.report.collect_training import add_training
from pipelines.report.execution_view import ExecutionFacts, ExecutionView, Lookups
from pipelines.report.graph import StepFacts, step_nodes
from pipelines.report.model import ReportData
from pipelines.report.sections import endpoint_section, evaluation_section, model_section, number, tuning_section


def build_report(facts: ExecutionFacts, lookups: Lookups) -> ReportData:
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
    add_explanation(view, lookups.files)
    _add_model(view, lookups)
    _add_endpoint(view, lookups)
    add_batch(view, lookups.files)
    return data


def _add_tuning(view: ExecutionView) -> None:
    name, run = view.find("Tuning")
    if run is None or name is None or not (run.properties or {}).get("HyperParameterTuningJobName"):
        view.data.missing["tuning"] = view.absent(name, run, "tuning")
        return
    described = view.described(name, run)
    view.data.tuning = tuning_section(described, described.get("TrainingJobSummaries"))


# ---------------------------------------------------------------------------------------------- evaluation
def _add_evaluation(view: ExecutionView, files: Files) -> None:
    name, run, property_file = _evaluation_step(view)
    if run is None or name is None or run.status != "Succeeded" or property_file is None:
        view.data.missing["evaluation"] = view.absent(name, run, "evaluation (a Processing step with a PropertyFile)")
        return
    uri = _output_uri(view.described(name, run), property_file)
    document = read_json(files, uri) if uri else None
    source = uri or "the step's property file"
    if document is None:
        document, source = (run.property_files or {}).get(property_file.get("PropertyFileName", "")), "property file"
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
