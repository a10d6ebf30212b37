"""The one parameter table (`PARAMETER_SPECS`): the definition's Parameters, the check of `start --param` values
on both targets, and the README's table all follow it."""

from __future__ import annotations

import re

import pytest

from pipelines.config import REPO_ROOT, load_config
from pipelines.parameters import (
    PARAMETER_SPECS,
    ParameterError,
    builtin_input_data_url,
    coerce_parameters,
    default_input_data_url,
    parameter_declarations,
    parameter_table_markdown,
    split_parameter_pairs,
)

DECLARED = [
    {"Name": "Threshold", "Type": "Float", "DefaultValue": 0.9},
    {"Name": "Count", "Type": "Integer", "DefaultValue": 1},
    {"Name": "Flag", "Type": "Boolean", "DefaultValue": False},
    {"Name": "Name", "Type": "String", "DefaultValue": "model"},
    {"Name": "Status", "Type": "String", "DefaultValue": "Approved", "EnumValues": ["Approved", "Rejected"]},
]


def test_values_are_the_defaults_under_typed_overrides() -> None:
    values = coerce_parameters(DECLARED, {"Count": "3", "Threshold": "0.5", "Flag": "True"})
    assert values == {"Threshold": 0.5, "Count": 3, "Flag": True, "Name": "model", "Status": "Approved"}


@pytest.mark.parametrize(("given", "message"), [
    ({"Nope": 1}, "unknown parameter 'Nope'; the pipeline's parameters are: Threshold, Count, Flag, Name, Status"),
    ({"Count": "three"}, "parameter Count takes a whole number, got 'three'"),
    ({"Count": 2.5}, "parameter Count takes a whole number, got 2.5"),
    ({"Count": True}, "parameter Count takes a whole number, got True"),
    ({"Threshold": "high"}, "parameter Threshold takes a number, got 'high'"),
    ({"Flag": "maybe"}, "parameter Flag takes true or false, got 'maybe'"),
    ({"Status": "Pending"}, "parameter Status takes one of Approved, Rejected, got 'Pending'"),
    ({"Name": ["a"]}, "parameter Name takes a string, got ['a']"),
])
def test_a_wrong_value_is_refused_naming_the_parameter_and_what_it_takes(given: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=re.escape(message)):
        coerce_parameters(DECLARED, given)


def test_a_parameter_without_default_must_be_given() -> None:
    with pytest.raises(ParameterError, match="parameter X has no default value: pass one"):
        coerce_parameters([{"Name": "X", "Type": "String"}], {})


@pytest.mark.parametrize(("pair", "message"), [
    ("foo", "--param 'foo' must look like NAME=VALUE, e.g. --param MaxTuningJobs=4"),
    ("=3", "--param '=3' must look like NAME=VALUE"),
])
def test_param_syntax_is_name_equals_value(pair: str, message: str) -> None:
    assert split_parameter_pairs(["A=1", " B =x=y"]) == {"A": "1", "B": "x=y"}
    with pytest.raises(ParameterError, match=re.escape(message)):
        split_parameter_pairs([pair])


def test_each_default_is_read_from_the_config_key_the_spec_names() -> None:
    config = load_config(None, {"project.target": "local", "tuning.max_jobs": 7})
    declared = {p["Name"]: p for p in parameter_declarations(config)}
    assert declared["MaxTuningJobs"]["DefaultValue"] == 7
    assert declared["Arch"]["DefaultValue"] == config.training.arch
    assert declared["ModelApprovalStatus"]["EnumValues"] == ["PendingManualApproval", "Approved", "Rejected"]
    # An empty [data] input_data_url falls back to the built-in location; a given one is used as is.
    assert declared["InputDataUrl"]["DefaultValue"] == builtin_input_data_url(config)
    given = load_config(None, {"project.target": "local", "data.input_data_url": "s3://my-bucket/photos"})
    assert default_input_data_url(given) == "s3://my-bucket/photos"


def test_every_spec_names_a_config_key_that_exists() -> None:
    config = load_config(None, {"project.target": "local"})
    for spec in PARAMETER_SPECS:
        section, key = spec.config_key.split(".")
        assert hasattr(getattr(config, section), key), spec


def test_the_readme_parameter_table_is_the_one_the_code_writes() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert parameter_table_markdown() in readme, (
        "README.md's parameter table differs from PARAMETER_SPECS: paste pipelines.parameters."
        "parameter_table_markdown() in its place")
