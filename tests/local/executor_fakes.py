"""Fake step handlers for the executor tests: Describe-shaped properties, no jobs run.

Importable by a worker process too (`--handlers executor_fakes:make_fake_handlers`), configured by environment
variables there: FAKE_ACCURACY (what EvaluateModel writes), FAKE_SLEEP_STEP / FAKE_SLEEP_S (a step that sleeps).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipelines.local.step_api import StepFailed, StepRun

ACCOUNT = "arn:aws:sagemaker:us-east-1:000000000000"
TUNED = {"lr": "0.001", "batch_size": '"64"', "epochs": "3"}


@dataclass
class Call:
    step: str
    type: str
    arguments: dict[str, Any]
    started: float
    ended: float = 0.0
    cpu_budget: int = 0


@dataclass
class Behaviour:
    """What the fakes do besides answering: sleep, fail, write evaluation.json."""

    accuracy: float = 0.95
    sleeps: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    # step -> [(exception type, reason), ...]: its first runs fail so, one each (what RetryPolicies retry)
    typed_failures: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def order(self) -> list[str]:
        return [call.step for call in sorted(self.calls, key=lambda c: c.started)]


def _job(run: StepRun) -> str:
    return f"{run.step_name.lower()}-{run.execution_id}"


def describe_processing(run: StepRun) -> dict[str, Any]:
    return {"ProcessingJobName": _job(run), "ProcessingJobArn": f"{ACCOUNT}:processing-job/{_job(run)}",
            "ProcessingJobStatus": "Completed", "ProcessingInputs": run.arguments.get("ProcessingInputs", []),
            "ProcessingOutputConfig": run.arguments.get("ProcessingOutputConfig", {"Outputs": []})}


def describe_training(run: StepRun) -> dict[str, Any]:
    output = run.arguments["OutputDataConfig"]["S3OutputPath"]
    return {"TrainingJobName": _job(run), "TrainingJobStatus": "Completed",
            "HyperParameters": run.arguments.get("HyperParameters", {}),
            "ModelArtifacts": {"S3ModelArtifacts": f"{output}/{_job(run)}/output/model.tar.gz"},
            "FinalMetricDataList": [{"MetricName": "validation:accuracy", "Value": 0.97}]}


def describe_tuning(run: StepRun) -> dict[str, Any]:
    best = {"TrainingJobName": f"{_job(run)}-001", "TunedHyperParameters": dict(TUNED),
            "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "validation:accuracy", "Value": 0.97}}
    return {"HyperParameterTuningJobName": _job(run), "HyperParameterTuningJobStatus": "Completed",
            "BestTrainingJob": best}


DESCRIBE: dict[str, Callable[[StepRun], dict[str, Any]]] = {
    "Processing": describe_processing,
    "Training": describe_training,
    "Tuning": describe_tuning,
    "RegisterModel": lambda run: {"ModelPackageArn": f"{ACCOUNT}:model-package/g/1",
                                  "ModelApprovalStatus": run.arguments.get("ModelApprovalStatus")},
    "Model": lambda run: {"ModelName": f"model-{run.execution_id}", "ModelArn": f"{ACCOUNT}:model/m"},
    "EndpointConfig": lambda run: {"EndpointConfigName": run.arguments["EndpointConfigName"]},
    "Endpoint": lambda run: {"EndpointName": run.arguments["EndpointName"], "EndpointStatus": "InService"},
    "Transform": lambda run: {"TransformJobName": _job(run), "TransformJobStatus": "Completed",
                              "ModelName": run.arguments["ModelName"],
                              "TransformInput": run.arguments["TransformInput"],
                              "TransformOutput": run.arguments["TransformOutput"]},
}


class FakeHandler:
    def __init__(self, step_type: str, behaviour: Behaviour) -> None:
        self.step_type, self.behaviour = step_type, behaviour

    def run(self, run: StepRun) -> dict[str, Any]:
        call = Call(run.step_name, self.step_type, run.arguments, time.monotonic(), cpu_budget=run.cpu_budget)
        with self.behaviour.lock:
            self.behaviour.calls.append(call)
        run.log(f"{run.step_name} running")
        run.on_progress({"Phase": "Running"})
        if run.cancelled.wait(self.behaviour.sleeps.get(run.step_name, 0)):
            raise StepFailed("Stopped: cancelled")
        call.ended = time.monotonic()
        if run.step_name in self.behaviour.failures:
            raise StepFailed(self.behaviour.failures[run.step_name])
        with self.behaviour.lock:
            pending = self.behaviour.typed_failures.get(run.step_name) or []
            injected = pending.pop(0) if pending else None
        if injected is not None:
            raise StepFailed(injected[1], exception_type=injected[0])
        if run.step_name == "EvaluateModel":
            write_evaluation(run, self.behaviour.accuracy)
        return DESCRIBE[self.step_type](run)


def write_evaluation(run: StepRun, accuracy: float) -> None:
    """evaluation.json where the EvaluationReport PropertyFile points: <evaluation output>/evaluation.json."""
    outputs = run.arguments["ProcessingOutputConfig"]["Outputs"]
    uri = next(o for o in outputs if o["OutputName"] == "evaluation")["S3Output"]["S3Uri"]
    path = run.workspace.path_for(f"{uri}/evaluation.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"multiclass_classification_metrics": {"accuracy": {"value": accuracy}}}))


def fake_handlers(behaviour: Behaviour) -> dict[str, FakeHandler]:
    return {step_type: FakeHandler(step_type, behaviour) for step_type in DESCRIBE}


def make_fake_handlers(workspace: Any, store: Any, region: str) -> dict[str, FakeHandler]:
    """The factory a worker process imports; behaviour from FAKE_* environment variables."""
    behaviour = Behaviour(accuracy=float(os.environ.get("FAKE_ACCURACY", "0.95")))
    if os.environ.get("FAKE_SLEEP_STEP"):
        behaviour.sleeps[os.environ["FAKE_SLEEP_STEP"]] = float(os.environ.get("FAKE_SLEEP_S", "60"))
    return fake_handlers(behaviour)
