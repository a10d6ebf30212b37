"""How a local step's record reads in `status` and `describe`: the facts worth a glance, shaped like the service's."""

from __future__ import annotations

from typing import Any

from pipelines.local.state import StepRecord
from pipelines.target_base import StepSummary


def step_summary(step: StepRecord) -> StepSummary:
    return StepSummary(name=step.name, type=step.type, status=step.status, failure_reason=step.failure_reason,
                       started=step.started, ended=step.ended, details=step_details(step))


def step_details(step: StepRecord) -> dict[str, Any]:
    """The facts worth a glance: live progress while running; after, what the step made and how it went."""
    properties = step.properties or {}
    retried = {"AttemptCount": step.attempt_count, "Retries": step.retries} if step.retries else {}
    if step.status == "Executing":
        return {**properties, **retried}
    details: dict[str, Any] = dict(retried)
    hit = (step.cache or {}).get("CacheHitResult")
    if hit:
        details["CacheHitResult"] = hit
    for key in ("ProcessingJobName", "TrainingJobName", "HyperParameterTuningJobName", "TransformJobName",
                "ModelPackageArn", "ModelApprovalStatus", "ModelName", "EndpointConfigName", "EndpointName",
                "EndpointStatus", "Outcome"):
        if key in properties:
            details[key] = properties[key]
    if "TransformJobName" in properties:  # where the batch read and wrote
        details["TransformInput"] = properties["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
        details["TransformOutput"] = properties["TransformOutput"]["S3OutputPath"]
    metrics = {m.get("MetricName"): m.get("Value") for m in properties.get("FinalMetricDataList", [])}
    if metrics:
        details["Metrics"] = metrics
    for key, label in (("DebugRuleEvaluationStatuses", "DebuggerRules"),
                       ("ProfilerRuleEvaluationStatuses", "ProfilerRules")):
        rules = {r.get("RuleConfigurationName"): r.get("RuleEvaluationStatus") for r in properties.get(key, [])}
        if rules:
            details[label] = rules
        # What a rule saw matters most when it found something (or could not judge): keep those details.
        findings = {r.get("RuleConfigurationName"): r.get("StatusDetails", "") for r in properties.get(key, [])
                    if r.get("RuleEvaluationStatus") not in ("NoIssuesFound", "InProgress")}
        if findings:
            details[f"{label}Details"] = findings
    best = properties.get("BestTrainingJob")
    if isinstance(best, dict):
        details["BestTrainingJob"] = {k: best[k] for k in ("TrainingJobName", "TunedHyperParameters",
                                                           "FinalHyperParameterTuningJobObjectiveMetric") if k in best}
    return details
