"""TrainingJobEarlyStoppingType Auto in the local tuner: SageMaker's median rule, applied as a trial's log reports
its objective, and the stop of an execution reaching trials that are running."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from test_tuning import METRIC, make_run, tuning_request

from pipelines.local.early_stopping import MedianStoppingRule
from pipelines.local.step_api import StepFailed, StepRun
from pipelines.local.tuning import TuningJobHandler


def test_the_median_rule_compares_with_running_averages_of_finished_jobs_to_the_same_epoch() -> None:
    rule = MedianStoppingRule("Maximize", METRIC)
    assert rule.verdict([0.1]) is None  # nothing finished yet: nothing to compare with
    rule.add_finished([0.5, 0.7, 0.9])
    rule.add_finished([0.6, 0.8, 0.9])
    assert rule.verdict([0.6]) is None  # median of 0.5 and 0.6 is 0.55
    assert rule.verdict([0.5]) == (f"early stopping (Auto): {METRIC}=0.5 after epoch 1 is below the median 0.55 of "
                                   "the running averages of 2 finished training job(s) to that epoch")
    assert rule.verdict([0.6, 0.65]) is None  # running averages 0.6 and 0.7: median 0.65, not worse
    assert rule.verdict([0.6, 0.64]) is not None
    assert rule.verdict([0.6, 0.8, 0.9, 0.1]) is None  # no finished job reached epoch 4
    assert rule.verdict([math.nan]) is None


def test_the_median_rule_for_a_metric_to_minimize() -> None:
    rule = MedianStoppingRule("Minimize", "validation:loss")
    rule.add_finished([1.0, 0.5])
    assert rule.verdict([0.9]) is None
    assert "validation:loss=1.2 after epoch 1 is above the median 1" in rule.verdict([1.2])


class EpochTraining:
    """A training job that logs one epoch line at a time and stops when its run's stop event is set."""

    def __init__(self, curves: list[list[float]]) -> None:
        self.curves, self.epochs_run = curves, []
        self._lock = threading.Lock()

    def __call__(self, run: StepRun, job_name: str, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            curve = self.curves[len(self.epochs_run)]
            self.epochs_run.append(0)
            index = len(self.epochs_run) - 1
        for epoch, value in enumerate(curve, 1):
            run.log(f"epoch={epoch}/{len(curve)} validation_accuracy={value}")
            self.epochs_run[index] = epoch
            if run.cancelled.wait(0.01):
                raise StepFailed("Stopped: the training job was stopped")
        return {"TrainingJobName": job_name, "TrainingJobStatus": "Completed",
                "FinalMetricDataList": [{"MetricName": METRIC, "Value": curve[-1]}]}


def tune(tmp_path, early_stopping: str, curves: list[list[float]], logs: list[str]) -> tuple[dict, EpochTraining]:
    request = tuning_request(max_jobs=len(curves), parallel=1)
    request["HyperParameterTuningJobConfig"]["TrainingJobEarlyStoppingType"] = early_stopping
    fake = EpochTraining(curves)
    run = make_run(tmp_path, request, logs=logs)
    return TuningJobHandler(run.workspace, run_training_job=fake).run(run), fake


CURVES = [[0.5, 0.7, 0.9], [0.6, 0.8, 0.92], [0.3, 0.4, 0.95], [0.7, 0.85, 0.93]]


def test_auto_stops_a_trial_behind_the_median_and_keeps_it_out_of_the_best(tmp_path) -> None:
    logs: list[str] = []
    properties, fake = tune(tmp_path, "Auto", CURVES, logs)
    assert fake.epochs_run == [3, 3, 1, 3]  # the third trial's 0.3 is behind both finished jobs' 0.5 and 0.6
    summaries = properties["TrainingJobSummaries"]
    assert [s["TrainingJobStatus"] for s in summaries] == ["Completed", "Completed", "Stopped", "Completed"]
    stopped = summaries[2]
    assert stopped["FailureReason"].startswith(f"early stopping (Auto): {METRIC}=0.3 after epoch 1 is below the "
                                               "median 0.55")
    assert stopped["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == 0.3
    assert stopped["ObjectiveStatus"] == "Succeeded"
    assert properties["TrainingJobStatusCounters"]["Stopped"] == 1
    assert properties["ObjectiveStatusCounters"] == {"Succeeded": 4, "Pending": 0, "Failed": 0}
    assert properties["BestTrainingJob"]["TrainingJobName"] == summaries[3]["TrainingJobName"]
    assert any(line.startswith("[003] early stopping (Auto)") for line in logs)


def test_off_runs_every_trial_to_the_end_and_the_late_bloomer_wins(tmp_path) -> None:
    properties, fake = tune(tmp_path, "Off", CURVES, [])
    assert fake.epochs_run == [3, 3, 3, 3]
    assert properties["BestTrainingJob"]["TrainingJobName"] == properties["TrainingJobSummaries"][2][
        "TrainingJobName"]


def test_stopping_the_execution_reaches_every_running_trial(tmp_path) -> None:
    request = tuning_request(max_jobs=2, parallel=2)
    run = make_run(tmp_path, request)
    started, stopped = threading.Barrier(3), []

    def waits_for_its_stop(trial_run: StepRun, job_name: str, request: dict[str, Any]) -> dict[str, Any]:
        started.wait(timeout=10)
        stopped.append(trial_run.cancelled.wait(timeout=10))
        raise StepFailed("Stopped: the training job was stopped")

    handler = TuningJobHandler(run.workspace, run_training_job=waits_for_its_stop)
    worker = threading.Thread(target=lambda: pytest.raises(StepFailed, handler.run, run))
    worker.start()
    started.wait(timeout=10)
    run.cancelled.set()
    worker.join(timeout=10)
    assert stopped == [True, True]
