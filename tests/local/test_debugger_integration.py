"""Debugger rules around real training jobs: scripts/train.py (tiny) through `run_training_job` with the rules and
the DebugHookConfig the step builder makes from the config. Statuses land in the job's properties and rule output
where SageMaker puts it; a learning rate of 10 is caught, and with StopTraining the job is stopped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import PipelineConfig, load_config
from pipelines.local.container import pack_tar_gz
from pipelines.local.debugging import job as debugging_job
from pipelines.local.step_api import StepFailed, StepRun
from pipelines.local.training import run_training_job
from pipelines.local.workspace import Workspace
from steps.estimator import METRIC_DEFINITIONS
from steps.training import debugger_rules

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
RULES = ["LossNotDecreasing", "VanishingGradient", "ExplodingTensor", "Overfit", "Overtraining",
         "PoorWeightInitialization", "ClassImbalance", "DeadRelu"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, small_digits_dir: Path) -> Workspace:
    """The training code as the SDK uploads it, and 20 training / 10 validation digits a class."""
    ws = Workspace.open(tmp_path_factory.mktemp("ws"))
    code = tmp_path_factory.mktemp("code")
    for script in SCRIPTS.glob("*.py"):
        shutil.copy(script, code / script.name)
    pack_tar_gz(code, ws.path_for("s3://bucket/code/sourcedir.tar.gz"))
    for class_dir in sorted(p for p in small_digits_dir.iterdir() if p.is_dir()):
        images = sorted(class_dir.iterdir())
        for split, chosen in (("train", images[:20]), ("validation", images[20:30])):
            target = ws.path_for(f"s3://bucket/data/{split}/{class_dir.name}")
            target.mkdir(parents=True)
            for image in chosen:
                shutil.copy(image, target / image.name)
    return ws


def training_request(config: PipelineConfig, **hyperparameters: Any) -> dict[str, Any]:
    """CreateTrainingJob as the estimator makes it: the step builder's rules, their actions and collections."""
    rules = debugger_rules(config)
    for rule in rules:
        rule.prepare_actions("image-classifier-train-2026")
    collections = {collection for rule in rules for collection in rule.collection_configs}
    channels = [{"ChannelName": name, "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": f"s3://bucket/data/{name}", "S3DataDistributionType": "FullyReplicated"}}}
        for name in ("train", "validation")]
    tuned = {"arch": "resnet18", "pretrained": '"false"', "image_size": "16", "hflip": '"false"', "epochs": "3",
             "batch_size": "16", "lr": "0.003", "num_workers": "0", **hyperparameters}
    return {
        "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "pytorch-training:2.6.0-cpu-py312",
                                   "MetricDefinitions": [dict(m) for m in METRIC_DEFINITIONS]},
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/models/"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "RoleArn": "arn:aws:iam::000000000000:role/LocalPipelineExecution",
        "InputDataConfig": channels,
        "HyperParameters": {**{k: str(v) for k, v in tuned.items()}, "sagemaker_program": '"train.py"',
                            "sagemaker_submit_directory": '"s3://bucket/code/sourcedir.tar.gz"'},
        "DebugHookConfig": {"S3OutputPath": "s3://bucket/debug-output",
                            "CollectionConfigurations": [c._to_request_dict() for c in collections]},
        "DebugRuleConfigurations": [rule.to_debugger_rule_config_dict() for rule in rules],
    }


def step_run(ws: Workspace, request: dict[str, Any], progress: list[dict[str, Any]]) -> StepRun:
    return StepRun(execution_id="exec1", pipeline_name="image-classifier", step_name="TrainModel",
                   step_type="Training", arguments=request, workspace=ws, cpu_budget=1, log=lambda line: None,
                   on_progress=progress.append)


def test_every_configured_rule_gets_a_status_in_the_properties(workspace: Workspace) -> None:
    config = load_config(environ={})  # the local defaults: all eight rules, save_interval 50
    request = training_request(config)
    progress: list[dict[str, Any]] = []
    props = run_training_job(step_run(workspace, request, progress), "trainmodel-rules", request)
    statuses = {s["RuleConfigurationName"]: s for s in props["DebugRuleEvaluationStatuses"]}
    assert list(statuses) == RULES
    for name, status in statuses.items():
        # No Error: the hook saved what every rule reads (losses in both modes, labels, gradients, activations).
        assert status["RuleEvaluationStatus"] in ("NoIssuesFound", "IssuesFound"), status["StatusDetails"]
        assert status["StatusDetails"].startswith(f"{name}: ")
        output = workspace.path_for(f"s3://bucket/debug-output/trainmodel-rules/rule-output/{name}/findings.json")
        assert json.loads(output.read_text())["RuleEvaluationStatus"] == status["RuleEvaluationStatus"]
    assert props["TrainingJobStatus"] == "Completed"
    assert any(p.get("DebugRuleEvaluationStatuses") and p["SecondaryStatus"] == "Training" for p in progress)
    assert progress[-1]["DebugRuleEvaluationStatuses"] == props["DebugRuleEvaluationStatuses"]


def test_a_learning_rate_of_10_is_caught_and_stop_training_stops_the_job(workspace: Workspace,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debugging_job, "POLL_SECONDS", 0.5)
    config = load_config(environ={}).replace("debugger", stop_training_on=("loss_not_decreasing",))
    request = training_request(config, lr="10", epochs="40")  # 40 epochs: minutes, unless the rule stops it
    progress: list[dict[str, Any]] = []
    with pytest.raises(StepFailed) as failed:
        run_training_job(step_run(workspace, request, progress), "trainmodel-lr10", request)
    reason = failed.value.reason
    assert reason.startswith("Stopped: the StopTraining action of Debugger rule LossNotDecreasing stopped the "
                             "training job (IssuesFound). LossNotDecreasing: the mean TRAIN loss "), reason
    assert "learning rate is most likely too high" in reason and "This job's learning rate: 10." in reason
    last = progress[-1]
    assert last["TrainingJobStatus"] == last["SecondaryStatus"] == "Stopped"
    statuses = {s["RuleConfigurationName"]: s["RuleEvaluationStatus"] for s in last["DebugRuleEvaluationStatuses"]}
    assert statuses["LossNotDecreasing"] == "IssuesFound" and set(statuses) == set(RULES)
    log = (workspace.job_dir("exec1", "TrainModel", "trainmodel-lr10") / "job.log").read_text()
    assert "epoch=40/40" not in log
