"""TrainModel: scripts/train.py with the best tuning job's hyperparameters, watched by Debugger and Profiler rules."""

from __future__ import annotations

from typing import Any

from sagemaker.debugger import CollectionConfig, DebuggerHookConfig, ProfilerConfig, ProfilerRule, Rule, rule_configs
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.steps import CacheConfig, ProcessingStep, TrainingStep, TuningStep

from pipelines.config import PipelineConfig, RulesConfig
from pipelines.config_checks import profiler_rule_value
from pipelines.parameters import PipelineParameters
from pipelines.session import bucket_and_role
from steps.estimator import build_estimator, static_hyperparameters
from steps.tuning import training_channels

STEP_NAME = "TrainModel"
# What rules read beyond the collections their configurations declare (smdebug_rulesconfig leaves these to the
# training script): Overfit/Overtraining compare TRAIN and EVAL losses, PoorWeightInitialization also reads gradients
# and the loss, ClassImbalance labels and predictions (which scripts/debugger.py saves).
EXTRA_COLLECTIONS = {"overfit": ("losses",), "overtraining": ("losses",),
                     "poor_weight_initialization": ("gradients", "losses"),
                     "class_imbalance": ("labels", "predictions")}
EVERY_STEP = ("losses", "labels", "predictions")  # a scalar or one integer a sample: saved every step
SYSTEM_MONITOR_INTERVAL_MS = 500


def _stop_training(name: str, rules: RulesConfig) -> Any:
    return rule_configs.ActionList(rule_configs.StopTraining()) if name in rules.stop_training_on else None


def debugger_rules(config: PipelineConfig) -> list[Rule]:
    rules = config.debugger
    if not rules.enabled:
        return []
    built = []
    for name in rules.rules:
        base = getattr(rule_configs, name)()
        built.append(Rule.sagemaker(
            base,
            rule_parameters=dict(rules.rule_parameters.get(name, {})) or None,
            collections_to_save=rule_collections(name, base, rules.save_interval),
            actions=_stop_training(name, rules),
        ))
    return built


def rule_collections(name: str, base: dict[str, Any], save_interval: int) -> list[CollectionConfig]:
    """The collections rule `name` reads, saved every `save_interval` steps ([debugger] save_interval; AWS's
    rule configs say 500) or every step for the small ones. Equal configs of several rules become one in the
    DebugHookConfig (the SDK keeps a set)."""
    declared = {c["CollectionName"]: dict(c.get("CollectionParameters") or {})
                for c in base.get("CollectionConfigurations", [])}
    for collection in EXTRA_COLLECTIONS.get(name, ()):
        declared.setdefault(collection, {"include_regex": f".*{collection}"} if collection in EVERY_STEP[1:] else {})
    return [CollectionConfig(collection, {**parameters, "save_interval": str(1 if collection in EVERY_STEP
                                                                               else save_interval)})
            for collection, parameters in declared.items()]


def profiler_rules(config: PipelineConfig) -> list[ProfilerRule]:
    rules = config.profiler
    if not rules.enabled:
        return []
    built = []
    for name in rules.rules:
        parameters = {key: profiler_rule_value(value) for key, value in rules.rule_parameters.get(name, {}).items()}
        built.append(ProfilerRule.sagemaker(getattr(rule_configs, name)(**parameters)))
    return built


def debugging_arguments(config: PipelineConfig) -> dict[str, Any]:
    """Estimator arguments for Debugger and Profiler, each switchable off in the config.

    No collections are declared here: each rule brings the ones it reads (`rule_collections`), and redeclaring
    `losses` or `gradients` with other parameters makes the SDK emit them twice.
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
        config, params, session, "train", hyperparameters, params["TrainingInstanceCount"],
        **debugging_arguments(config)
    )
    return TrainingStep(
        name=STEP_NAME,
        display_name="Train model",
        description="Train with the best tuning job's hyperparameters; Debugger and Profiler rules watch the job",
        step_args=estimator.fit(inputs=training_channels(prepare, config.training.weights_url)),
        cache_config=cache,
    )
