"""The local Model Registry and the RegisterModel step, with the request the real definition sends."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from pipelines.local.registry import ModelRegistry, RegisterModelHandler
from pipelines.local.state import StateStore
from pipelines.local.step_api import StepFailed, StepRun
from pipelines.local.workspace import Workspace
from pipelines.targets import TargetError

EVALUATION_URI = "s3://local-pipeline/image-classifier/evaluation/evaluation.json"
MODEL_URI = "s3://local-pipeline/image-classifier/train/job-1/output/model.tar.gz"
EVALUATION = {"multiclass_classification_metrics": {"accuracy": {"value": 0.9625, "standard_deviation": "NaN"}}}

# ImageClassifier-RegisterModel's Arguments from `get_pipeline(...).definition()`, expressions resolved.
REQUEST = {
    "ModelPackageGroupName": "image-classifier",
    "ModelPackageDescription": "image-classifier: image classifier trained and gated by the pipeline",
    "ModelMetrics": {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": EVALUATION_URI}},
                     "Bias": {}, "Explainability": {}},
    "InferenceSpecification": {
        "Containers": [{
            "Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312",
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20", "SAGEMAKER_REGION": "us-east-1"},
            "ModelDataUrl": MODEL_URI,
        }],
        "SupportedContentTypes": ["application/x-image", "image/jpeg", "image/png", "application/json"],
        "SupportedResponseMIMETypes": ["application/json"],
        "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"],
    },
    "ModelApprovalStatus": "PendingManualApproval",
    "SkipModelValidation": "None",
}


@pytest.fixture()
def workspace(tmp_path: Path) -> Workspace:
    workspace = Workspace.open(tmp_path / "ws")
    for uri, content in ((EVALUATION_URI, json.dumps(EVALUATION)), (MODEL_URI, "a model.tar.gz")):
        workspace.path_for(uri).parent.mkdir(parents=True, exist_ok=True)
        workspace.path_for(uri).write_text(content)
    return workspace


@pytest.fixture()
def store(workspace: Workspace) -> StateStore:
    store = StateStore(workspace.state_db)
    yield store
    store.close()


def step_run(workspace: Workspace, arguments: dict, lines: list[str] | None = None) -> StepRun:
    return StepRun(execution_id="abc123", pipeline_name="image-classifier", step_name="ImageClassifier-RegisterModel",
                   step_type="RegisterModel", arguments=arguments, workspace=workspace, cpu_budget=1,
                   log=(lines if lines is not None else []).append)


def test_versions_count_per_group_and_the_group_is_created(store: StateStore) -> None:
    registry = ModelRegistry(store, region="eu-west-1")
    first = registry.create_package(REQUEST)
    second = registry.create_package(REQUEST)
    other = registry.create_package({**REQUEST, "ModelPackageGroupName": "other"})
    assert first["ModelPackageArn"] == "arn:aws:sagemaker:eu-west-1:000000000000:model-package/image-classifier/1"
    assert (first["ModelPackageVersion"], second["ModelPackageVersion"], other["ModelPackageVersion"]) == (1, 2, 1)
    assert [p["version"] for p in registry.list_packages("image-classifier")] == [1, 2]
    assert len(registry.list_packages()) == 3
    assert store.query("SELECT arn FROM model_package_groups WHERE name = 'other'")[0]["arn"].endswith(
        ":model-package-group/other")


def test_approval_updates_and_survives_a_new_store(workspace: Workspace, store: StateStore) -> None:
    registry = ModelRegistry(store)
    arn = registry.create_package({k: v for k, v in REQUEST.items() if k != "ModelApprovalStatus"})["ModelPackageArn"]
    assert registry.list_packages()[0]["approval"] == "PendingManualApproval"  # the service's default
    assert registry.update_approval(arn, "Approved")["ModelApprovalStatus"] == "Approved"
    reopened = StateStore(workspace.state_db)
    try:
        assert ModelRegistry(reopened).list_packages()[0]["approval"] == "Approved"
    finally:
        reopened.close()


def test_mistakes_are_target_errors_naming_the_valid_choices(store: StateStore) -> None:
    registry = ModelRegistry(store)
    arn = registry.create_package(REQUEST)["ModelPackageArn"]
    with pytest.raises(TargetError, match=r"unknown approval status 'Aproved'.*Approved, Rejected") as error:
        registry.update_approval(arn, "Aproved")
    assert "PendingManualApproval" in str(error.value)
    with pytest.raises(TargetError, match=r"no model package '.*/image-classifier/9'.*known.*image-classifier/1"):
        registry.update_approval(arn.replace("/1", "/9"), "Approved")
    with pytest.raises(TargetError, match="no model package group 'nope'; known groups: image-classifier"):
        registry.list_packages("nope")
    with pytest.raises(TargetError, match="unknown approval status"):
        registry.create_package({**REQUEST, "ModelApprovalStatus": "Maybe"})


def test_register_step_returns_describe_model_package_and_keeps_the_metrics(workspace: Workspace,
                                                                           store: StateStore) -> None:
    arguments = copy.deepcopy(REQUEST)
    properties = RegisterModelHandler(workspace, store).run(step_run(workspace, arguments))
    assert properties["ModelPackageArn"].endswith(":model-package/image-classifier/1")
    assert properties["ModelPackageName"] == properties["ModelPackageGroupName"] == "image-classifier"
    assert (properties["ModelPackageVersion"], properties["ModelPackageStatus"]) == (1, "Completed")
    assert properties["ModelApprovalStatus"] == "PendingManualApproval"
    assert properties["InferenceSpecification"] == REQUEST["InferenceSpecification"]
    assert properties["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == EVALUATION_URI
    assert properties["CreationTime"].endswith("+00:00")
    workspace.path_for(EVALUATION_URI).unlink()  # the content was copied at registration
    [row] = ModelRegistry(store).list_packages()
    assert row["accuracy"] == pytest.approx(0.9625)
    assert row["model_data_url"] == MODEL_URI


def test_bias_and_explainability_reports_are_kept_and_models_shows_the_bias_verdict(workspace: Workspace,
                                                                                   store: StateStore) -> None:
    reports = {"Bias": ("s3://local-pipeline/image-classifier/explain/bias/bias.json",
                        {"version": "1.0", "summary": "class 6-six has 1.1% of the training images"}),
               "Explainability": ("s3://local-pipeline/image-classifier/explain/explainability/explainability.json",
                                  {"version": "1.0", "method": "gradcam"})}
    arguments = copy.deepcopy(REQUEST)
    for section, (uri, document) in reports.items():
        workspace.path_for(uri).parent.mkdir(parents=True, exist_ok=True)
        workspace.path_for(uri).write_text(json.dumps(document))
        arguments["ModelMetrics"][section] = {"Report": {"ContentType": "application/json", "S3Uri": uri}}
    properties = RegisterModelHandler(workspace, store).run(step_run(workspace, arguments))
    assert properties["ModelMetrics"]["Bias"]["Report"]["S3Uri"] == reports["Bias"][0]
    [row] = ModelRegistry(store).list_packages()
    assert row["bias"] == "class 6-six has 1.1% of the training images"
    assert row["metrics"]["Explainability.Report"] == {"version": "1.0", "method": "gradcam"}


def test_a_package_without_a_bias_report_has_no_bias_verdict(store: StateStore) -> None:
    ModelRegistry(store).create_package(REQUEST, {"ModelQuality.Statistics": EVALUATION})
    assert ModelRegistry(store).list_packages()[0]["bias"] is None


def test_register_step_without_the_metrics_file_registers_and_warns(workspace: Workspace, store: StateStore) -> None:
    workspace.path_for(EVALUATION_URI).unlink()
    lines: list[str] = []
    properties = RegisterModelHandler(workspace, store).run(step_run(workspace, copy.deepcopy(REQUEST), lines))
    assert properties["ModelPackageVersion"] == 1
    assert any("ModelQuality.Statistics" in line and "warning" in line for line in lines)
    assert ModelRegistry(store).list_packages()[0]["accuracy"] is None


def test_register_step_fails_on_missing_model_data_or_bad_status(workspace: Workspace, store: StateStore) -> None:
    handler = RegisterModelHandler(workspace, store)
    missing = copy.deepcopy(REQUEST)
    missing["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] = MODEL_URI.replace("job-1", "job-2")
    with pytest.raises(StepFailed, match="model data .*job-2.* not found"):
        handler.run(step_run(workspace, missing))
    with pytest.raises(StepFailed, match="unknown approval status 'Maybe'"):
        handler.run(step_run(workspace, {**REQUEST, "ModelApprovalStatus": "Maybe"}))
    assert ModelRegistry(store).list_packages() == []
