"""Pipeline expressions and conditions, evaluated as SageMaker Pipelines does."""

from __future__ import annotations

import re

import pytest

from pipelines.local.expressions import (
    ExecutionContext,
    ExpressionError,
    evaluate_condition,
    evaluate_conditions,
    referenced_steps,
    resolve,
    to_text,
)

DEFINITION = {
    "Parameters": [
        {"Name": "Threshold", "Type": "Float", "DefaultValue": 0.9},
        {"Name": "Count", "Type": "Integer", "DefaultValue": 1},
        {"Name": "Flag", "Type": "Boolean", "DefaultValue": False},
        {"Name": "Name", "Type": "String", "DefaultValue": "model"},
        {"Name": "Status", "Type": "String", "DefaultValue": "Approved", "EnumValues": ["Approved", "Rejected"]},
    ]
}
PROPERTIES = {
    "ProcessingOutputConfig": {"Outputs": [
        {"OutputName": "train", "S3Output": {"S3Uri": "s3://b/train"}},
        {"OutputName": "test", "S3Output": {"S3Uri": "s3://b/test"}},
    ]},
}
TUNING = {"BestTrainingJob": {"TunedHyperParameters": {"lr": "0.001", "batch_size": '"64"'}}}
REPORT = {"metrics": {"accuracy": {"value": 0.93}, "classes": [{"name": "a", "f1": 0.5}]}, "count": "12"}


def get(reference: str) -> dict:
    return {"Get": reference}


def report(path: str) -> dict:
    return {"Std:JsonGet": {"PropertyFile": get("Steps.Eval.PropertyFiles.Report"), "Path": path}}


@pytest.fixture
def context() -> ExecutionContext:
    ctx = ExecutionContext.for_execution(
        DEFINITION, {"Count": "3"}, execution_id="abc123def456", execution_arn="arn:exec", pipeline_name="p",
        pipeline_arn="arn:p", started="2026-01-01T00:00:00.000+00:00", read_uri=lambda uri: {"uri": uri})
    ctx.step_properties.update(Prep=PROPERTIES, Tune=TUNING, Eval={})
    ctx.property_files["Eval"] = {"Report": REPORT}
    return ctx


# ---------------------------------------------------------------------------------------------- Get
def test_get_parameters_and_execution_variables(context):
    assert resolve(get("Parameters.Count"), context) == 3
    assert resolve(get("Parameters.Threshold"), context) == 0.9
    assert resolve(get("Execution.PipelineExecutionId"), context) == "abc123def456"
    assert resolve(get("Execution.PipelineExecutionArn"), context) == "arn:exec"
    assert resolve(get("Execution.PipelineName"), context) == "p"
    assert resolve(get("Execution.PipelineArn"), context) == "arn:p"
    assert resolve(get("Execution.StartDateTime"), context).startswith("2026-01-01")
    assert re.match(r"\d{4}-\d\d-\d\dT", resolve(get("Execution.CurrentDateTime"), context))


def test_get_step_properties_by_list_item_name_and_map_key(context):
    uri = resolve(get("Steps.Prep.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"), context)
    assert uri == "s3://b/test"
    assert resolve(get("Steps.Prep.ProcessingOutputConfig.Outputs[0].S3Output.S3Uri"), context) == "s3://b/train"
    assert resolve(get("Steps.Tune.BestTrainingJob.TunedHyperParameters['batch_size']"), context) == '"64"'


def test_resolve_walks_nested_arguments(context):
    arguments = {"A": [get("Parameters.Name"), {"B": get("Parameters.Flag")}], "C": 1}
    assert resolve(arguments, context) == {"A": ["model", {"B": False}], "C": 1}


@pytest.mark.parametrize(("reference", "message"), [
    ("Parameters.Missing", "no parameter 'Missing'"),
    ("Execution.Nope", "no such execution variable"),
    ("Steps.Absent.X", "step Absent has no properties"),
    ("Steps.Prep.ProcessingOutputConfig.Outputs['nope'].S3Output",
     "no 'nope' under ProcessingOutputConfig.Outputs (there: [0] train, [1] test)"),
    ("Steps.Tune.BestTrainingJob.TunedHyperParameters['epochs']",
     "no 'epochs' under BestTrainingJob.TunedHyperParameters (there: lr, batch_size)"),
    ("Steps.Eval.PropertyFiles.Report", "read with Std:JsonGet"),
    ("Other.X", "must start with Parameters., Execution. or Steps."),
])
def test_unresolvable_get_names_the_reference(context, reference, message):
    with pytest.raises(ExpressionError, match=re.escape(message)):
        resolve(get(reference), context)


# ---------------------------------------------------------------------------------------------- Join
@pytest.mark.parametrize(("value", "text"), [
    (0.9, "0.9"), (3, "3"), (True, "true"), (False, "false"), ("x", "x"), (1e-05, "1e-05"), ([1, "a"], '[1,"a"]'),
])
def test_join_writes_values_like_the_service(value, text):
    assert to_text(value) == text


