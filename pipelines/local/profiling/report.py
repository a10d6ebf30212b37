"""ProfilerReport: every built-in rule at once, plus what a person should change."""

from __future__ import annotations

from typing import Any, ClassVar

from pipelines.local.profiling.rules import (
    ERROR,
    ISSUES,
    NO_ISSUES,
    Evidence,
    Finding,
    ProfilerRule,
    RuleConfigError,
    coerce,
    quantile,
)
from pipelines.local.profiling.system_rules import (
    BatchSize,
    CPUBottleneck,
    GPUMemoryIncrease,
    IOBottleneck,
    LowGPUUtilization,
)
from pipelines.local.profiling.training_rules import Dataloader, OverallSystemUsage, StepOutlier

# The rules SageMaker's ProfilerReport runs (smdebug's profiler_report.py), less MaxInitializationTime and
# LoadBalancing, which need framework step events and several GPUs.
SUB_RULES: tuple[type[ProfilerRule], ...] = (CPUBottleneck, IOBottleneck, LowGPUUtilization, StepOutlier,
                                             GPUMemoryIncrease, BatchSize, OverallSystemUsage)
BUSY_CORE = 90.0  # a core above this is saturated (CPUBottleneck's cpu_threshold)
IDLE_NODE = 75.0  # the node's median CPU below this: some of its cores had time to spare


class ProfilerReport(ProfilerRule):
    """Runs CPUBottleneck, IOBottleneck, LowGPUUtilization, StepOutlier, GPUMemoryIncrease, BatchSize and
    OverallSystemUsage with their defaults, each overridable as `<Rule>_<parameter>` (smdebug_rulesconfig's
    ProfilerReport); IssuesFound when any of them triggered, as SageMaker's. Its detail adds recommendations from the
    timeline: DataLoader workers vs cores (the Dataloader rule's thresholds), a job that uses one of several cores,
    a CPU-bound job, memory nearly full; those are advice, they do not change the status (SageMaker's report shows
    them without triggering)."""

    name = "ProfilerReport"
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **parameters: Any) -> None:
        self.params: dict[str, Any] = {}
        self.overrides: dict[str, dict[str, Any]] = {}
        rules: tuple[type[ProfilerRule], ...] = (*SUB_RULES, Dataloader)
        known = {rule.name.lower(): rule for rule in rules}
        for key, value in parameters.items():
            rule_name, _, parameter = key.partition("_")
            rule = known.get(rule_name.lower())
            if rule is None or parameter.lower() not in rule.defaults:
                raise RuleConfigError(f"ProfilerReport parameter {key!r}: expected <Rule>_<parameter> of "
                                      f"{', '.join(r.name for r in known.values())}")
            self.overrides.setdefault(rule.name, {})[parameter.lower()] = coerce(value)
            self.params[key] = coerce(value)

    def sub_rules(self) -> list[ProfilerRule]:
        return [rule(**self.overrides.get(rule.name, {})) for rule in SUB_RULES]

    def evaluate(self, evidence: Evidence) -> Finding:
        findings = {rule.name: rule.evaluate(evidence) for rule in self.sub_rules()}
        advice = recommendations(evidence, findings, Dataloader(**self.overrides.get("Dataloader", {})))
        triggered = [name for name, finding in findings.items() if finding.triggered]
        failed = [name for name, finding in findings.items() if finding.status == ERROR]
        if triggered:
            status = ISSUES
            head = "; ".join(f"{name}: {findings[name].detail}" for name in triggered)
        elif failed:
            status, head = ERROR, findings[failed[0]].detail
        else:
            status, head = NO_ISSUES, f"none of {', '.join(findings)} triggered"
        detail = head + (". Recommendations: " + "; ".join(advice) if advice else "")
        report = self.finding(status, detail, max(f.report.get("Datapoints", 0) for f in findings.values())).report
        report["Details"] = {"Rules": {name: _sub_report(name, f) for name, f in findings.items()},
                             "Recommendations": advice}
        report["RuleTriggered"] = len(triggered)
        return Finding(status, detail, report)


def _sub_report(name: str, finding: Finding) -> dict[str, Any]:
    """A rule's profiler-reports/<Rule>.json: SageMaker's report, with its status, what it saw and, when it
    triggered, what to do."""
    rule = next((r for r in SUB_RULES if r.name == name), None)
    report = {"Status": finding.status, "Description": (rule.__doc__ or "").split("\n\n")[0].replace("\n", " "),
              "Detail": finding.detail, **finding.report}
    if finding.triggered and _recommendation_of(name):
        report["Recommendation"] = _recommendation_of(name)
    return report


def recommendations(evidence: Evidence, findings: dict[str, Finding], dataloader: Dataloader) -> list[str]:
    """What to change, most specific first; each names what was seen ('2 cores, 0 dataloader workers: ...')."""
    advice = [f"{name}: {_recommendation_of(name)}" for name, f in findings.items()
              if f.triggered and _recommendation_of(name)]
    timeline = evidence.timeline
    if timeline is None or timeline.error or not timeline.samples:
        return advice
    loader = dataloader.evaluate(evidence)
    if loader.triggered:
        advice.insert(0, loader.detail)
    advice.extend(usage_advice(evidence))
    return advice


def _recommendation_of(name: str) -> str:
    return next((rule.recommendation for rule in SUB_RULES if rule.name == name), "")


def usage_advice(evidence: Evidence) -> list[str]:
    """Advice from the timeline alone: a CPU-bound job, a job starved by other work on its cores, one busy core of
    several, memory nearly full. The job's own CPU (its process tree) tells its load from the machine's."""
    timeline = evidence.sampled
    samples, cores = timeline.samples, len(timeline.cores)
    job_p95 = quantile([s.JobCPUPercent for s in samples], 0.95)
    node_p50 = quantile([s.cpu_average for s in samples], 0.5)
    memory_max = max(s.MemoryUsedPercent for s in samples)
    plural = "s" * (cores != 1)
    advice = []
    if job_p95 >= BUSY_CORE * cores and not timeline.gpu_names:
        advice.append(f"the job kept all {cores} core{plural} busy (p95 {job_p95:.0f}% of a core, no GPU): it is "
                      f"CPU-bound, and more cores or a GPU instance would shorten it")
    elif node_p50 >= BUSY_CORE and job_p95 < 50 * cores:
        advice.append(f"other work kept the job's {cores} core{plural} busy (CPU p50 {node_p50:.0f}%) while the job "
                      f"itself used p95 {job_p95:.0f}% of a core: it competed for CPU (fewer parallel jobs would "
                      f"help)")
    elif cores >= 2 and len(samples) >= 3 and job_p95 <= 120 and node_p50 < IDLE_NODE:
        # one core of several busy while the others idle: the job does not use what it got
        advice.append(f"the job kept about one of its {cores} cores busy (p95 {job_p95:.0f}% of a core) while the "
                      f"others idled: its work runs on one thread, and more DataLoader workers or torch threads would "
                      f"use them")
    if memory_max >= 90:
        advice.append(f"memory was nearly full (max {memory_max:.0f}%): lower the batch size or the data cached in "
                      f"memory")
    return advice
