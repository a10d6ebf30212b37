"""The pipeline's runtime knobs: every one a Parameter with a default, so schedules and `start` need no arguments.

`PARAMETER_SPECS` is the one source of truth: the definition's Parameters, each default (read from the config key
the spec names), the README's table and the check of `start --param` (against the stored definition, the one
that will run) all come from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.config import APPROVAL_STATUSES, PipelineConfig, bucket_and_role

# The SDK is imported only to build Parameter objects: `start --param` checks values without paying for it.
STRING, INTEGER, FLOAT, BOOLEAN = "String", "Integer", "Float", "Boolean"


class ParameterError(ValueError):
    """A `--param` the pipeline does not have, or a value of the wrong type; the message lists what is valid."""


def builtin_input_data_url(config: PipelineConfig) -> str:
    """InputDataUrl when the configuration names none: the only place the local target writes the sample digits."""
    bucket, _ = bucket_and_role(config)
    return f"s3://{bucket}/{config.project.pipeline_name}/input-data"


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    kind: str  # the definition's parameter Type
    config_key: str  # "section.key" of pipeline.toml that holds the default
    description: str
    enum_values: tuple[str, ...] = ()
    # Where the default comes from when the key is empty, and how the README says it.
    fallback: Callable[[PipelineConfig], Any] | None = None
    fallback_text: str = ""

    def default(self, config: PipelineConfig) -> Any:
        section, key = self.config_key.split(".")
        value = getattr(getattr(config, section), key)
        if value in (None, "") and self.fallback is not None:
            return self.fallback(config)
        return value

    def declaration(self, config: PipelineConfig) -> dict[str, Any]:
        """The parameter as the definition JSON declares it."""
        declared: dict[str, Any] = {"Name": self.name, "Type": self.kind, "DefaultValue": self.default(config)}
        if self.enum_values:
            declared["EnumValues"] = list(self.enum_values)
        return declared


PARAMETER_SPECS: tuple[ParameterSpec, ...] = (
    ParameterSpec("InputDataUrl", STRING, "data.input_data_url",
                  "S3 URI of the image dataset (folder per class, pre-split, or an archive)",
                  fallback=builtin_input_data_url, fallback_text="s3://<bucket>/<pipeline>/input-data"),
    ParameterSpec("ProcessingInstanceType", STRING, "instances.processing_type",
                  "instance type of the PrepareData and EvaluateModel jobs"),
    ParameterSpec("TrainingInstanceType", STRING, "instances.training_type",
                  "instance type of the tuning jobs and TrainModel"),
    ParameterSpec("TrainingInstanceCount", INTEGER, "instances.training_count",
                  "TrainModel's instances; more than 1 trains data-parallel"),
    ParameterSpec("TuningInstanceCount", INTEGER, "instances.tuning_count",
                  "instances of each tuning job; more than 1 trains data-parallel"),
    ParameterSpec("InferenceInstanceType", STRING, "instances.inference_type", "instance type of the endpoint"),
    ParameterSpec("InferenceInstanceCount", INTEGER, "instances.inference_count", "number of endpoint instances"),
    ParameterSpec("MaxTuningJobs", INTEGER, "tuning.max_jobs", "training jobs the tuner may launch in total"),
    ParameterSpec("MaxParallelTuningJobs", INTEGER, "tuning.max_parallel_jobs", "training jobs the tuner runs at once"),
    ParameterSpec("AccuracyThreshold", FLOAT, "evaluation.accuracy_threshold",
                  "test accuracy the model needs to be registered and deployed"),
    ParameterSpec("ModelApprovalStatus", STRING, "registry.approval_status",
                  "approval status of the registered model package", APPROVAL_STATUSES),
    ParameterSpec("EndpointName", STRING, "project.endpoint_name",
                  "endpoint created, or updated, with the new model (<= 50 characters: the execution id is "
                  "appended for the endpoint config)"),
    ParameterSpec("Arch", STRING, "training.arch", "torchvision architecture to fine-tune"),
    ParameterSpec("ImageSize", INTEGER, "training.image_size",
                  "side of the square images the network sees (px); 0: the training job picks it from the images"),
)


def default_input_data_url(config: PipelineConfig) -> str:
    """Where the pipeline reads its images unless `--param InputDataUrl=...` says otherwise, and so where
    `upload-data` writes them unless given `--to`: `[data] input_data_url`, else the built-in location."""
    return str(spec_named("InputDataUrl").default(config))


def spec_named(name: str) -> ParameterSpec:
    return next(spec for spec in PARAMETER_SPECS if spec.name == name)


def parameter_declarations(config: PipelineConfig) -> list[dict[str, Any]]:
    """The definition's `Parameters`, as `build_parameters` makes the SDK write them."""
    return [spec.declaration(config) for spec in PARAMETER_SPECS]


