"""TuneHyperparameters: a SageMaker tuning job over scripts/train.py, objective validation:accuracy."""

from __future__ import annotations

from pathlib import Path

from sagemaker.inputs import TrainingInput
from sagemaker.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter, ParameterRange
from sagemaker.tuner import HyperparameterTuner
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.steps import CacheConfig, ProcessingStep, TuningStep

from pipelines.config import HyperparameterRange, PipelineConfig
from pipelines.parameters import PipelineParameters
from steps.estimator import METRIC_DEFINITIONS, OBJECTIVE_METRIC, build_estimator, static_hyperparameters
from steps.prepare_data import split_uri

STEP_NAME = "TuneHyperparameters"


def to_parameter_range(spec: HyperparameterRange) -> ParameterRange:
    if spec.type == "categorical":
        return CategoricalParameter(list(spec.values))
    low, high = spec.bounds()
    if spec.type == "integer":
        return IntegerParameter(int(low), int(high), scaling_type=spec.scaling)
    return ContinuousParameter(low, high, scaling_type=spec.scaling)


def training_channels(prepare: ProcessingStep, weights_url: str) -> dict[str, TrainingInput]:
    """PrepareData's train and validation splits, and the backbone's state dict as `weights` when one is given."""
    channels = {split: TrainingInput(s3_data=split_uri(prepare, split)) for split in ("train", "validation")}
    if weights_url:
        # A path on this machine (local target only) is made absolute: the engine may run elsewhere than here.
        url = weights_url if weights_url.startswith("s3://") else str(Path(weights_url).expanduser().resolve())
        channels["weights"] = TrainingInput(s3_data=url)
    return channels


def build_tuning_step(
    config: PipelineConfig,
    params: PipelineParameters,
    session: PipelineSession,
    prepare: ProcessingStep,
    cache: CacheConfig,
) -> TuningStep:
    tuning = config.tuning
    estimator = build_estimator(config, params, session, "tune", static_hyperparameters(config, params),
                                params["TuningInstanceCount"])
    tuner = HyperparameterTuner(
        estimator=estimator,
        objective_metric_name=OBJECTIVE_METRIC,
        objective_type="Maximize",
        hyperparameter_ranges={spec.name: to_parameter_range(spec) for spec in tuning.ranges},
        metric_definitions=[dict(m) for m in METRIC_DEFINITIONS],
        strategy=tuning.strategy,
        # Grid enumerates the whole grid: SageMaker rejects a job count with it (None, which the SDK hint omits).
        max_jobs=None if tuning.strategy == "Grid" else params["MaxTuningJobs"],  # type: ignore[arg-type]
        max_parallel_jobs=params["MaxParallelTuningJobs"],
        early_stopping_type=tuning.early_stopping,
        base_tuning_job_name=f"{config.project.pipeline_name[:20]}-tune",
    )
    return TuningStep(
        name=STEP_NAME,
        display_name="Tune hyperparameters",
        description=f"{tuning.strategy} search over {', '.join(r.name for r in tuning.ranges)}, "
        f"maximising {OBJECTIVE_METRIC}",
        step_args=tuner.fit(inputs=training_channels(prepare, config.training.weights_url)),
        cache_config=cache,
    )
