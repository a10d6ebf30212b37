"""The sagemaker target's side of the report: Describe*/List* responses of the execution and of each step's job,
and the jobs' S3 outputs (evaluation, output.tar.gz, rule outputs, profiler reports, system metrics).

A step's `Metadata` (ListPipelineExecutionSteps) names the job it ran; the job's Describe* response becomes the
step's properties, which is the shape the local engine stores, so `assemble.build_report` serves both targets.
A Describe* call that fails leaves that step without properties (its section says why); only a failure to read the
execution itself is an error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipelines.model_quality import sagemaker_endpoint_url
from pipelines.report.artifacts import S3Files
from pipelines.report.assemble import build_report
from pipelines.report.execution_view import ExecutionFacts
from pipelines.report.graph import StepFacts
from pipelines.report.model import ReportData
from pipelines.target_base import TargetError
from pipelines.validation import iter_steps

log = logging.getLogger(__name__)
AWS_ERRORS = (ClientError, BotoCoreError, NotImplementedError)

# ListPipelineExecutionSteps Metadata key -> the step type the definition uses.
METADATA_TYPES = {"TrainingJob": "Training", "ProcessingJob": "Processing", "TuningJob": "Tuning",
                  "RegisterModel": "RegisterModel", "Model": "Model", "Condition": "Condition", "Fail": "Fail",
                  "EndpointConfig": "EndpointConfig", "Endpoint": "Endpoint", "TransformJob": "Transform",
                  "Lambda": "Lambda", "Callback": "Callback", "QualityCheck": "QualityCheck",
                  "ClarifyCheck": "ClarifyCheck", "EMR": "EMR"}


def plain_values(value: Any) -> Any:
    """A boto3 response with its datetimes as ISO 8601 strings, as the local engine stores them."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: plain_values(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [plain_values(v) for v in value]
    return value