@dataclass(frozen=True)
class PipelineParameters:
    """The Parameter objects one definition is built from."""

    by_name: dict[str, Any]  # name -> sagemaker.workflow.parameters.Parameter

    def __getitem__(self, name: str) -> Any:
        return self.by_name[name]

    def as_list(self) -> list[Any]:
        return list(self.by_name.values())


def build_parameters(config: PipelineConfig) -> PipelineParameters:
    from sagemaker.workflow.parameters import ParameterBoolean, ParameterFloat, ParameterInteger, ParameterString

    classes: dict[str, Any] = {STRING: ParameterString, INTEGER: ParameterInteger, FLOAT: ParameterFloat,
                               BOOLEAN: ParameterBoolean}
    by_name: dict[str, Any] = {}
    for spec in PARAMETER_SPECS:
        if spec.enum_values:
            by_name[spec.name] = ParameterString(spec.name, spec.default(config), enum_values=list(spec.enum_values))
        else:
            by_name[spec.name] = classes[spec.kind](name=spec.name, default_value=spec.default(config))
    return PipelineParameters(by_name)


def parameter_table_markdown() -> str:
    """The README's table of parameters (a test keeps the README equal to it)."""
    rows = ["| name | type | default from `pipeline.toml` | what it sets |", "|---|---|---|---|"]
    for spec in PARAMETER_SPECS:
        kind = f"{spec.kind} ({', '.join(spec.enum_values)})" if spec.enum_values else spec.kind
        default = f"`{spec.config_key}`" + (f", else `{spec.fallback_text}`" if spec.fallback_text else "")
        rows.append(f"| {spec.name} | {kind} | {default} | {spec.description} |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------- `--param` values
def split_parameter_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """`["MaxTuningJobs=4", ...]` -> {"MaxTuningJobs": "4"}: the syntax only; `coerce_parameters` checks the rest
    against the definition that will run."""
    given: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParameterError(f"--param {pair!r} must look like NAME=VALUE, e.g. --param MaxTuningJobs=4")
        given[name] = value
    return given


def coerce_parameters(declared: Sequence[Mapping[str, Any]], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter's value: `given` (strings from a command line are fine) over the defaults, typed as the
    definition's `Parameters` (`declared`) say. The one check of parameter values, on both targets."""
    by_name = {str(p["Name"]): p for p in declared}
    for name in given:
        if name not in by_name:
            valid = ", ".join(by_name) or "(none)"
            raise ParameterError(f"unknown parameter {name!r}; the pipeline's parameters are: {valid}")
    values = {}
    for name, spec in by_name.items():
        if name in given:
            values[name] = coerce_parameter(name, spec, given[name])
        elif "DefaultValue" in spec:
            values[name] = coerce_parameter(name, spec, spec["DefaultValue"])
        else:
            raise ParameterError(f"parameter {name} has no default value: pass one")
    return values


def coerce_parameter(name: str, spec: Mapping[str, Any], value: Any) -> Any:
    kind = spec.get("Type", STRING)
    if kind not in _COERCIONS:
        raise ParameterError(f"parameter {name} has type {kind!r}; known types: {', '.join(_COERCIONS)}")
    coerce, words = _COERCIONS[kind]
    try:
        typed = coerce(value)
    except (TypeError, ValueError):
        raise ParameterError(f"parameter {name} takes {words}, got {value!r}") from None
    allowed = spec.get("EnumValues")
    if allowed and typed not in allowed:
        raise ParameterError(f"parameter {name} takes one of {', '.join(map(str, allowed))}, got {value!r}")
    return typed


def _to_integer(value: Any) -> int:
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    if isinstance(value, str):
        return int(value.strip())
    if isinstance(value, int | float):
        return int(value)
    raise TypeError(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(value)
    return float(value)


def _to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(value)


def to_service_text(value: Any) -> str:
    """A parameter value as the service takes and writes it: text as is, 0.9, 3, true."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TypeError(value)


_COERCIONS: dict[str, tuple[Callable[[Any], Any], str]] = {
    STRING: (to_service_text, "a string"),
    INTEGER: (_to_integer, "a whole number"),
    FLOAT: (_to_float, "a number"),
    BOOLEAN: (_to_boolean, "true or false"),
}
