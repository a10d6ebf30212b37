"""What a configuration is: its sections and their fields, the constants they are checked against, `ConfigError`.

Kept apart from loading (`pipelines.config`) and checking (`pipelines.config_checks`) so both can use it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from pipelines.project_files import DEFAULTS_FILE

REPO_ROOT = Path(__file__).resolve().parents[1]  # where `pipelines` is importable from (a checkout or site-packages)
ENV_PREFIX = "PIPELINE_"
TARGETS = ("local", "sagemaker")
TUNING_STRATEGIES = ("Bayesian", "Random", "Grid", "Hyperband")
RANGE_TYPES = ("continuous", "integer", "categorical")
RANGE_SCALINGS = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
APPROVAL_STATUSES = ("PendingManualApproval", "Approved", "Rejected")
DEPLOYMENT_MODES = ("single", "multi-model")
# scripts/explain.py's --method choices (a test keeps the two lists equal: the script cannot import this module)
EXPLAIN_METHODS = ("gradcam", "integrated_gradients", "occlusion")
EXPLAIN_METHOD_NAMES = {"gradcam": "Grad-CAM", "integrated_gradients": "Integrated Gradients", "occlusion": "Occlusion"}
# How a multi-instance training job starts its workers (steps/estimator.py resolves "auto").
TRAINING_DISTRIBUTIONS = ("auto", "torch_distributed", "none")


# The local target's identity: the local engine checks requests against botocore's shapes, which need an ARN there.
LOCAL_ROLE_ARN = "arn:aws:iam::000000000000:role/LocalPipelineExecution"
LOCAL_BUCKET = "local-pipeline"


def bucket_and_role(config: PipelineConfig) -> tuple[str, str]:
    """The bucket and role the definition uses; the local target has its own."""
    if config.project.target == "local":
        return config.project.bucket or LOCAL_BUCKET, config.project.role_arn or LOCAL_ROLE_ARN
    return config.project.bucket, config.project.role_arn


class ConfigError(Exception):
    """A configuration value is missing, unknown or of the wrong type; the message names it and its origin."""


@dataclass(frozen=True)
class ProjectConfig:
    target: str
    region: str
    role_arn: str
    bucket: str
    pipeline_name: str
    model_package_group: str
    endpoint_name: str


@dataclass(frozen=True)
class DataConfig:
    input_data_url: str
    val_fraction: float
    test_fraction: float
    split_seed: int
    min_images_per_class: int
    max_image_side: int


@dataclass(frozen=True)
class InstancesConfig:
    processing_type: str
    training_type: str
    training_count: int
    tuning_count: int
    distribution: str
    training_volume_gb: int
    inference_type: str
    inference_count: int
    max_run_seconds: int
    spot: bool
    max_wait_seconds: int


@dataclass(frozen=True)
class TrainingConfig:
    arch: str
    pretrained: bool
    image_size: int
    optimizer: str
    weight_decay: float
    freeze_backbone: bool
    hflip: bool
    min_crop_scale: float
    color_jitter: float
    seed: int
    weights_url: str


@dataclass(frozen=True)
class HyperparameterRange:
    name: str
    type: str
    min: float | None = None
    max: float | None = None
    scaling: str = "Auto"
    values: tuple[str, ...] = ()

    def bounds(self) -> tuple[float, float]:
        """(min, max) of a numeric range; config validation has made sure both are there."""
        if self.min is None or self.max is None:
            raise ValueError(f"[tuning.ranges.{self.name}] a {self.type} range needs min and max")
        return self.min, self.max


@dataclass(frozen=True)
class TuningConfig:
    strategy: str
    max_jobs: int
    max_parallel_jobs: int
    early_stopping: str
    ranges: tuple[HyperparameterRange, ...]


@dataclass(frozen=True)
class EvaluationConfig:
    accuracy_threshold: float


@dataclass(frozen=True)
class RegistryConfig:
    approval_status: str
    content_types: tuple[str, ...]
    response_types: tuple[str, ...]


@dataclass(frozen=True)
class RulesConfig:
    enabled: bool
    rules: tuple[str, ...]
    # Rules whose IssuesFound stops the training job (SageMaker's StopTraining rule action).
    stop_training_on: tuple[str, ...]
    # Per-rule overrides of AWS's documented defaults: {"overfit": {"patience": "2"}}; values as strings, as the API.
    rule_parameters: dict[str, dict[str, str]]


@dataclass(frozen=True)
class DebuggerConfig(RulesConfig):
    # Steps between saves of the tensors the Debugger rules read (gradients, ReLU activations); losses, labels and
    # predictions are saved every step (steps/training.py `rule_collections`).
    save_interval: int


@dataclass(frozen=True)
class BatchConfig:
    """The BatchTransform step: the registered model scores the test split, one `.out` per image."""

    enabled: bool
    max_payload_mb: int  # MaxPayloadInMB: the largest image one request may carry
    max_concurrent_transforms: int  # MaxConcurrentTransforms: requests in flight per instance


@dataclass(frozen=True)
class ExplainConfig:
    """The ExplainModel step: attribution overlays for test images, class balance and per-class recall gaps."""

    enabled: bool
    samples_per_class: int  # test images explained per class
    top_loss: int  # the test images with the highest loss, explained too
    method: str  # one of EXPLAIN_METHODS


@dataclass(frozen=True)
class DeploymentConfig:
    """How the endpoint serves: one model, or every published version from one multi-model endpoint; and how the
    endpoint's variant scales (Application Auto Scaling, applied by `pipeline.py autoscale`)."""

    mode: str  # single | multi-model
    autoscaling: bool
    min_instances: int
    max_instances: int
    target_invocations_per_instance: int  # SageMakerVariantInvocationsPerInstance, per minute
    scale_in_cooldown_s: int
    scale_out_cooldown_s: int


@dataclass(frozen=True)
class RetryConfig:
    """The RetryPolicies every job step (and RegisterModel, CreateModel) carries."""

    enabled: bool
    max_attempts: int  # retries after the first try, per policy (SageMaker: 1..20)
    interval_seconds: int  # before the first retry; each next one waits backoff_rate times longer
    backoff_rate: float


@dataclass(frozen=True)
class LocalConfig:
    workspace: str
    # What a local multi-model endpoint may fill with loaded models (on SageMaker: the instance's memory).
    endpoint_memory_mb: int


@dataclass(frozen=True)
class PipelineConfig:
    project: ProjectConfig
    data: DataConfig
    instances: InstancesConfig
    training: TrainingConfig
    tuning: TuningConfig
    evaluation: EvaluationConfig
    registry: RegistryConfig
    debugger: DebuggerConfig
    profiler: RulesConfig
    batch: BatchConfig
    explain: ExplainConfig
    deployment: DeploymentConfig
    retry: RetryConfig
    local: LocalConfig
    source: str = str(DEFAULTS_FILE)

    def replace(self, section: str, **changes: Any) -> PipelineConfig:
        """A copy with some values of one section changed (tests and the CLI use it)."""
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


SECTIONS: dict[str, type] = {k: v for k, v in get_type_hints(PipelineConfig).items() if k != "source"}


def env_var_name(section: str, key: str) -> str:
    """The environment variable that overrides `section.key`."""
    return f"{ENV_PREFIX}{key}".upper() if section == "project" else f"{ENV_PREFIX}{section}_{key}".upper()
