"""validate_definition: our definition passes for both targets; each kind of mistake, made on a deep copy of it, is
caught with a message that says where and what."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from pipelines.building import BuiltDefinition, build_definition, sample_reports
from pipelines.config import load_config
from pipelines.session import Uploads, build_pipeline_session
from pipelines.validation import (
    MAX_DEFINITION_BYTES,
    check_limits,
    check_request,
    iter_steps,
    placeholder_request,
    property_path_tokens,
    resolve_json_path,
    validate_definition,
)

ROLE = "arn:aws:iam::123456789012:role/PipelineExecution"
NAME = "image-classifier"
pytestmark = pytest.mark.filterwarnings("ignore:Running within a PipelineSession")


def build(overrides: dict[str, str]) -> BuiltDefinition:
    config = load_config(overrides=overrides, environ={})
    return build_definition(config, build_pipeline_session(config, Uploads.DISCARD))


@pytest.fixture(scope="module")
def cloud() -> BuiltDefinition:
    return build({"project.target": "sagemaker", "project.role_arn": ROLE, "project.bucket": "validation-bucket"})


@pytest.fixture(scope="module")
def local() -> BuiltDefinition:
    return build({})


def problems_of(definition: dict[str, Any]) -> list[str]:
    return [str(p) for p in validate_definition(definition, NAME, len(json.dumps(definition)), sample_reports())]


def step(definition: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in iter_steps(definition["Steps"]) if s["Name"] == name)


def parameter(definition: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in definition["Parameters"] if p["Name"] == name)


@pytest.mark.parametrize("target", ["cloud", "local"])
def test_our_definition_has_no_problems(request: pytest.FixtureRequest, target: str) -> None:
    built: BuiltDefinition = request.getfixturevalue(target)
    assert built.problems == []
    assert validate_definition(built.definition, built.pipeline.name, len(built.text.encode()), sample_reports()) == []


# ---------------------------------------------------------------------------------------------- broken copies
def _drop_role(d: dict) -> None:
    del step(d, "PrepareData")["Arguments"]["RoleArn"]


def _unknown_field(d: dict) -> None:
    step(d, "TrainModel")["Arguments"]["TrainingJobNmae"] = "typo"


def _count_as_string(d: dict) -> None:
    step(d, "PrepareData")["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = "1"


def _string_parameter_in_integer_field(d: dict) -> None:
    parameter(d, "InferenceInstanceCount").update(Type="String", DefaultValue="two")


def _integer_parameter_in_string_field(d: dict) -> None:
    cluster = step(d, "EvaluateModel")["Arguments"]["ProcessingResources"]["ClusterConfig"]
    cluster["InstanceType"] = {"Get": "Parameters.InferenceInstanceCount"}


def _model_input(d: dict, reference: str) -> None:
    step(d, "EvaluateModel")["Arguments"]["ProcessingInputs"][0]["S3Input"]["S3Uri"] = {"Get": reference}


def _condition_path(d: dict, path: str) -> None:
    step(d, "CheckAccuracy")["Arguments"]["Conditions"][0]["LeftValue"]["Std:JsonGet"]["Path"] = path


def _fail_message_path(d: dict, path: str) -> None:
    values = step(d, "AccuracyTooLow")["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    next(v for v in values if isinstance(v, dict) and "Std:JsonGet" in v)["Std:JsonGet"]["Path"] = path


def _condition_property_file(d: dict, reference: str) -> None:
    step(d, "CheckAccuracy")["Arguments"]["Conditions"][0]["LeftValue"]["Std:JsonGet"]["PropertyFile"] = \
        {"Get": reference}


def _rename_gate(d: dict) -> None:
    step(d, "CheckAccuracy")["Name"] = "Check accuracy!"


def _endpoint_name(d: dict, name: str) -> None:
    parameter(d, "EndpointName")["DefaultValue"] = name


def _depends_on_missing(d: dict) -> None:
    step(d, "ServingModel-CreateModel")["DependsOn"] = ["ImageClassifier-Register"]


def _json_get_body(d: dict, body: dict) -> None:
    step(d, "CheckAccuracy")["Arguments"]["Conditions"][0]["LeftValue"] = {"Std:JsonGet": body}


def _lambda_step(d: dict) -> None:
    d["Steps"].append({"Name": "Notify", "Type": "Lambda", "Arguments": {}})


BROKEN: dict[str, tuple[Callable[[dict], None], str]] = {
    "missing-role-arn": (_drop_role, 'step PrepareData (CreateProcessingJob): Missing required parameter in input: '
                                     '"RoleArn"'),
    "unknown-field": (_unknown_field, 'step TrainModel (CreateTrainingJob): Unknown parameter in input: '
                                      '"TrainingJobNmae", must be one of: TrainingJobName, HyperParameters,'),
    "count-as-string": (_count_as_string, "step PrepareData (CreateProcessingJob): Invalid type for parameter "
                                          "ProcessingResources.ClusterConfig.InstanceCount, value: 1, "
                                          "type: <class 'str'>, valid types: <class 'int'>"),
    "string-parameter-in-integer-field": (
        _string_parameter_in_integer_field,
        "step EndpointConfig (CreateEndpointConfig): Invalid type for parameter "
        "ProductionVariants[0].InitialInstanceCount, value: two, type: <class 'str'>, valid types: <class 'int'>"),
    "integer-parameter-in-string-field": (
        _integer_parameter_in_string_field,
        "step EvaluateModel (CreateProcessingJob): Invalid type for parameter "
        "ProcessingResources.ClusterConfig.InstanceType, value: 1, type: <class 'int'>, valid types: <class 'str'>"),
    "bad-property-path": (
        lambda d: _model_input(d, "Steps.TrainModel.ModelArtifacts.S3ModelArtifact"),
        "step EvaluateModel: Get Steps.TrainModel.ModelArtifacts.S3ModelArtifact: DescribeTrainingJobResponse "
        "has no property 'ModelArtifacts.S3ModelArtifact'"),
    "unknown-step": (lambda d: _model_input(d, "Steps.TrainModle.ModelArtifacts.S3ModelArtifacts"),
                     "step EvaluateModel: Get Steps.TrainModle.ModelArtifacts.S3ModelArtifacts: no step named "
                     "'TrainModle'"),
    "property-of-a-condition": (lambda d: _model_input(d, "Steps.CheckAccuracy.Outcome"),
                                "step EvaluateModel: Get Steps.CheckAccuracy.Outcome: a Condition step has no "
                                "properties"),
    "unknown-parameter": (lambda d: _model_input(d, "Parameters.ModelUrl"),
                          "step EvaluateModel: Get Parameters.ModelUrl: no parameter named 'ModelUrl'"),
    "unknown-execution-variable": (lambda d: _model_input(d, "Execution.PipelineExecutionID"),
                                   "step EvaluateModel: Get Execution.PipelineExecutionID: no execution variable "
                                   "'PipelineExecutionID'"),
    "json-get-path-in-condition": (
        lambda d: _condition_path(d, "multiclass_classification_metrics.acuracy.value"),
        "step CheckAccuracy: JsonGet path not in what writes evaluation.json: "
        "'multiclass_classification_metrics.acuracy.value' is not in the document (stopped at 'acuracy')"),
    "json-get-path-in-fail-message": (
        lambda d: _fail_message_path(d, "accuracy.value"),
        "step AccuracyTooLow: JsonGet path not in what writes evaluation.json: 'accuracy.value' is not in the "
        "document (stopped at 'accuracy')"),
    "json-get-unknown-property-file": (
        lambda d: _condition_property_file(d, "Steps.EvaluateModel.PropertyFiles.Report"),
        "step CheckAccuracy: Get Steps.EvaluateModel.PropertyFiles.Report: step EvaluateModel has no "
        "PropertyFile 'Report'"),
    "json-get-without-property-file": (
        lambda d: _json_get_body(d, {"Path": "multiclass_classification_metrics.accuracy.value"}),
        "step CheckAccuracy: Std:JsonGet needs a PropertyFile (or an S3Uri) and a Path"),
    "bad-step-name": (_rename_gate, "step Check accuracy!: step names are 1-64 letters, digits, - and _"),
    "endpoint-name-too-long": (lambda d: _endpoint_name(d, "e" * 51),
                               f"parameter EndpointName: '{'e' * 51}' must be letters, digits and hyphens, "
                               "at most 50 characters"),
    "endpoint-name-underscore": (lambda d: _endpoint_name(d, "image_classifier"),
                                 "parameter EndpointName: 'image_classifier' must be letters, digits and hyphens"),
    "depends-on-missing-step": (_depends_on_missing, "step ServingModel-CreateModel: DependsOn names a step that "
                                                     "does not exist: ImageClassifier-Register"),
    "unsupported-step-type": (_lambda_step, "step Notify: step type 'Lambda' is not checked or run here"),
}


@pytest.mark.parametrize("mistake", list(BROKEN))
def test_each_mistake_is_caught_alone_with_where_and_what(cloud: BuiltDefinition, mistake: str) -> None:
    break_it, expected = BROKEN[mistake]
    definition = copy.deepcopy(cloud.definition)
    break_it(definition)
    problems = problems_of(definition)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems[0]


def test_endpoint_name_of_exactly_50_characters_still_fits(cloud: BuiltDefinition) -> None:
    definition = copy.deepcopy(cloud.definition)
    _endpoint_name(definition, "e" * 50)  # + "-" + a 12-character execution id = 63, the limit
    assert problems_of(definition) == []


def test_several_mistakes_are_all_reported_requests_first_then_references_in_step_order(cloud: BuiltDefinition) -> None:
    definition = copy.deepcopy(cloud.definition)
    for mistake in ("depends-on-missing-step", "missing-role-arn", "unknown-step"):
        BROKEN[mistake][0](definition)
    problems = problems_of(definition)
    assert [p.split(":")[0] for p in problems] == ["step PrepareData (CreateProcessingJob)", "step EvaluateModel",
                                                   "step ServingModel-CreateModel"]


def test_json_get_reading_an_s3_uri_is_accepted(cloud: BuiltDefinition) -> None:
    definition = copy.deepcopy(cloud.definition)
    _json_get_body(definition, {"S3Uri": {"Std:Join": {"On": "/", "Values": ["s3://b", "report.json"]}},
                                "Path": "accuracy"})
    assert problems_of(definition) == []


def test_the_original_definition_is_untouched_by_broken_copies(cloud: BuiltDefinition) -> None:
    assert json.loads(cloud.text) == cloud.definition


def test_check_limits_refuses_a_bad_pipeline_name_and_an_oversized_definition(cloud: BuiltDefinition) -> None:
    problems = [str(p) for p in check_limits(cloud.definition, "image classifier", MAX_DEFINITION_BYTES + 1)]
    assert problems == [
        "pipeline: name 'image classifier' must be 1-256 letters, digits and hyphens",
        f"pipeline: definition is {MAX_DEFINITION_BYTES + 1} bytes; the limit is 1 MiB",
    ]
    assert check_limits(cloud.definition, NAME, MAX_DEFINITION_BYTES) == []


# ---------------------------------------------------------------------------------------------- units
@pytest.mark.parametrize(
    ("path", "tokens"),
    [
        ("ModelArtifacts.S3ModelArtifacts", ["ModelArtifacts", "S3ModelArtifacts"]),
        ("ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri",
         ["ProcessingOutputConfig", "Outputs", "train", "S3Output", "S3Uri"]),
        ('BestTrainingJob.TunedHyperParameters["lr"]', ["BestTrainingJob", "TunedHyperParameters", "lr"]),
        ("TrainingJobSummaries[0].TrainingJobName", ["TrainingJobSummaries", 0, "TrainingJobName"]),
        ("a[10][2].b_c", ["a", 10, 2, "b_c"]),
    ],
)
def test_property_path_tokens_split_names_keys_and_indexes(path: str, tokens: list) -> None:
    assert property_path_tokens(path) == tokens


@pytest.mark.parametrize("path", ["a..b", "a[x]", "a.b-c", "a['unterminated]", ""])
def test_property_path_tokens_refuse_what_they_cannot_parse(path: str) -> None:
    with pytest.raises(ValueError, match="cannot parse property path"):
        property_path_tokens(path)


REPORT = {"metrics": {"accuracy": {"value": 0.93}, "per_class": [{"f1": 0.5}, {"f1": 0.75}]}}


@pytest.mark.parametrize(
    ("path", "value"),
    [("metrics.accuracy.value", 0.93), ("metrics.per_class[1].f1", 0.75), ("metrics.accuracy", {"value": 0.93})],
)
def test_resolve_json_path_finds_values_through_keys_and_indexes(path: str, value: Any) -> None:
    assert resolve_json_path(REPORT, path) == value


@pytest.mark.parametrize(
    ("path", "stopped_at"),
    [("metrics.acc.value", "'acc'"), ("metrics.per_class[2].f1", "2"), ("metrics.accuracy.value.x", "'x'"),
     ("metrics[0]", "0")],
)
def test_resolve_json_path_raises_key_error_saying_where_it_stopped(path: str, stopped_at: str) -> None:
    with pytest.raises(KeyError, match=rf"stopped at {stopped_at}"):
        resolve_json_path(REPORT, path)


def test_check_request_accepts_a_valid_create_endpoint_request() -> None:
    assert check_request("Endpoint", {"EndpointName": "image-classifier", "EndpointConfigName": "cfg-1"}) == []


def test_check_request_adds_the_name_the_service_fills_in() -> None:
    request = {"ExecutionRoleArn": ROLE, "PrimaryContainer": {"Image": "img", "ModelDataUrl": "s3://b/model.tar.gz"}}
    assert check_request("Model", request) == []  # ModelName comes from the service, as in a pipeline


@pytest.mark.parametrize(
    ("step_type", "request_", "expected"),
    [
        ("Endpoint", {"EndpointName": "e"}, ['Missing required parameter in input: "EndpointConfigName"']),
        ("Endpoint", {"EndpointName": "e", "EndpointConfigName": "c", "Force": True},
         ['Unknown parameter in input: "Force", must be one of: EndpointName, EndpointConfigName, DeploymentConfig, '
          'Tags']),
        ("Model", {"ExecutionRoleArn": ROLE, "PrimaryContainer": {"Image": 3}},
         ["Invalid type for parameter PrimaryContainer.Image, value: 3, type: <class 'int'>, "
          "valid types: <class 'str'>"]),
    ],
    ids=["missing", "unknown", "mistyped"],
)
def test_check_request_reports_botocores_words(step_type: str, request_: dict, expected: list[str]) -> None:
    assert check_request(step_type, request_) == expected


def test_placeholder_request_puts_parameter_defaults_and_typed_stand_ins() -> None:
    from pipelines.validation import _service_model

    shape = _service_model().operation_model("CreateEndpointConfig").input_shape
    request = {"EndpointConfigName": {"Std:Join": {"On": "-", "Values": ["a", "b"]}}, "ProductionVariants": [{
        "VariantName": "AllTraffic", "ModelName": {"Get": "Steps.ServingModel-CreateModel.ModelName"},
        "InitialInstanceCount": {"Get": "Parameters.InferenceInstanceCount"},
        "InstanceType": {"Get": "Parameters.InferenceInstanceType"}}]}
    placed = placeholder_request(request, shape, {"InferenceInstanceCount": 3, "InferenceInstanceType": "ml.m5.large"})
    variant = placed["ProductionVariants"][0]
    assert (variant["InitialInstanceCount"], variant["InstanceType"]) == (3, "ml.m5.large")
    assert isinstance(placed["EndpointConfigName"], str) and isinstance(variant["ModelName"], str)
    assert check_request("EndpointConfig", placed) == []
