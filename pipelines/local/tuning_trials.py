"""One tuning trial (a training job the tuner launched) and what the tuning job reports about its trials: the
HyperParameterTrainingJobSummary of each, the best one, and the status counters."""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from pipelines.local.container import utc_now


@dataclasses.dataclass
class Trial:
    number: int  # 0-based, in the order the strategy proposed it; the job name carries number + 1
    job_name: str
    tuned: dict[str, str]
    creation_time: str = dataclasses.field(default_factory=utc_now)
    status: str = "InProgress"
    arn: str = ""
    start_time: str | None = None
    end_time: str | None = None
    metric_value: float | None = None  # as reported, NaN included
    failure_reason: str | None = None
    curve: list[float] = dataclasses.field(default_factory=list)  # the objective's values, one an epoch
    # Set to stop the trial's job: early stopping (with its reason) or the execution's stop.
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    early_stop_reason: str | None = None

    @property
    def objective(self) -> float | None:
        """The value tuning ranks by; a NaN metric ranks nowhere."""
        value = self.metric_value
        return None if value is None or math.isnan(value) else value

    def summary(self, tuning_name: str, objective: Mapping[str, str]) -> dict[str, Any]:
        """The trial as a HyperParameterTrainingJobSummary."""
        summary: dict[str, Any] = {
            "TrainingJobName": self.job_name, "TrainingJobArn": self.arn, "TuningJobName": tuning_name,
            "CreationTime": self.creation_time, "TrainingJobStatus": self.status,
            "TunedHyperParameters": dict(self.tuned),
        }
        summary.update({key: value for key, value in (("TrainingStartTime", self.start_time),
                                                      ("TrainingEndTime", self.end_time),
                                                      ("FailureReason", self.failure_reason)) if value})
        if self.objective is not None:
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": objective["Type"], "MetricName": objective["MetricName"], "Value": self.objective}
        summary["ObjectiveStatus"] = {"InProgress": "Pending"}.get(
            self.status, "Succeeded" if self.objective is not None else "Failed")
        return summary


def final_metric(describe: Mapping[str, Any], metric_name: str) -> float | None:
    """The last value of `metric_name` in a DescribeTrainingJob response's FinalMetricDataList."""
    values = [item["Value"] for item in describe.get("FinalMetricDataList") or []
              if item.get("MetricName") == metric_name and item.get("Value") is not None]
    return float(values[-1]) if values else None


def best_trial(trials: list[Trial], objective_type: str) -> Trial | None:
    """The completed trial with the best objective; ties go to the earlier trial. An early-stopped trial is not a
    candidate: its model saw only part of its epochs, and the rule stopped it for being behind the median."""
    ranked = [(t.objective, t) for t in trials if t.status == "Completed" and t.objective is not None]
    if not ranked:
        return None
    sign = -1 if objective_type == "Maximize" else 1
    return min(ranked, key=lambda pair: (sign * pair[0], pair[1].number))[1]


def status_counters(trials: list[Trial]) -> tuple[dict[str, int], dict[str, int]]:
    """TrainingJobStatusCounters and ObjectiveStatusCounters; every local failure counts as non-retryable."""
    statuses = Counter(t.status for t in trials)
    jobs = {"Completed": statuses["Completed"], "InProgress": statuses["InProgress"], "RetryableError": 0,
            "NonRetryableError": statuses["Failed"], "Stopped": statuses["Stopped"]}
    # An early-stopped trial's objective is the last value it reported, as the service reports it.
    succeeded = sum(1 for t in trials if t.status in ("Completed", "Stopped") and t.objective is not None)
    objectives = {"Succeeded": succeeded, "Pending": statuses["InProgress"],
                  "Failed": len(trials) - succeeded - statuses["InProgress"]}
    return jobs, objectives
