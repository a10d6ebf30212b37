"""ExplainModel in the definition: what it reads, what it writes, where the registry finds its reports, and that
`[explain] enabled = false` leaves no trace of it."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.building import build_definition, sample_reports
from pipelines.config import PipelineConfig, load_config
from pipelines.session import Uploads, build_pipeline_session
from pipelines.validation import iter_steps, validate_definition
from steps.explain import BIAS_FILE, BIAS_OUTPUT, EXPLAIN_MODULES, EXPLAINABILITY_FILE, EXPLAINABILITY_OUTPUT, STEP_NAME

ROLE = "arn:aws:iam::123456789012:role/PipelineExecution"
BUCKET = "definition-test-bucket"
pytestmark = pytest.mark.filterwarnings("ignore:Running within a PipelineSession")


def cloud_config(**explain: Any) -> PipelineConfig:
    config = load_config(overrides={"project.target": "sagemaker", "project.role_arn": ROLE,
                                    "project.bucket": BUCKET}, environ={})
    return config.replace("explain", **explain) if explain else config


def steps_of(config: PipelineConfig) -> dict[str, dict[str, Any]]:
    definition = build_definition(config, build_pipeline_session(config, Uploads.DISCARD)).definition
    return {step["Name"]: step for step in iter_steps(definition["Steps"])}


@pytest.fixture(scope="module")
def default_steps() -> dict[str, dict[str, Any]]:
    return steps_of(cloud_config())


def test_explain_is_on_by_default_and_reads_the_model_test_split_evaluation_and_manifest(
        default_steps: dict[str, dict[str, Any]]) -> None:
    arguments = default_steps[STEP_NAME]["Arguments"]
    inputs = {i["S3Input"]["LocalPath"]: i["S3Input"]["S3Uri"] for i in arguments["ProcessingInputs"]}
    assert inputs["/opt/ml/processing/model"] == {"Get": "Steps.TrainModel.ModelArtifacts.S3ModelArtifacts"}
    assert inputs["/opt/ml/processing/test"] == {
        "Get": "Steps.PrepareData.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"}
    assert inputs["/opt/ml/processing/evaluation"] == {
        "Get": "Steps.EvaluateModel.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"}
    assert inputs["/opt/ml/processing/manifest"] == {
        "Get": "Steps.PrepareData.ProcessingOutputConfig.Outputs['report'].S3Output.S3Uri"}
    for module in EXPLAIN_MODULES:
        assert inputs[f"/opt/ml/processing/input/modules/{module}"].endswith(f"/{module}.py")
    assert arguments["AppSpecification"]["ContainerEntrypoint"][-1] == "/opt/ml/processing/input/code/explain.py"
    assert arguments["AppSpecification"]["ContainerArguments"] == [
        "--samples-per-class", "2", "--top-loss", "6", "--method", "gradcam"]
    outputs = {o["OutputName"]: o["S3Output"]["LocalPath"] for o in arguments["ProcessingOutputConfig"]["Outputs"]}
    assert outputs == {EXPLAINABILITY_OUTPUT: "/opt/ml/processing/explainability",
                       BIAS_OUTPUT: "/opt/ml/processing/bias"}


def test_the_registered_version_carries_the_bias_and_explainability_reports(
        default_steps: dict[str, dict[str, Any]]) -> None:
    metrics = default_steps["ImageClassifier-RegisterModel"]["Arguments"]["ModelMetrics"]
    for section, output, file_name in (("Bias", BIAS_OUTPUT, BIAS_FILE),
                                       ("Explainability", EXPLAINABILITY_OUTPUT, EXPLAINABILITY_FILE)):
        assert metrics[section]["Report"] == {"ContentType": "application/json", "S3Uri": {"Std:Join": {
            "On": "/", "Values": [
                {"Get": f"Steps.{STEP_NAME}.ProcessingOutputConfig.Outputs['{output}'].S3Output.S3Uri"},
                file_name]}}}
    assert "Statistics" in metrics["ModelQuality"]  # beside the model quality, not instead of it


def test_the_configured_method_and_sample_sizes_reach_the_job() -> None:
    arguments = steps_of(cloud_config(method="occlusion", samples_per_class=5, top_loss=0))[STEP_NAME]["Arguments"]
    assert arguments["AppSpecification"]["ContainerArguments"] == [
        "--samples-per-class", "5", "--top-loss", "0", "--method", "occlusion"]


def test_explain_off_costs_nothing_in_the_definition(default_steps: dict[str, dict[str, Any]]) -> None:
    steps = steps_of(cloud_config(enabled=False))
    assert STEP_NAME not in steps
    assert set(default_steps) - set(steps) == {STEP_NAME}
    metrics = steps["ImageClassifier-RegisterModel"]["Arguments"]["ModelMetrics"]
    assert not metrics.get("Bias") and not metrics.get("Explainability")
    assert "DependsOn" not in steps["AccuracyTooLow"]
    assert not [uri for step in steps.values() for uri in _strings(step) if STEP_NAME in uri or "explain.py" in uri]


@pytest.mark.parametrize("enabled", [True, False])
def test_the_definition_validates_with_and_without_explain(enabled: bool) -> None:
    config = cloud_config(enabled=enabled)
    built = build_definition(config, build_pipeline_session(config, Uploads.DISCARD))
    assert validate_definition(built.definition, built.pipeline.name, len(built.text.encode()), sample_reports()) == []


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
