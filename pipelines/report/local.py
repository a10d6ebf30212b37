"""The local target's side of the report: the execution and its steps from the state database, files from the
workspace, the model's approval from the local registry and the endpoint's state from its live server."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pipelines.report.artifacts import WorkspaceFiles
from pipelines.report.assemble import build_report
from pipelines.report.execution_view import ExecutionFacts
from pipelines.report.graph import StepFacts
from pipelines.report.model import ReportData
from pipelines.target_base import TargetError


def collect_local(target: Any, reference: str | None) -> ReportData:
    """`target` is a `pipelines.local.target.LocalTarget`; `reference` an execution id or ARN (None: the latest)."""
    summary = target.describe_execution(reference)  # resolves id/ARN/latest and says what to do when it cannot
    record = target.store.get_execution(summary.arn)
    if record is None:  # deleted between the two reads
        raise TargetError(f"execution {summary.arn} disappeared from the local workspace")
    steps = target.store.list_steps(record.id)
    hits = {step.name: hit["SourcePipelineExecutionArn"] for step in steps
            if (hit := (step.cache or {}).get("CacheHitResult"))}
    runs = {step.name: StepFacts(name=step.name, type=step.type, status=step.status, started=step.started,
                               ended=step.ended, failure_reason=step.failure_reason,
                               properties=step.properties or {}, property_files=step.property_files or {},
                               cache_hit_from=hits.get(step.name))
            for step in steps}
    facts = ExecutionFacts(target="local", pipeline_name=record.pipeline, arn=record.arn, status=record.status,
                           failure_reason=record.failure_reason, started=record.started, ended=record.ended,
                           parameters=record.parameters, definition=_parse(record.definition), runs=runs)
    sources = {name: arn.rsplit("/", 1)[-1] for name, arn in hits.items()}  # where the reused jobs' files are
    return build_report(facts, LocalLookups(target, record.id, sources))


def _parse(definition: str) -> dict[str, Any] | None:
    try:
        parsed = json.loads(definition)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


class LocalLookups:
    def __init__(self, target: Any, execution_id: str, cache_sources: Mapping[str, str] | None = None) -> None:
        self.target = target
        self.files = WorkspaceFiles(target.workspace, execution_id, cache_sources)

    def model_package(self, arn: str) -> Mapping[str, Any] | None:
        from pipelines.local.registry import ModelRegistry

        try:
            return ModelRegistry(self.target.store, self.target.config.project.region).describe(arn)
        except TargetError:
            return None  # the step's own properties describe it as registered

    def endpoint(self, name: str) -> tuple[Mapping[str, Any] | None, str | None]:
        from pipelines.local.endpoints import EndpointManager

        manager = EndpointManager(self.target.workspace, self.target.store, self.target.config.project.region)
        try:
            live = manager.describe(name)
        except TargetError:
            return None, None
        if live.get("status") == "Deleted":
            return None, None
        described = {"EndpointName": live["name"], "EndpointArn": live.get("arn"), "EndpointStatus": live["status"],
                     "EndpointConfigName": live.get("config"), "FailureReason": live.get("failure_reason")}
        return described, live.get("url")