class SageMakerCollector:
    def __init__(self, client: Any, s3: Any, pipeline_name: str, region: str) -> None:
        self.client, self.s3, self.pipeline_name, self.region = client, s3, pipeline_name, region

    def collect(self, reference: str | None) -> ReportData:
        arn = self.resolve(reference)
        described = plain_values(self.client.describe_pipeline_execution(PipelineExecutionArn=arn))
        parameters = self.client.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)
        definition = self.definition(arn)
        runs, why = self.runs(arn, definition)
        status = described.get("PipelineExecutionStatus", "")
        facts = ExecutionFacts(
            target="sagemaker", pipeline_name=self.pipeline_name, arn=arn, status=status,
            failure_reason=described.get("FailureReason") or None, started=described.get("CreationTime"),
            ended=described.get("LastModifiedTime") if status in ("Succeeded", "Failed", "Stopped") else None,
            parameters={p["Name"]: p["Value"] for p in parameters.get("PipelineParameters", [])},
            definition=definition, runs=runs, runs_missing=why)
        return build_report(facts, SageMakerLookups(self.client, self.s3, self.region))

    def resolve(self, reference: str | None) -> str:
        if reference and reference.startswith("arn:"):
            return reference
        if reference:
            pipeline_arn = self.client.describe_pipeline(PipelineName=self.pipeline_name)["PipelineArn"]
            return f"{pipeline_arn}/execution/{reference}"
        latest = self.client.list_pipeline_executions(PipelineName=self.pipeline_name, SortBy="CreationTime",
                                                      SortOrder="Descending", MaxResults=1)
        summaries = latest.get("PipelineExecutionSummaries", [])
        if not summaries:
            raise TargetError(f"pipeline {self.pipeline_name} has no executions yet: run `start` first")
        return summaries[0]["PipelineExecutionArn"]

    def definition(self, arn: str) -> dict[str, Any] | None:
        try:
            text = self.client.describe_pipeline_definition_for_execution(PipelineExecutionArn=arn)
            parsed = json.loads(text.get("PipelineDefinition") or "null")
        except (*AWS_ERRORS, ValueError) as err:
            log.debug("no definition for %s: %s", arn, err)
            return None
        return parsed if isinstance(parsed, dict) else None

    def runs(self, arn: str, definition: dict[str, Any] | None) -> tuple[dict[str, StepFacts] | None, str | None]:
        try:
            pages = self.client.get_paginator("list_pipeline_execution_steps").paginate(PipelineExecutionArn=arn)
            listed = [step for page in pages for step in page.get("PipelineExecutionSteps", [])]
        except AWS_ERRORS as err:
            return None, f"ListPipelineExecutionSteps failed ({_error_text(err)})"
        types = _definition_types(definition)
        runs: dict[str, StepFacts] = {}
        for step in listed:  # newest attempt first: keep the first seen of each name
            if step.get("StepName") and step["StepName"] not in runs:
                runs[step["StepName"]] = self.step_facts(plain_values(step), types)
        return runs, None

    def step_facts(self, step: Mapping[str, Any], types: Mapping[str, str]) -> StepFacts:
        metadata = step.get("Metadata") or {}
        kind = next(iter(metadata), "")
        return StepFacts(name=step["StepName"], type=types.get(step["StepName"]) or METADATA_TYPES.get(kind, kind),
                       status=step.get("StepStatus", ""), started=step.get("StartTime"), ended=step.get("EndTime"),
                       failure_reason=step.get("FailureReason") or None,
                       properties=self.properties(kind, metadata.get(kind) or {}),
                       cache_hit_from=(step.get("CacheHitResult") or {}).get("SourcePipelineExecutionArn"))

    def properties(self, kind: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """The Describe* response of what the step made (its properties, as the local engine keeps them)."""
        name = str(metadata.get("Arn", "")).rsplit("/", 1)[-1]
        if kind == "Condition":
            return {"Outcome": str(metadata.get("Outcome", "")).lower() == "true"}
        if kind == "Fail":
            return {"ErrorMessage": metadata.get("ErrorMessage")}
        calls: dict[str, Callable[[], dict[str, Any]]] = {
            "TrainingJob": lambda: self.client.describe_training_job(TrainingJobName=name),
            "ProcessingJob": lambda: self.client.describe_processing_job(ProcessingJobName=name),
            "TuningJob": lambda: self.tuning_job(name),
            "RegisterModel": lambda: self.client.describe_model_package(ModelPackageName=metadata["Arn"]),
            "Model": lambda: {"ModelName": name, "ModelArn": metadata.get("Arn")},
            "EndpointConfig": lambda: self.client.describe_endpoint_config(EndpointConfigName=name),
            "Endpoint": lambda: self.client.describe_endpoint(EndpointName=name),
            "TransformJob": lambda: self.client.describe_transform_job(TransformJobName=name),
        }
        if kind not in calls or not name:
            return dict(metadata)
        try:
            return plain_values(calls[kind]())
        except AWS_ERRORS as err:
            log.debug("cannot describe %s %s: %s", kind, name, err)
            return dict(metadata)

    def tuning_job(self, name: str) -> dict[str, Any]:
        described = self.client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        pages = self.client.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
            HyperParameterTuningJobName=name)
        summaries = [job for page in pages for job in page.get("TrainingJobSummaries", [])]
        return {**described, "TrainingJobSummaries": summaries}


def _definition_types(definition: dict[str, Any] | None) -> dict[str, str]:
    return {str(s.get("Name")): str(s.get("Type")) for s in iter_steps((definition or {}).get("Steps") or [])}


def _error_text(err: Exception) -> str:
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        return f"{error.get('Code', '')}: {error.get('Message', '')}".strip(": ")
    return str(err) or type(err).__name__


class SageMakerLookups:
    def __init__(self, client: Any, s3: Any, region: str) -> None:
        self.client, self.region = client, region
        self.files = S3Files(s3)

    def model_package(self, arn: str) -> Mapping[str, Any] | None:
        try:
            return plain_values(self.client.describe_model_package(ModelPackageName=arn))
        except AWS_ERRORS:
            return None

    def endpoint(self, name: str) -> tuple[Mapping[str, Any] | None, str | None]:
        try:
            described = plain_values(self.client.describe_endpoint(EndpointName=name))
        except AWS_ERRORS:
            return None, None  # "Could not find endpoint": deleted since
        return described, sagemaker_endpoint_url(self.region, name)
