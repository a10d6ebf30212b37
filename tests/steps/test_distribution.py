"""Multi-instance training in the definition: the instance counts as Parameters, and SageMaker's torch_distributed
where the SDK allows it (and a clear refusal where it does not)."""

from __future__ import annotations

import re

import pytest

from pipelines.building import build_definition
from pipelines.config import ConfigError, load_config
from pipelines.session import Uploads, build_pipeline_session
from pipelines.validation import iter_steps

pytestmark = pytest.mark.filterwarnings("ignore:Running within a PipelineSession")
CLOUD = {"project.target": "sagemaker", "project.role_arn": "arn:aws:iam::123456789012:role/PipelineExecution",
         "project.bucket": "distribution-test-bucket"}
TORCH_DISTRIBUTED_HP = "sagemaker_torch_distributed_enabled"


def training_arguments(**overrides: object) -> tuple[dict, dict]:
    """(TrainModel's arguments, the tuning job's TrainingJobDefinition) of the cloud definition."""
    config = load_config(overrides={**CLOUD, **overrides}, environ={})
    definition = build_definition(config, build_pipeline_session(config, Uploads.DISCARD)).definition
    steps = {step["Name"]: step for step in iter_steps(definition["Steps"])}
    return (steps["TrainModel"]["Arguments"],
            steps["TuneHyperparameters"]["Arguments"]["TrainingJobDefinition"])


def test_instance_counts_are_parameters_of_train_model_and_of_each_tuning_job() -> None:
    train, tune = training_arguments()
    assert train["ResourceConfig"]["InstanceCount"] == {"Get": "Parameters.TrainingInstanceCount"}
    assert tune["HyperParameterTuningResourceConfig"]["InstanceCount"] == {"Get": "Parameters.TuningInstanceCount"}


def test_auto_uses_torch_distributed_on_a_gpu_training_type() -> None:
    train, tune = training_arguments()  # pipeline.toml: ml.g4dn.xlarge
    assert train["HyperParameters"][TORCH_DISTRIBUTED_HP] == "true"
    assert tune["StaticHyperParameters"][TORCH_DISTRIBUTED_HP] == "true"


@pytest.mark.parametrize("overrides", [
    {"instances.training_type": "ml.m5.xlarge"},  # auto on CPU: SageMaker refuses torchrun there
    {"instances.distribution": "none"},
])
def test_one_process_per_instance_where_torch_distributed_is_not_used(overrides) -> None:
    train, tune = training_arguments(**overrides)
    assert TORCH_DISTRIBUTED_HP not in train["HyperParameters"]
    assert TORCH_DISTRIBUTED_HP not in tune["StaticHyperParameters"]


def test_torch_distributed_on_a_cpu_type_is_refused_with_the_sdks_reason() -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(overrides={**CLOUD, "instances.training_type": "ml.m5.xlarge",
                               "instances.distribution": "torch_distributed"}, environ={})
    message = str(refused.value)
    assert ("[instances] distribution = \"torch_distributed\" is refused by SageMaker for training_type = "
            "'ml.m5.xlarge'") in message
    assert "Currently torch_distributed is supported only for GPU and Trainium instances." in message
    assert "Use a GPU or Trainium training_type, or distribution = \"auto\"" in message


@pytest.mark.parametrize(("key", "value", "words"), [
    ("instances.training_count", 0, "training_count must be at least 1 (instances), got 0"),
    ("instances.tuning_count", -2, "tuning_count must be at least 1 (instances), got -2"),
    ("instances.distribution", "horovod", "distribution must be one of auto, torch_distributed, none, got 'horovod'"),
])
def test_bad_instance_settings_are_refused(key, value, words) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_config(overrides={**CLOUD, key: value}, environ={})


def test_the_instance_counts_are_in_the_cache_keys() -> None:
    """AWS's cache key of a training/tuning step leaves ResourceConfig out, so without this a 2-instance start would
    reuse a 1-instance TrainModel; the hyperparameters are in the key (pipelines/step_cache.py)."""
    from pipelines.step_cache import cache_key

    train, tune = training_arguments()
    two_hosts = {**train, "HyperParameters": {**train["HyperParameters"], "sagemaker_instance_count": "2"}}
    assert cache_key("Training", two_hosts) != cache_key("Training", train)
    resized = {**train, "ResourceConfig": {**train["ResourceConfig"], "InstanceCount": 2}}
    assert cache_key("Training", resized) == cache_key("Training", train)  # AWS's own key would not see it
    joined = {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.TrainingInstanceCount"}]}}
    assert train["HyperParameters"]["sagemaker_instance_count"] == joined
    assert tune["StaticHyperParameters"]["sagemaker_instance_count"] == {
        "Std:Join": {"On": "", "Values": [{"Get": "Parameters.TuningInstanceCount"}]}}
