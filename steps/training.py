"""TrainModel: scripts/train.py with the best tuning job's hyperparameters, watched by Debugger and Profiler rules."""

from __future__ import annotations

from typing import Any

from sagemaker.debugger import DebuggerHookConfig, ProfilerConfig, ProfilerRule, Rule, rule_configs
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.steps import CacheConfig, ProcessingStep, TrainingStep, TuningStep

from pipelines.config import ConfigError, PipelineConfig
from pipelines.parameters import PipelineParameters
from pipelines.session import bucket_and_role
from steps.estimator import build_estimator, static_hyperparameters
from steps.tuning import training_channels

STEP_NAME = "TrainModel"
SYSTEM_MONITOR_INTERVAL_MS = 500


def _rule_config(name: str, section: str) -> dict[str, Any]:
    factory = getattr(rule_configs, name, None)
    if not callable(factory) or name.startswith("_"):
        known = ", ".join(sorted(n for n in dir(rule_configs) if not n.startswith("_") and n[0].isalpha()))
        raise ConfigError(f"[{section}] rules: unknown rule '{name}'; available: {known}")
    return factory()


def debugger_rules(config: PipelineConfig) -> list[Rule]:
    if not config.debugger.enabled:
        return []
    return [Rule.sagemaker(_rule_config(name, "debugger")) for name in config.debugger.rules]


def profiler_rules(config: PipelineConfig) -> list[ProfilerRule]:
    if not config.profiler.enabled:
        return []
    return [ProfilerRule.sagemaker(_rule_config(name, "profiler")) for name in config.profiler.rules]


def debugging_arguments(config: PipelineConfig) -> dict[str, Any]:
    """Estimator arguments for Debugger and Profiler, each switchable off in the config.

    No collections are declared here: each rule adds the ones it reads, and redeclaring `losses` or `gradients`
    makes the SDK emit them twice.
    """
    bucket, _ = bucket_and_role(config)
    prefix = f"s3://{bucket}/{config.project.pipeline_name}"
    arguments: dict[str, Any] = {"rules": debugger_rules(config) + profiler_rules(config)}
    if config.debugger.enabled:
        arguments["debugger_hook_config"] = DebuggerHookConfig(s3_output_path=f"{prefix}/debug-output")
    if config.profiler.enabled:
        arguments["profiler_config"] = ProfilerConfig(
            s3_output_path=f"{prefix}/profiler-output", system_monitor_interval_millis=SYSTEM_MONITOR_INTERVAL_MS
        )
        arguments["disable_profiler"] = False
    return arguments


def tuned_hyperparameters(config: PipelineConfig, tune: TuningStep) -> dict[str, Any]:
    """Each tuned value as a property of the best training job (categoricals arrive JSON-quoted: train.py copes)."""
    best = tune.properties.BestTrainingJob.TunedHyperParameters
    return {spec.name: best[spec.name] for spec in config.tuning.ranges}


def build_training_step(
    config: PipelineConfig,
    params: PipelineParameters,
    session: PipelineSession,
    prepare: ProcessingStep,
    tune: TuningStep,
    cache: CacheConfig,
) -> TrainingStep:
    hyperparameters = {**static_hyperparameters(config, params), **tuned_hyperparameters(config, tune)}
    estimator = build_estimator(
        config, params, session, "train", hyperparameters, **debugging_arguments(config)
    )
    return TrainingStep(
        name=STEP_NAME,
        display_name="Train model",
        description="Train with the best tuning job's hyperparameters; Debugger and Profiler rules watch the job",
        step_args=estimator.fit(inputs=training_channels(prepare)),
        cache_config=cache,
    )
