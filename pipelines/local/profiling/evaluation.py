"""The request's ProfilerRuleConfigurations, evaluated over a job's timeline: DescribeTrainingJob's
`ProfilerRuleEvaluationStatuses`.

Pure: it reads the timeline it is given and the job's log and metrics.json in `job_dir`, and writes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.local.container import DEFAULT_REGION, job_arn, utc_now
from pipelines.local.profiling.joblog import read_job_facts
from pipelines.local.profiling.report import ProfilerReport
from pipelines.local.profiling.rules import (
    ERROR,
    STATUS_DETAILS_MAX,
    Evidence,
    Finding,
    ProfilerRule,
    RuleConfigError,
)
from pipelines.local.profiling.system_rules import (
    BatchSize,
    CPUBottleneck,
    GPUMemoryIncrease,
    IOBottleneck,
    LowGPUUtilization,
)
from pipelines.local.profiling.timeline import Timeline
from pipelines.local.profiling.training_rules import Dataloader, OverallSystemUsage, StepOutlier

RULES: dict[str, type[ProfilerRule]] = {rule.name: rule for rule in (
    ProfilerReport, CPUBottleneck, IOBottleneck, LowGPUUtilization, BatchSize, StepOutlier, GPUMemoryIncrease,
    OverallSystemUsage, Dataloader)}


@dataclass
class RuleResult:
    configuration_name: str
    rule_name: str
    finding: Finding


def run_rules(request: Mapping[str, Any], timeline: Timeline | None, job_dir: Path,
              unavailable: str | None = None) -> list[RuleResult]:
    """Each configured rule's finding, in the request's order. A rule that cannot run reports Error, never raises."""
    evidence = Evidence(timeline, read_job_facts(job_dir))
    if unavailable:
        evidence.unavailable = unavailable
    results = []
    for configuration in request.get("ProfilerRuleConfigurations") or []:
        name = configuration.get("RuleConfigurationName", "")
        parameters = dict(configuration.get("RuleParameters") or {})
        rule_name = str(parameters.pop("rule_to_invoke", name))
        results.append(RuleResult(name, rule_name, _evaluate(rule_name, parameters, evidence)))
    return results


def _evaluate(rule_name: str, parameters: dict[str, Any], evidence: Evidence) -> Finding:
    rule = RULES.get(rule_name)
    if rule is None:
        return Finding(ERROR, f"{rule_name} is not evaluated by the local engine (it evaluates "
                              f"{', '.join(RULES)})")
    try:
        return rule(**parameters).evaluate(evidence)
    except RuleConfigError as exc:
        return Finding(ERROR, f"RuleParameters: {exc}")
    except Exception as exc:  # a rule's bug must not fail the job it judges
        return Finding(ERROR, f"the rule failed locally: {type(exc).__name__}: {exc}")


def status_items(results: list[RuleResult], job_name: str, region: str = DEFAULT_REGION) -> list[dict[str, Any]]:
    """ProfilerRuleEvaluationStatus items, as DescribeTrainingJob returns them."""
    now = utc_now()
    return [{
        "RuleConfigurationName": result.configuration_name,
        "RuleEvaluationJobArn": job_arn("processing-job", rule_job_name(job_name, result.configuration_name),
                                        region),
        "RuleEvaluationStatus": result.finding.status,
        "StatusDetails": _clip(result.finding.detail),
        "LastModifiedTime": now,
    } for result in results]


def evaluate_profiler_rules(request: Mapping[str, Any], timeline: Timeline | None, job_dir: Path, *,
                            job_name: str | None = None, region: str = DEFAULT_REGION,
                            unavailable: str | None = None) -> list[dict[str, Any]]:
    """`ProfilerRuleEvaluationStatuses` for `request`'s rules over `timeline` (None: nothing was sampled, and
    `unavailable` says why); `job_dir` holds the job's job.log and metrics.json and names the job by default."""
    results = run_rules(request, timeline, job_dir, unavailable)
    return status_items(results, job_name or job_dir.name, region)


def rule_job_name(job_name: str, configuration_name: str) -> str:
    """The rule's processing job, named like the service's: `<job>-<Rule>-<8 hex>`, at most 63 characters."""
    digest = hashlib.sha1(f"{job_name}/{configuration_name}".encode()).hexdigest()[:8]
    rule = "".join(c if c.isalnum() else "-" for c in configuration_name)[:24]
    return f"{job_name[:63 - len(rule) - 10]}-{rule}-{digest}"


def _clip(text: str) -> str:
    return text if len(text) <= STATUS_DETAILS_MAX else text[:STATUS_DETAILS_MAX - 1] + "…"
