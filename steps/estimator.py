"""The PyTorch estimator behind the tuning jobs and TrainModel: scripts/train.py in the PyTorch DLC."""

from __future__ import annotations

from typing import Any

from sagemaker.pytorch import PyTorch
from sagemaker.workflow.pipeline_context import PipelineSession

from pipelines.config import InstancesConfig, PipelineConfig
from pipelines.parameters import PipelineParameters
from pipelines.pytorch_framework import TORCH_DISTRIBUTED, torch_distributed_refusal
from pipelines.session import bucket_and_role
from steps.containers import FRAMEWORK_VERSION, PY_VERSION, SCRIPTS_DIR, pytorch_image_uri

# What scripts/train.py prints once an epoch (docs/container-contract.md); SageMaker and the local engine both
# read metrics from the job's log through these regexes.
NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|nan|inf)"
METRIC_DEFINITIONS: tuple[dict[str, str], ...] = (
    {"Name": "train:loss", "Regex": rf"train_loss={NUMBER}"},
    {"Name": "train:accuracy", "Regex": rf"train_accuracy={NUMBER}"},
    {"Name": "validation:loss", "Regex": rf"validation_loss={NUMBER}"},
    {"Name": "validation:accuracy", "Regex": rf"validation_accuracy={NUMBER}"},
)
OBJECTIVE_METRIC = "validation:accuracy"
# SageMaker's cache key of a training or tuning step leaves ResourceConfig out: a run on 2 instances would reuse a
# 1-instance result. Its hyperparameters are in the key, and the training toolkit hands `sagemaker_*` ones to no
# script (as it does the SDK's own `sagemaker_instance_type`), so the count goes there.
INSTANCE_COUNT_HYPERPARAMETER = "sagemaker_instance_count"


def static_hyperparameters(config: PipelineConfig, params: PipelineParameters) -> dict[str, Any]:
    """Hyperparameters every training job gets; the tuned ones are added by the tuner or from its best job."""
    training = config.training
    return {
        "arch": params["Arch"],
        "image_size": params["ImageSize"],
        "pretrained": str(training.pretrained).lower(),
        "optimizer": training.optimizer,
        "weight_decay": training.weight_decay,
        "freeze_backbone": str(training.freeze_backbone).lower(),
        "hflip": str(training.hflip).lower(),
        "min_crop_scale": training.min_crop_scale,
        "color_jitter": training.color_jitter,
        "seed": training.seed,
    }


def training_distribution(instances: InstancesConfig) -> dict[str, Any] | None:
    """torchrun on every instance (a process per GPU) where SageMaker allows it, else None: the toolkit then runs
    train.py once per instance, which trains data-parallel over SM_HOSTS. Explicit `torch_distributed` where the
    SDK refuses it was refused with its reason when the configuration was loaded."""
    if instances.distribution == "none" or torch_distributed_refusal(instances.training_type):
        return None
    return TORCH_DISTRIBUTED


def build_estimator(
    config: PipelineConfig,
    params: PipelineParameters,
    session: PipelineSession,
    job_prefix: str,
    hyperparameters: dict[str, Any],
    instance_count: Any = 1,
    **debugging: Any,
) -> PyTorch:
    """`debugging` carries the Debugger/Profiler arguments; without them Debugger and Profiler are off.
    `instance_count` is a number or a Parameter (TrainingInstanceCount, TuningInstanceCount)."""
    bucket, role = bucket_and_role(config)
    instances = config.instances
    name = config.project.pipeline_name
    spot: dict[str, Any] = {}
    if instances.spot:
        spot = {
            "use_spot_instances": True,
            "max_wait": instances.max_wait_seconds,
            "checkpoint_s3_uri": f"s3://{bucket}/{name}/checkpoints/{job_prefix}",
        }
    debugging.setdefault("debugger_hook_config", False)
    debugging.setdefault("disable_profiler", True)
    return PyTorch(
        entry_point="train.py",
        source_dir=str(SCRIPTS_DIR),
        framework_version=FRAMEWORK_VERSION,
        py_version=PY_VERSION,
        image_uri=pytorch_image_uri(config, instances.training_type, "training"),
        instance_type=params["TrainingInstanceType"],
        instance_count=instance_count,
        distribution=training_distribution(instances),
        volume_size=instances.training_volume_gb,
        max_run=instances.max_run_seconds,
        role=role,
        output_path=f"s3://{bucket}/{name}/models",
        base_job_name=f"{name}-{job_prefix}",
        hyperparameters={**hyperparameters, INSTANCE_COUNT_HYPERPARAMETER: instance_count},
        metric_definitions=[dict(m) for m in METRIC_DEFINITIONS],
        sagemaker_session=session,
        **spot,
        **debugging,
    )
