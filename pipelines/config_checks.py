"""Checks that need more than one value's type: ranges, sums, names that must agree. Every configuration check lives
here, so a step builder can trust the values it is given."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# The SDK's `sagemaker.debugger.rule_configs` is this package: read here without importing the SDK (16 ms, not 2 s).
import smdebug_rulesconfig as rule_configs
from smdebug_rulesconfig.debugger_rules import builtin_rules
from smdebug_rulesconfig.profiler_rules.rules import ProfilerRuleBase

from pipelines.config_schema import (
    APPROVAL_STATUSES,
    DEPLOYMENT_MODES,
    EXPLAIN_METHODS,
    TRAINING_DISTRIBUTIONS,
    TUNING_STRATEGIES,
    ConfigError,
    PipelineConfig,
)
from pipelines.s3_urls import parse_s3_url


def check_config(config: PipelineConfig, origins: Mapping[str, str]) -> None:
    def fail(dotted: str, message: str) -> None:
        raise ConfigError(f"{origins.get(dotted, 'config')}: [{dotted.split('.')[0]}] {message}")

    def shown(*dotted_keys: str) -> str:
        """`key = value (origin)` of each value a check compares: the one at fault may be the other one."""
        values = []
        for dotted in dotted_keys:
            section, key = dotted.split(".")
            values.append(f"{key} = {getattr(getattr(config, section), key)!r} ({origins.get(dotted, 'config')})")
        return "; ".join(values)

    data, tuning, instances = config.data, config.tuning, config.instances
    if data.input_data_url:
        _check_url_for_target(data.input_data_url, "input_data_url", config.project.target,
                              lambda message: fail("data.input_data_url", message))
    for name in ("val_fraction", "test_fraction"):
        if not 0 <= getattr(data, name) < 1:
            fail(f"data.{name}", f"{name} must be in [0, 1), got {getattr(data, name)}")
    if data.val_fraction + data.test_fraction >= 1:
        fail("data.test_fraction", "val_fraction + test_fraction must leave images for training (sum < 1): "
             + shown("data.val_fraction", "data.test_fraction"))
    if data.test_fraction == 0:
        fail("data.test_fraction", "test_fraction must be > 0: the accuracy gate needs a test split")
    if tuning.strategy not in TUNING_STRATEGIES:
        fail("tuning.strategy", f"strategy must be one of {', '.join(TUNING_STRATEGIES)}, got {tuning.strategy!r}")
    if tuning.early_stopping not in ("Off", "Auto"):
        fail("tuning.early_stopping", f"early_stopping must be Off or Auto, got {tuning.early_stopping!r}")
    if tuning.strategy == "Hyperband" and tuning.early_stopping == "Auto":
        fail("tuning.early_stopping", "early_stopping must be Off with the Hyperband strategy, which stops trials "
             "itself (SageMaker's rule)")
    if not 1 <= tuning.max_parallel_jobs <= tuning.max_jobs:
        fail("tuning.max_parallel_jobs", "max_parallel_jobs must be between 1 and max_jobs: "
             + shown("tuning.max_parallel_jobs", "tuning.max_jobs"))
    if not tuning.ranges:
        fail("tuning.ranges", "at least one hyperparameter range is needed to tune")
    numeric = [r.name for r in tuning.ranges if r.type != "categorical"]
    if tuning.strategy == "Grid" and numeric:
        fail("tuning.strategy", f"the Grid strategy needs every range to be categorical (SageMaker's rule); "
             f"{', '.join(numeric)} are not: give them `values`, or pick another strategy")
    if config.registry.approval_status not in APPROVAL_STATUSES:
        fail("registry.approval_status", f"approval_status must be one of {', '.join(APPROVAL_STATUSES)}")
    if config.training.image_size < 0:
        fail("training.image_size", "image_size must be positive (px), or 0 to follow the training images, "
             f"got {config.training.image_size}")
    if not 0 < config.training.min_crop_scale <= 1:
        fail("training.min_crop_scale", "min_crop_scale is the smallest share of the image a random crop keeps: "
             f"in (0, 1], 1 for no cropping, got {config.training.min_crop_scale}")
    if config.training.color_jitter < 0:
        fail("training.color_jitter", f"color_jitter must be 0 (none) or more, got {config.training.color_jitter}")
    weights_url = config.training.weights_url
    if weights_url and _check_url_for_target(weights_url, "weights_url", config.project.target,
                                             lambda message: fail("training.weights_url", message)):
        if not Path(weights_url).expanduser().exists():
            fail("training.weights_url", f"weights_url {weights_url!r} is neither an S3 URL nor a file or folder on "
                 "this machine: give the .pth state dict (or a folder holding exactly one)")
    if not 0 <= config.evaluation.accuracy_threshold <= 1:
        fail("evaluation.accuracy_threshold", "accuracy_threshold must be between 0 and 1")
    if config.debugger.save_interval < 1:
        fail("debugger.save_interval", f"save_interval must be at least 1, got {config.debugger.save_interval}")
    if config.profiler.stop_training_on:
        fail("profiler.stop_training_on", "profiler rules take no actions in SageMaker (only Debugger rules can "
             "stop training): leave [profiler] stop_training_on empty")
    if config.debugger.stop_training_on and config.project.target == "sagemaker":
        # The SDK fixes StopTraining's job-name prefix when the definition is built, from a name it makes up;
        # Pipelines name the job only at run time (pipelines-<execution id>-TrainModel-...): it never matches.
        fail("debugger.stop_training_on", "stop_training_on cannot work on the sagemaker target: the StopTraining "
             "action's job-name prefix is fixed when the definition is built, but SageMaker Pipelines name the "
             "training job when it starts, so the action would never stop it. Leave [debugger] stop_training_on "
             "empty for sagemaker (the rules still run and report IssuesFound); the local target honours it")
    for name in ("training_count", "tuning_count"):
        if getattr(instances, name) < 1:
            fail(f"instances.{name}", f"{name} must be at least 1 (instances), got {getattr(instances, name)}")
    if instances.distribution not in TRAINING_DISTRIBUTIONS:
        fail("instances.distribution", f"distribution must be one of {', '.join(TRAINING_DISTRIBUTIONS)}, got "
             f"{instances.distribution!r}")
    if instances.distribution == "torch_distributed":
        from pipelines.pytorch_framework import torch_distributed_refusal  # imports the SDK: only when asked

        refusal = torch_distributed_refusal(instances.training_type)
        if refusal:
            fail("instances.distribution", f"distribution = \"torch_distributed\" is refused by SageMaker for "
                 f"{shown('instances.training_type')}: {refusal} Use a GPU or Trainium training_type, or "
                 "distribution = \"auto\" (one process per instance where torchrun is not allowed)")
    if instances.spot and instances.max_wait_seconds < instances.max_run_seconds:
        fail("instances.max_wait_seconds", "max_wait_seconds must be >= max_run_seconds for spot training: "
             + shown("instances.max_wait_seconds", "instances.max_run_seconds"))
    if not 1 <= config.batch.max_payload_mb <= 100:
        fail("batch.max_payload_mb", f"max_payload_mb must be between 1 and 100 (SageMaker's MaxPayloadInMB), "
             f"got {config.batch.max_payload_mb}")
    if config.batch.max_concurrent_transforms < 1:
        fail("batch.max_concurrent_transforms", "max_concurrent_transforms must be at least 1, got "
             f"{config.batch.max_concurrent_transforms}")
    _check_explain(config, fail)
    _check_deployment(config, fail)
    _check_retry(config, fail)
    _check_rule_names(config, origins)
    _check_profiler_rule_parameters(config, origins)


def _check_explain(config: PipelineConfig, fail: Callable[[str, str], None]) -> None:
    explain = config.explain
    if explain.method not in EXPLAIN_METHODS:
        fail("explain.method", f"method must be one of {', '.join(EXPLAIN_METHODS)}, got {explain.method!r}")
    if not 1 <= explain.samples_per_class <= 100:
        fail("explain.samples_per_class", f"samples_per_class must be between 1 and 100, got "
             f"{explain.samples_per_class}")
    if not 0 <= explain.top_loss <= 100:
        fail("explain.top_loss", f"top_loss must be between 0 and 100, got {explain.top_loss}")


def _check_deployment(config: PipelineConfig, fail: Callable[[str, str], None]) -> None:
    deployment = config.deployment
    if deployment.mode not in DEPLOYMENT_MODES:
        fail("deployment.mode", f"mode must be one of {', '.join(DEPLOYMENT_MODES)}, got {deployment.mode!r}")
    # Endpoint variants scale between 1 and max instances (scale to zero needs inference components).
    if deployment.min_instances < 1:
        fail("deployment.min_instances", f"min_instances must be at least 1, got {deployment.min_instances}")
    if deployment.max_instances < deployment.min_instances:
        fail("deployment.max_instances", f"max_instances ({deployment.max_instances}) must be at least "
             f"min_instances ({deployment.min_instances})")
    if deployment.target_invocations_per_instance < 1:
        fail("deployment.target_invocations_per_instance", "target_invocations_per_instance must be at least 1 "
             f"(invocations per instance per minute), got {deployment.target_invocations_per_instance}")
    for key in ("scale_in_cooldown_s", "scale_out_cooldown_s"):
        if getattr(deployment, key) < 0:
            fail(f"deployment.{key}", f"{key} must be 0 or more seconds, got {getattr(deployment, key)}")
    if config.local.endpoint_memory_mb < 1:
        fail("local.endpoint_memory_mb", f"endpoint_memory_mb must be at least 1 (MB), got "
             f"{config.local.endpoint_memory_mb}")


def _check_retry(config: PipelineConfig, fail: Callable[[str, str], None]) -> None:
    retry = config.retry
    if not 1 <= retry.max_attempts <= 20:
        fail("retry.max_attempts", f"max_attempts must be between 1 and 20 (SageMaker's limit), got "
             f"{retry.max_attempts}")
    if retry.interval_seconds < 1:
        fail("retry.interval_seconds", f"interval_seconds must be at least 1, got {retry.interval_seconds}")
    if retry.backoff_rate < 1:
        fail("retry.backoff_rate", f"backoff_rate must be at least 1 (each retry waits as long or longer), got "
             f"{retry.backoff_rate}")


def _check_url_for_target(url: str, name: str, target: str, fail: Callable[[str], None]) -> bool:
    """An S3 URL must parse; the local target also reads a path on this machine, SageMaker reads S3 only.
    True when `url` is such a local path."""
    if url.startswith("s3://") or target == "sagemaker":
        try:
            parse_s3_url(url, name)
        except ValueError as err:
            fail(str(err))
        return False
    return True


def available_rules(section: str) -> list[str]:
    """The built-in rule names `[debugger] rules` (rule functions) or `[profiler] rules` (ProfilerRule classes) take.

    `rule_configs` also exports actions and helpers (SMS, Email, get_collection, ...), which are no rules.
    """

    def is_rule(obj: Any) -> bool:
        if section == "profiler":
            return inspect.isclass(obj) and issubclass(obj, ProfilerRuleBase) and obj is not ProfilerRuleBase
        return inspect.isfunction(obj) and obj.__module__ == builtin_rules.__name__

    return sorted(n for n in dir(rule_configs) if not n.startswith("_") and is_rule(getattr(rule_configs, n)))


def profiler_rule_value(value: str) -> Any:
    """The config keeps rule parameters as the API's strings; profiler rule classes compare them as numbers."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value, value)


