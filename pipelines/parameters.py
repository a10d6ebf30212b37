"""The pipeline's runtime knobs: every one a Parameter with a default, so schedules and `start` need no arguments.

The names here are the one source of truth: the definition, `start --param`, the local engine and the README's
table all read them from `PARAMETER_SPECS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.config import APPROVAL_STATUSES, PipelineConfig, bucket_and_role

# The SDK is imported only to build Parameter objects: `start --param` checks values without paying for it.
STRING, INTEGER, FLOAT = "String", "Integer", "Float"


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    kind: str  # the definition's parameter Type
    description: str
    enum_values: tuple[str, ...] = ()


PARAMETER_SPECS: tuple[ParameterSpec, ...] = (
    ParameterSpec(
        "InputDataUrl", STRING, "S3 URI of the image dataset (folder per class, pre-split, or an archive)"
    ),
    ParameterSpec("ProcessingInstanceType", STRING, "instance type of the PrepareData and EvaluateModel jobs"),
    ParameterSpec("TrainingInstanceType", STRING, "instance type of the tuning jobs and TrainModel"),
    ParameterSpec("InferenceInstanceType", STRING, "instance type of the endpoint"),
    ParameterSpec("InferenceInstanceCount", INTEGER, "number of endpoint instances"),
    ParameterSpec("MaxTuningJobs", INTEGER, "training jobs the tuner may launch in total"),
    ParameterSpec("MaxParallelTuningJobs", INTEGER, "training jobs the tuner runs at once"),
    ParameterSpec("AccuracyThreshold", FLOAT, "test accuracy the model needs to be registered and deployed"),
    ParameterSpec(
        "ModelApprovalStatus", STRING, "approval status of the registered model package", APPROVAL_STATUSES
    ),
    ParameterSpec("EndpointName", STRING, "endpoint created, or updated, with the new model"),
    ParameterSpec("Arch", STRING, "torchvision architecture to fine-tune"),
    ParameterSpec("ImageSize", INTEGER, "side of the square images the network sees (px); 0: follow the images"),
)


@dataclass(frozen=True)
class PipelineParameters:
    """The Parameter objects one definition is built from."""

    by_name: dict[str, Any]  # name -> sagemaker.workflow.parameters.Parameter

    def __getitem__(self, name: str) -> Any:
        return self.by_name[name]

    def as_list(self) -> list[Any]:
        return list(self.by_name.values())


def builtin_input_data_url(config: PipelineConfig) -> str:
    """InputDataUrl when the configuration names none: the only place the local target writes the sample digits."""
    bucket, _ = bucket_and_role(config)
    return f"s3://{bucket}/{config.project.pipeline_name}/input-data"


def default_input_data_url(config: PipelineConfig) -> str:
    """Where the pipeline reads its images unless `--param InputDataUrl=...` says otherwise, and so where
    `upload-data` writes them unless given `--to`: `[data] input_data_url`, else the built-in location."""
    return config.data.input_data_url or builtin_input_data_url(config)


def parameter_defaults(config: PipelineConfig) -> dict[str, Any]:
    """Each parameter's default, taken from the configuration."""
    instances = config.instances
    return {
        "InputDataUrl": default_input_data_url(config),
        "ProcessingInstanceType": instances.processing_type,
        "TrainingInstanceType": instances.training_type,
        "InferenceInstanceType": instances.inference_type,
        "InferenceInstanceCount": instances.inference_count,
        "MaxTuningJobs": config.tuning.max_jobs,
        "MaxParallelTuningJobs": config.tuning.max_parallel_jobs,
        "AccuracyThreshold": config.evaluation.accuracy_threshold,
        "ModelApprovalStatus": config.registry.approval_status,
        "EndpointName": config.project.endpoint_name,
        "Arch": config.training.arch,
        "ImageSize": config.training.image_size,
    }


def build_parameters(config: PipelineConfig) -> PipelineParameters:
    from sagemaker.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString

    classes = {STRING: ParameterString, INTEGER: ParameterInteger, FLOAT: ParameterFloat}
    defaults = parameter_defaults(config)
    by_name: dict[str, Any] = {}
    for spec in PARAMETER_SPECS:
        if spec.enum_values:
            by_name[spec.name] = ParameterString(spec.name, defaults[spec.name], enum_values=list(spec.enum_values))
        else:
            by_name[spec.name] = classes[spec.kind](name=spec.name, default_value=defaults[spec.name])
    return PipelineParameters(by_name)


class ParameterError(ValueError):
    """A `--param` the pipeline does not have, or a value of the wrong type; the message lists what is valid."""


def parse_parameter_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`["MaxTuningJobs=4", ...]` -> {"MaxTuningJobs": 4}, checked against PARAMETER_SPECS before anything runs."""
    specs = {spec.name: spec for spec in PARAMETER_SPECS}
    parsed: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParameterError(f"--param {pair!r} must look like NAME=VALUE, e.g. --param MaxTuningJobs=4")
        spec = specs.get(name)
        if spec is None:
            raise ParameterError(f"unknown parameter {name!r}; the pipeline's parameters are: {', '.join(specs)}")
        parsed[name] = _typed(spec, value)
    return parsed


def _typed(spec: ParameterSpec, value: str) -> Any:
    if spec.kind == INTEGER:
        try:
            return int(value)
        except ValueError:
            raise ParameterError(f"parameter {spec.name} takes a whole number, got {value!r}") from None
    if spec.kind == FLOAT:
        try:
            return float(value)
        except ValueError:
            raise ParameterError(f"parameter {spec.name} takes a number, got {value!r}") from None
    if spec.enum_values and value not in spec.enum_values:
        raise ParameterError(f"parameter {spec.name} takes one of {', '.join(spec.enum_values)}, got {value!r}")
    return value
