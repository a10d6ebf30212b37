"""What every profiler rule shares: parameters, the evidence it reads, the finding it returns, and the scan.

The semantics and defaults are those of SageMaker's built-in profiler rules (the `ProfilerRule` classes of
smdebug_rulesconfig, which the definition's RuleParameters come from, and their implementations in
sagemaker-debugger `smdebug/profiler/analysis/rules/`). SageMaker scans the timeline every `scan_interval_us` and
a rule's status turns IssuesFound at the first scan whose condition holds; locally the whole timeline exists when
the rules run, so `scan_ends` replays those scans over it and a rule reports the first one that fired.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from pipelines.local.profiling.joblog import JobFacts
from pipelines.local.profiling.timeline import Sample, Timeline

NO_ISSUES, ISSUES, ERROR = "NoIssuesFound", "IssuesFound", "Error"
STATUS_DETAILS_MAX = 1024  # DescribeTrainingJob's StatusDetails is at most 1024 characters
NO_GPU = "no GPU on this machine"


class RuleConfigError(ValueError):
    """RuleParameters the rule does not take (SageMaker's rule container fails to construct the rule)."""


@dataclass
class Evidence:
    """Everything a rule may read: the sampled timeline (None when nothing was sampled, and why) and the log."""

    timeline: Timeline | None
    facts: JobFacts = field(default_factory=JobFacts)
    unavailable: str = "no system metrics were collected for this job"

    @property
    def sampled(self) -> Timeline:
        """The timeline, for a rule's `check` (`ProfilerRule.evaluate` calls it only when there is one)."""
        if self.timeline is None:
            raise ValueError(f"a rule's check ran without a timeline: {self.unavailable}")
        return self.timeline


@dataclass
class Finding:
    status: str
    detail: str
    # SageMaker's per-rule report (profiler-reports/<Rule>.json): RuleTriggered, Violations, Datapoints,
    # RuleParameters ("name:value" lines) and Details.
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def triggered(self) -> bool:
        return self.status == ISSUES


def coerce(value: Any) -> Any:
    """RuleParameters arrive as strings ("70", "0.5", "None"); the rules compare numbers, as the SDK's classes do."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text in ("None", "null", ""):
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class ProfilerRule:
    """One built-in rule: `defaults` are AWS's, overridden by RuleParameters; `check` holds the semantics."""

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]]
    # SageMaker's report notebook's recommendation, shown by ProfilerReport when the rule triggered
    recommendation: ClassVar[str] = ""

    def __init__(self, **parameters: Any) -> None:
        unknown = sorted(set(parameters) - set(self.defaults))
        if unknown:
            raise RuleConfigError(f"{self.name} takes no parameter {', '.join(unknown)} "
                                  f"(it takes {', '.join(self.defaults)})")
        self.params = {**self.defaults, **{key: coerce(value) for key, value in parameters.items()}}

    def __getitem__(self, name: str) -> Any:
        return self.params[name]

    def evaluate(self, evidence: Evidence) -> Finding:
        timeline = evidence.timeline
        if timeline is None:
            return self.finding(ERROR, evidence.unavailable)
        if timeline.error:
            return self.finding(ERROR, f"the local profiler failed, so the rule cannot judge the job: "
                                       f"{timeline.error}")
        if not timeline.samples:
            return self.finding(NO_ISSUES, f"the job ended before the first sample ({timeline.interval_ms} ms "
                                           f"interval): nothing to check")
        return self.check(evidence)

    def check(self, evidence: Evidence) -> Finding:
        raise NotImplementedError

    def finding(self, status: str, detail: str, datapoints: int = 0, violations: int = 0,
                details: Mapping[str, Any] | None = None) -> Finding:
        report = {"RuleTriggered": int(status == ISSUES), "Violations": violations, "Datapoints": datapoints,
                  "RuleParameters": "\n".join(f"{k}:{v}" for k, v in self.params.items()),
                  "Details": dict(details or {})}
        return Finding(status, detail, report)


# ---------------------------------------------------------------------------------------------- helpers
def scan_ends(timestamps: Sequence[float], scan_interval_us: float) -> Iterator[int]:
    """The sample counts at which SageMaker's scans would have evaluated the rule: one each `scan_interval_us`
    of timeline, and one at the end."""
    if not timestamps:
        return
    step = max(float(scan_interval_us or 0) / 1e6, 1e-3)
    first = timestamps[0]
    for index in range(1, len(timestamps)):
        if (timestamps[index] - first) // step != (timestamps[index - 1] - first) // step:
            yield index
    yield len(timestamps)


def quantile(values: Sequence[float], q: float) -> float:
    """numpy's linear quantile, as smdebug computes it; 0 for no values."""
    return float(np.quantile(np.asarray(values, dtype=float), q)) if len(values) else 0.0


def stats(values: Sequence[float]) -> dict[str, float]:
    """OverallSystemUsage's summary of one metric."""
    if not len(values):
        return {}
    return {"max": round(max(values), 2), "p99": round(quantile(values, 0.99), 2),
            "p95": round(quantile(values, 0.95), 2), "p50": round(quantile(values, 0.50), 2),
            "min": round(min(values), 2)}


def gpu_series(samples: Sequence[Sample], gpu: str, memory: bool = False) -> tuple[list[float], list[float]]:
    """(values, timestamps) of one GPU's utilization (or memory use) over the samples that have it."""
    values, stamps = [], []
    for sample in samples:
        source = sample.GPUMemoryUtilization if memory else sample.GPUUtilization
        if gpu in source:
            values.append(source[gpu])
            stamps.append(sample.Timestamp)
    return values, stamps


def when(evidence: Evidence, timestamp: float) -> str:
    """'95 s into the job (epoch 3)': where on the timeline something was seen."""
    text = f"{max(0.0, evidence.sampled.elapsed(timestamp)):.0f} s into the job"
    epoch = evidence.facts.epoch_at(timestamp)
    return f"{text} (epoch {epoch})" if epoch is not None else text


def patience_note(datapoints: int, patience: int) -> str:
    """Why a rule that has not seen `patience` datapoints stays quiet, as SageMaker's does on a short job."""
    return (f"only {datapoints} datapoints, not more than patience={patience}: the rule starts judging after "
            f"{patience} (lower patience in [profiler.rule_parameters] for short jobs)")