def _check_rule_names(config: PipelineConfig, origins: Mapping[str, str]) -> None:
    for section in ("debugger", "profiler"):
        rules = getattr(config, section)
        for name in rules.rules if rules.enabled else ():
            if name not in available_rules(section):
                other = "profiler" if section == "debugger" else "debugger"
                hint = (f" ('{name}' is a {other} rule: list it in [{other}] rules)"
                        if name in available_rules(other) else "")
                raise ConfigError(f"{origins.get(f'{section}.rules', 'config')}: [{section}] rules: unknown rule "
                                  f"'{name}'{hint}; available: {', '.join(available_rules(section))}")
        for key, names in (("stop_training_on", rules.stop_training_on), ("rule_parameters", rules.rule_parameters)):
            for name in names:
                if name not in rules.rules:
                    # Blame where the name was given, not where `rules` came from.
                    dotted = f"{section}.{key}.{name}" if key == "rule_parameters" else f"{section}.{key}"
                    where = origins.get(dotted, origins.get(f"{section}.{key}", "config"))
                    raise ConfigError(f"{where}: [{section}] {key}: {name!r} is configured but not in rules "
                                      f"({origins.get(f'{section}.rules', 'config')}); add it to rules or remove it")


def _check_profiler_rule_parameters(config: PipelineConfig, origins: Mapping[str, str]) -> None:
    """Each profiler rule class checks its own parameters (names, ranges): built once here with them."""
    if not config.profiler.enabled:
        return
    for name, parameters in config.profiler.rule_parameters.items():
        try:
            getattr(rule_configs, name)(**{key: profiler_rule_value(value) for key, value in parameters.items()})
        # TypeError: the rule class names the parameters it takes; AssertionError: its range checks
        # ("threshold must be a valid percentile!").
        except (TypeError, AssertionError) as err:
            where = origins.get(f"profiler.rule_parameters.{name}", origins.get("profiler.rule_parameters", "config"))
            raise ConfigError(f"{where}: [profiler.rule_parameters.{name}] {err}") from None