def test_join_resolves_each_value(context):
    joined = {"Std:Join": {"On": "/", "Values": ["s3:/", "b", get("Execution.PipelineExecutionId"),
                                                 get("Parameters.Threshold"), get("Parameters.Flag")]}}
    assert resolve(joined, context) == "s3://b/abc123def456/0.9/false"
    assert resolve({"Std:Join": {"On": "", "Values": [get("Parameters.Count")]}}, context) == "3"


def test_join_without_values_is_an_error(context):
    with pytest.raises(ExpressionError, match="Std:Join needs"):
        resolve({"Std:Join": {"On": "-"}}, context)


# ---------------------------------------------------------------------------------------------- JsonGet
def test_json_get_reads_the_property_file(context):
    assert resolve(report("metrics.accuracy.value"), context) == 0.93
    assert resolve(report("metrics.classes[0].name"), context) == "a"


def test_json_get_missing_path_names_path_and_property_file(context):
    with pytest.raises(ExpressionError) as err:
        resolve(report("metrics.precision.value"), context)
    assert "'metrics.precision.value'" in str(err.value)
    assert "property file Report (step Eval)" in str(err.value)


def test_json_get_of_a_file_not_read_yet(context):
    body = {"Std:JsonGet": {"PropertyFile": get("Steps.Other.PropertyFiles.R"), "Path": "a"}}
    with pytest.raises(ExpressionError, match="property file R of step Other has not been read"):
        resolve(body, context)


def test_json_get_with_an_s3_uri_uses_the_reader(context):
    body = {"Std:JsonGet": {"S3Uri": {"Std:Join": {"On": "/", "Values": ["s3://b", "r.json"]}}, "Path": "uri"}}
    assert resolve(body, context) == "s3://b/r.json"


# ---------------------------------------------------------------------------------------------- conditions
def binary(kind: str, left, right) -> dict:
    return {"Type": kind, "LeftValue": left, "RightValue": right}


@pytest.mark.parametrize(("condition", "expected"), [
    (binary("GreaterThanOrEqualTo", report("metrics.accuracy.value"), get("Parameters.Threshold")), True),
    (binary("GreaterThanOrEqualTo", 0.9, get("Parameters.Threshold")), True),
    (binary("GreaterThan", 0.9, get("Parameters.Threshold")), False),
    (binary("GreaterThan", report("count"), 9), True),  # a JSON string holding a number compares as one
    (binary("LessThan", report("count"), "100"), True),  # both numeric strings: numbers, not text order
    (binary("LessThan", 1, 2), True),
    (binary("LessThanOrEqualTo", 2, 2), True),
    (binary("LessThanOrEqualTo", 3, 2), False),
    (binary("LessThan", "apple", "banana"), True),
    (binary("Equals", get("Parameters.Count"), 3), True),
    (binary("Equals", get("Parameters.Count"), "3"), True),
    (binary("Equals", get("Parameters.Name"), "model"), True),
    (binary("Equals", get("Parameters.Name"), "other"), False),
    (binary("Equals", get("Parameters.Flag"), "false"), True),
    (binary("Equals", "007", "7"), False),  # two strings compare as text
    ({"Type": "In", "QueryValue": get("Parameters.Status"), "Values": ["Rejected", "Approved"]}, True),
    ({"Type": "In", "QueryValue": get("Parameters.Count"), "Values": [1, 2]}, False),
    ({"Type": "In", "QueryValue": report("count"), "Values": [12, 13]}, True),  # "12" against numbers: a number
    ({"Type": "In", "QueryValue": report("count"), "Values": ["12.0"]}, False),  # two strings: text
    ({"Type": "Not", "Condition": binary("Equals", 1, 1)}, False),
    ({"Type": "Not", "Expression": binary("Equals", 1, 2)}, True),
    ({"Type": "Or", "Conditions": [binary("Equals", 1, 2), binary("LessThan", 1, 2)]}, True),
    ({"Type": "Or", "Conditions": [binary("Equals", 1, 2), binary("GreaterThan", 1, 2)]}, False),
])
def test_every_condition_type(context, condition, expected):
    assert evaluate_condition(condition, context) is expected


def test_a_condition_step_needs_all_conditions(context):
    assert evaluate_conditions([binary("Equals", 1, 1), binary("LessThan", 1, 2)], context) is True
    assert evaluate_conditions([binary("Equals", 1, 1), binary("LessThan", 2, 1)], context) is False


@pytest.mark.parametrize(("condition", "message"), [
    ({"Type": "Between"}, "unknown condition type 'Between'"),
    (binary("GreaterThan", "abc", 1), "GreaterThan cannot compare 'abc' (str) with 1 (int)"),
    ({"Type": "Not"}, "a Not condition needs"),
])
def test_bad_conditions_say_why(context, condition, message):
    with pytest.raises(ExpressionError, match=re.escape(message)):
        evaluate_condition(condition, context)


def test_referenced_steps_finds_gets_and_property_files_but_not_branches():
    arguments = {
        "Conditions": [binary("GreaterThan", report("a"), get("Steps.Train.FinalMetricDataList[0].Value"))],
        "IfSteps": [{"Arguments": {"X": get("Steps.Inner.Y")}}],
        "Other": [{"Std:Join": {"On": "", "Values": [get("Steps.Prep-1.X"), get("Parameters.P")]}}],
    }
    assert referenced_steps(arguments) == {"Eval", "Train", "Prep-1"}
