"""The pipeline definition's structure for both targets, compared as parsed JSON (the SDK puts timestamps in names).

Definitions are built once per module (an SDK build costs seconds) and only read. The container contract is checked
on real runs: scripts/train.py's log lines against the definition's MetricDefinitions, and scripts/evaluate.py's
evaluation.json against the condition's JsonGet path. Those two scripts run in a background thread started with the
module, so they overlap the definition builds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipelines.building import BuiltDefinition, build_definition, sample_reports
from pipelines.config import REPO_ROOT, ConfigError, PipelineConfig, load_config
from pipelines.config_checks import check_config
from pipelines.parameters import PARAMETER_SPECS, parameter_declarations
from pipelines.session import LOCAL_BUCKET, LOCAL_ROLE_ARN, Uploads, build_pipeline_session
from pipelines.validation import iter_steps, resolve_json_path
from steps.estimator import METRIC_DEFINITIONS, OBJECTIVE_METRIC
from steps.evaluation import ACCURACY_JSON_PATH, PROPERTY_FILE_NAME, REPORT_FILE, REPORT_OUTPUT

ROLE = "arn:aws:iam::123456789012:role/PipelineExecution"
BUCKET = "definition-test-bucket"
SCRIPTS = REPO_ROOT / "scripts"
TUNED = ("lr", "batch_size", "epochs")
# Every rule issue 5 asks for is on by default; rule functions are snake_case, their configurations CamelCase.
DEBUGGER_RULES = ["LossNotDecreasing", "VanishingGradient", "ExplodingTensor", "Overfit", "Overtraining",
                  "PoorWeightInitialization", "ClassImbalance", "DeadRelu"]
PROFILER_RULES = ["ProfilerReport", "LowGPUUtilization", "CPUBottleneck", "IOBottleneck", "BatchSize", "StepOutlier",
                  "GPUMemoryIncrease", "OverallSystemUsage"]
ACCURACY = {"Std:JsonGet": {"PropertyFile": {"Get": f"Steps.EvaluateModel.PropertyFiles.{PROPERTY_FILE_NAME}"},
                            "Path": ACCURACY_JSON_PATH}}
THRESHOLD = {"Get": "Parameters.AccuracyThreshold"}
pytestmark = pytest.mark.filterwarnings("ignore:Running within a PipelineSession")


@dataclass
class Built:
    config: PipelineConfig
    result: BuiltDefinition

    @property
    def definition(self) -> dict[str, Any]:
        return self.result.definition

    def step(self, name: str) -> dict[str, Any]:
        return next(s for s in iter_steps(self.definition["Steps"]) if s["Name"] == name)

    def args(self, name: str) -> dict[str, Any]:
        return self.step(name)["Arguments"]


def build(config: PipelineConfig) -> Built:
    return Built(config, build_definition(config, build_pipeline_session(config, Uploads.DISCARD)))


def gets(value: Any) -> set[str]:
    """Every `Get` reference inside `value` (the SDK wraps some of them in Std:Join)."""
    if isinstance(value, dict):
        found = {value["Get"]} if isinstance(value.get("Get"), str) else set()
        return found.union(*(gets(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(gets(v) for v in value))
    return set()


def names_and_types(steps: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(s["Name"], s["Type"]) for s in steps]


# ---------------------------------------------------------------------------------------------- real script runs
@dataclass
class ContractRun:
    root: Path
    train: subprocess.CompletedProcess | None = None
    evaluate: subprocess.CompletedProcess | None = None


def _run_scripts(run: ContractRun, env: dict[str, str]) -> None:
    data, model = run.root / "data", run.root / "model"
    train_args = ["--arch", "resnet18", "--pretrained", "false", "--epochs", "1", "--image-size", "16",
                  "--batch-size", "32"]
    run.train = subprocess.run([sys.executable, str(SCRIPTS / "train.py"), *train_args], env=env, cwd=run.root,
                               capture_output=True, text=True, timeout=600)
    if run.train.returncode == 0:
        run.evaluate = subprocess.run(
            [sys.executable, str(SCRIPTS / "evaluate.py"), "--model-dir", str(model), "--test-dir",
             str(data / "test"), "--output-dir", str(run.root / "evaluation")],
            env=env, cwd=run.root, capture_output=True, text=True, timeout=600,
        )


@pytest.fixture(scope="module", autouse=True)
def contract_run(small_digits_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """train.py then evaluate.py for real (10 images a class, 1 epoch, 16 px), in the background from the start."""
    run = ContractRun(tmp_path_factory.mktemp("contract"))
    classes = sorted(p for p in small_digits_dir.iterdir() if p.is_dir())
    for split, picked in (("train", slice(0, 10)), ("validation", slice(10, 20)), ("test", slice(20, 30))):
        for class_dir in classes:
            destination = run.root / "data" / split / class_dir.name
            destination.mkdir(parents=True)
            for image in sorted(class_dir.glob("*.png"))[picked]:
                shutil.copy(image, destination)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMDEBUG_", "SMPROFILER_"))}
    env.update(
        SAGEMAKER_BASE_DIR=str(run.root / "job"), SM_CHANNEL_TRAIN=str(run.root / "data/train"),
        SM_CHANNEL_VALIDATION=str(run.root / "data/validation"), SM_MODEL_DIR=str(run.root / "model"),
        SM_OUTPUT_DATA_DIR=str(run.root / "output"), SM_NUM_GPUS="0", PYTHONUNBUFFERED="1",
    )
    thread = threading.Thread(target=_run_scripts, args=(run, env), daemon=True)
    thread.start()
    yield run, thread
    thread.join()


@pytest.fixture(scope="module")
def finished_run(contract_run) -> ContractRun:
    run, thread = contract_run
    thread.join()
    assert run.train is not None and run.train.returncode == 0, f"train.py failed:\n{run.train and run.train.stderr}"
    assert run.evaluate is not None and run.evaluate.returncode == 0, f"evaluate.py failed:\n{run.evaluate.stderr}"
    return run


# ---------------------------------------------------------------------------------------------- definitions
@pytest.fixture(scope="module")
def cloud_config() -> PipelineConfig:
    overrides = {"project.target": "sagemaker", "project.role_arn": ROLE, "project.bucket": BUCKET}
    return load_config(overrides=overrides, environ={})


@pytest.fixture(scope="module")
def cloud(cloud_config: PipelineConfig) -> Built:
    return build(cloud_config)


@pytest.fixture(scope="module")
def local() -> Built:
    return build(load_config(environ={}))


@pytest.fixture(scope="module")
def debugger_off_with_spot(cloud_config: PipelineConfig) -> Built:
    return build(cloud_config.replace("debugger", enabled=False).replace("instances", spot=True))


@pytest.fixture(scope="module")
def profiler_off(cloud_config: PipelineConfig) -> Built:
    """Also: Overfit stops training when it fires, with patience 2."""
    parameters = {**cloud_config.debugger.rule_parameters, "overfit": {"patience": "2"}}
    config = cloud_config.replace("profiler", enabled=False).replace(
        "debugger", stop_training_on=("overfit",), rule_parameters=parameters)
    return build(config)


@pytest.fixture(params=["cloud", "local"])
def either(request: pytest.FixtureRequest) -> Built:
    return request.getfixturevalue(request.param)


def test_steps_in_order_with_register_and_deploy_if_accurate_else_fail(either: Built) -> None:
    steps = either.definition["Steps"]
    assert names_and_types(steps) == [("PrepareData", "Processing"), ("TuneHyperparameters", "Tuning"),
                                      ("TrainModel", "Training"), ("EvaluateModel", "Processing"),
                                      ("ExplainModel", "Processing"), ("CheckAccuracy", "Condition")]
    gate = steps[-1]["Arguments"]
    assert names_and_types(gate["IfSteps"]) == [("ImageClassifier-RegisterModel", "RegisterModel"),
                                                ("ServingModel-CreateModel", "Model"),
                                                ("EndpointConfig", "EndpointConfig"), ("Endpoint", "Endpoint"),
                                                ("BatchTransform", "Transform")]
    assert names_and_types(gate["ElseSteps"]) == [("AccuracyTooLow", "Fail")]
    assert gate["ElseSteps"][0]["DependsOn"] == ["ExplainModel"]  # a model that fails the gate is explained too
    assert either.step("ServingModel-CreateModel")["DependsOn"] == ["ImageClassifier-RegisterModel"]


def test_batch_transform_scores_the_test_split_with_the_created_model_one_record_a_file(either: Built) -> None:
    args = either.args("BatchTransform")
    assert args["ModelName"] == {"Get": "Steps.ServingModel-CreateModel.ModelName"}
    assert args["TransformInput"] == {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": {
        "Get": "Steps.PrepareData.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"}}},
        "ContentType": "application/x-image"}  # no SplitType: each file is one record
    bucket = BUCKET if either.config.project.target == "sagemaker" else "local-pipeline"
    assert args["TransformOutput"] == {"Accept": "application/json", "S3OutputPath": {"Std:Join": {
        "On": "/", "Values": [f"s3://{bucket}/image-classifier", {"Get": "Execution.PipelineExecutionId"},
                              "batch-output"]}}}
    batch = either.config.batch
    assert (args["BatchStrategy"], args["MaxPayloadInMB"], args["MaxConcurrentTransforms"]) == (
        "SingleRecord", batch.max_payload_mb, batch.max_concurrent_transforms)
    assert args["TransformResources"] == {"InstanceCount": 1,
                                          "InstanceType": {"Get": "Parameters.InferenceInstanceType"}}


def test_pipeline_batch_sends_the_request_the_step_has(cloud: Built) -> None:
    from pipelines.transform_requests import transform_job_request

    request = transform_job_request("job", "model", "s3://b/in", "s3://b/out", cloud.config.batch, "ml.m5.large")
    step = cloud.args("BatchTransform")
    assert set(request) - {"TransformJobName"} == set(step)
    for key in ("BatchStrategy", "MaxPayloadInMB", "MaxConcurrentTransforms"):
        assert request[key] == step[key], key
    assert request["TransformInput"]["ContentType"] == step["TransformInput"]["ContentType"]
    assert request["TransformOutput"]["Accept"] == step["TransformOutput"]["Accept"]


def test_batch_transform_switched_off_leaves_the_endpoint(cloud_config: PipelineConfig) -> None:
    built = build(cloud_config.replace("batch", enabled=False))
    assert built.result.problems == []
    assert "BatchTransform" not in {s["Name"] for s in iter_steps(built.definition["Steps"])}


def test_no_hidden_repack_model_job_only_train_model_trains(either: Built) -> None:
    steps = list(iter_steps(either.definition["Steps"]))
    assert not [s["Name"] for s in steps if "repack" in s["Name"].lower()]
    assert [s["Name"] for s in steps if s["Type"] == "Training"] == ["TrainModel"]


def test_every_parameter_has_the_configured_default(either: Built) -> None:
    parameters = either.definition["Parameters"]
    assert [p["Name"] for p in parameters] == [spec.name for spec in PARAMETER_SPECS]
    for spec, parameter in zip(PARAMETER_SPECS, parameters, strict=True):
        assert parameter["Type"] == spec.kind, spec.name
        assert parameter.get("DefaultValue") is not None, f"{spec.name} has no default: schedules would fail"
        assert parameter["DefaultValue"] == spec.default(either.config)
    # What `start` checks values against on both targets, written without the SDK, is what the SDK writes.
    assert parameters == parameter_declarations(either.config)
    status = next(p for p in parameters if p["Name"] == "ModelApprovalStatus")
    assert status["EnumValues"] == ["PendingManualApproval", "Approved", "Rejected"]


def test_parameter_defaults_follow_the_target(cloud: Built, local: Built) -> None:
    def default(built: Built, name: str) -> Any:
        return next(p["DefaultValue"] for p in built.definition["Parameters"] if p["Name"] == name)

    assert default(cloud, "InputDataUrl") == f"s3://{BUCKET}/image-classifier/input-data"
    assert default(local, "InputDataUrl") == f"s3://{LOCAL_BUCKET}/image-classifier/input-data"
    assert (default(cloud, "Arch"), default(cloud, "ImageSize"), default(cloud, "AccuracyThreshold")) == \
        ("resnet50", 224, 0.8)
    assert (default(local, "Arch"), default(local, "ImageSize"), default(local, "AccuracyThreshold")) == \
        ("resnet18", 0, 0.9)  # 0: the training job follows the images


def test_job_steps_run_as_the_configured_role(cloud: Built, local: Built) -> None:
    for built, role in ((cloud, ROLE), (local, LOCAL_ROLE_ARN)):
        assert built.args("PrepareData")["RoleArn"] == role
        assert built.args("TrainModel")["RoleArn"] == role
        assert built.args("TuneHyperparameters")["TrainingJobDefinition"]["RoleArn"] == role
        assert built.args("EvaluateModel")["RoleArn"] == role
        assert built.args("ServingModel-CreateModel")["ExecutionRoleArn"] == role


def test_prepare_data_reads_input_data_url_and_gets_the_split_settings(cloud: Built) -> None:
    args = cloud.args("PrepareData")
    dataset = next(i for i in args["ProcessingInputs"] if i["InputName"] == "dataset")
    assert dataset["S3Input"]["S3Uri"] == {"Get": "Parameters.InputDataUrl"}
    arguments = args["AppSpecification"]["ContainerArguments"]
    settings = dict(zip(arguments[::2], arguments[1::2], strict=True))
    data = cloud.config.data
    assert settings == {"--val-fraction": str(data.val_fraction), "--test-fraction": str(data.test_fraction),
                        "--seed": str(data.split_seed), "--min-images-per-class": str(data.min_images_per_class),
                        "--max-image-side": str(data.max_image_side)}
    assert [o["OutputName"] for o in args["ProcessingOutputConfig"]["Outputs"]] == \
        ["train", "validation", "test", "report"]


def test_train_model_takes_lr_batch_size_epochs_from_the_best_tuning_job(either: Built) -> None:
    hyperparameters = either.args("TrainModel")["HyperParameters"]
    for name in TUNED:
        assert gets(hyperparameters[name]) == {
            f"Steps.TuneHyperparameters.BestTrainingJob.TunedHyperParameters['{name}']"
        }
    assert gets(hyperparameters["arch"]) == {"Parameters.Arch"}
    assert gets(hyperparameters["image_size"]) == {"Parameters.ImageSize"}
    training = either.config.training
    assert json.loads(hyperparameters["optimizer"]) == training.optimizer
    assert json.loads(hyperparameters["pretrained"]) == str(training.pretrained).lower()
    assert json.loads(hyperparameters["sagemaker_program"]) == "train.py"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in either.args("TrainModel")["InputDataConfig"]}
    assert channels == {split: {"Get": f"Steps.PrepareData.ProcessingOutputConfig.Outputs['{split}'].S3Output.S3Uri"}
                        for split in ("train", "validation")}


def test_tuning_maximises_validation_accuracy_over_the_configured_ranges(either: Built) -> None:
    config = either.args("TuneHyperparameters")["HyperParameterTuningJobConfig"]
    tuning = either.config.tuning
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:accuracy"}
    assert config["Strategy"] == tuning.strategy
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": {"Get": "Parameters.MaxTuningJobs"},
                                        "MaxParallelTrainingJobs": {"Get": "Parameters.MaxParallelTuningJobs"}}
    assert config["TrainingJobEarlyStoppingType"] == tuning.early_stopping
    configured = {r.name: r for r in tuning.ranges}
    ranges = config["ParameterRanges"]
    [lr] = ranges["ContinuousParameterRanges"]
    assert (lr["Name"], float(lr["MinValue"]), float(lr["MaxValue"]), lr["ScalingType"]) == \
        ("lr", configured["lr"].min, configured["lr"].max, "Logarithmic")
    [batch] = ranges["CategoricalParameterRanges"]
    assert batch["Name"] == "batch_size"
    assert [json.loads(v) for v in batch["Values"]] == list(configured["batch_size"].values)  # JSON-quoted by the SDK
    [epochs] = ranges["IntegerParameterRanges"]
    assert (epochs["Name"], int(epochs["MinValue"]), int(epochs["MaxValue"])) == \
        ("epochs", configured["epochs"].min, configured["epochs"].max)


def test_tuning_strategy_and_epochs_differ_between_targets_as_configured(cloud: Built, local: Built) -> None:
    def tuning(built: Built) -> tuple:
        config = built.args("TuneHyperparameters")["HyperParameterTuningJobConfig"]
        [epochs] = config["ParameterRanges"]["IntegerParameterRanges"]
        return config["Strategy"], epochs["MinValue"], epochs["MaxValue"]

    assert tuning(cloud) == ("Bayesian", "3", "6")
    assert tuning(local) == ("Random", "6", "8")


def test_tuned_names_are_not_static_and_metrics_include_the_objective(cloud: Built) -> None:
    definition = cloud.args("TuneHyperparameters")["TrainingJobDefinition"]
    assert not set(TUNED) & set(definition["StaticHyperParameters"])
    metric_names = [m["Name"] for m in definition["AlgorithmSpecification"]["MetricDefinitions"]]
    assert OBJECTIVE_METRIC in metric_names
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == \
        cloud.args("TrainModel")["AlgorithmSpecification"]["MetricDefinitions"] == [dict(m) for m in METRIC_DEFINITIONS]


def test_evaluate_model_publishes_evaluation_report_property_file(either: Built) -> None:
    step = either.step("EvaluateModel")
    assert step["PropertyFiles"] == [{"PropertyFileName": "EvaluationReport", "OutputName": "evaluation",
                                      "FilePath": "evaluation.json"}]
    assert (PROPERTY_FILE_NAME, REPORT_OUTPUT, REPORT_FILE) == ("EvaluationReport", "evaluation", "evaluation.json")
    outputs = [o["OutputName"] for o in step["Arguments"]["ProcessingOutputConfig"]["Outputs"]]
    assert outputs == ["evaluation"]
    inputs = {i["S3Input"]["LocalPath"]: i["S3Input"]["S3Uri"] for i in step["Arguments"]["ProcessingInputs"]}
    assert inputs["/opt/ml/processing/model"] == {"Get": "Steps.TrainModel.ModelArtifacts.S3ModelArtifacts"}
    assert inputs["/opt/ml/processing/test"] == {
        "Get": "Steps.PrepareData.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"}


def test_condition_compares_the_json_get_accuracy_with_the_threshold_parameter(either: Built) -> None:
    assert either.args("CheckAccuracy")["Conditions"] == [
        {"Type": "GreaterThanOrEqualTo", "LeftValue": ACCURACY, "RightValue": THRESHOLD}
    ]


def test_fail_step_message_carries_the_accuracy_and_the_threshold(either: Built) -> None:
    message = either.args("AccuracyTooLow")["ErrorMessage"]["Std:Join"]
    assert ACCURACY in message["Values"] and THRESHOLD in message["Values"]
    assert "Test accuracy" in message["Values"][0]
    assert message["Values"].index(ACCURACY) < message["Values"].index(THRESHOLD)


def test_debugger_and_profiler_rules_are_on_by_default(cloud: Built) -> None:
    args = cloud.args("TrainModel")
    assert [r["RuleConfigurationName"] for r in args["DebugRuleConfigurations"]] == DEBUGGER_RULES
    assert [r["RuleParameters"]["rule_to_invoke"] for r in args["DebugRuleConfigurations"]] == DEBUGGER_RULES
    assert not any("action_json" in r["RuleParameters"] for r in args["DebugRuleConfigurations"])
    assert all(".dkr.ecr." in r["RuleEvaluatorImage"] for r in args["DebugRuleConfigurations"])
    hook = args["DebugHookConfig"]
    assert hook["S3OutputPath"] == f"s3://{BUCKET}/image-classifier/debug-output"
    collections = [c["CollectionName"] for c in hook["CollectionConfigurations"]]
    assert {"losses", "gradients"} <= set(collections) and len(collections) == len(set(collections))
    assert args["ProfilerConfig"]["S3OutputPath"] == f"s3://{BUCKET}/image-classifier/profiler-output"
    assert args["ProfilerConfig"]["DisableProfiler"] is False
    assert [r["RuleConfigurationName"] for r in args["ProfilerRuleConfigurations"]] == PROFILER_RULES


def test_debugger_disabled_drops_its_rules_and_hook_only(debugger_off_with_spot: Built) -> None:
    args = debugger_off_with_spot.args("TrainModel")
    assert "DebugRuleConfigurations" not in args and "DebugHookConfig" not in args
    assert [r["RuleConfigurationName"] for r in args["ProfilerRuleConfigurations"]] == PROFILER_RULES


def test_profiler_disabled_drops_its_rules_and_switches_profiling_off(profiler_off: Built) -> None:
    args = profiler_off.args("TrainModel")
    assert "ProfilerRuleConfigurations" not in args
    # Not absent but explicit: without a ProfilerConfig the service turns system monitoring on by default.
    assert args["ProfilerConfig"] == {"DisableProfiler": True}
    assert [r["RuleConfigurationName"] for r in args["DebugRuleConfigurations"]] == DEBUGGER_RULES


def overfit_rule(built: Built) -> dict[str, Any]:
    rules = built.args("TrainModel")["DebugRuleConfigurations"]
    return next(r for r in rules if r["RuleConfigurationName"] == "Overfit")


def actions(rule: dict[str, Any]) -> list[dict[str, str]]:
    """A rule's action_json, in smdebug's own escaping (`[{\\"name\\": ...}]`, as the rule container reads it)."""
    return json.loads(rule["RuleParameters"]["action_json"].replace('\\"', '"'))


def test_debugger_rule_parameters_and_stop_training_reach_the_rule(profiler_off: Built) -> None:
    assert overfit_rule(profiler_off)["RuleParameters"]["patience"] == "2"
    [action] = actions(overfit_rule(profiler_off))
    assert action["name"] == "stoptraining"


def test_profiler_rule_parameters_are_typed_for_the_rule_and_checked(cloud_config: PipelineConfig) -> None:
    from steps.training import profiler_rules

    def checked(config: PipelineConfig) -> None:
        check_config(config, {})

    def with_parameters(parameters: dict[str, str]) -> PipelineConfig:
        return cloud_config.replace("profiler", rules=("CPUBottleneck",),
                                    rule_parameters={"CPUBottleneck": parameters})

    [rule] = profiler_rules(with_parameters({"threshold": "60"}))  # pipeline.toml's example, as the config keeps it
    assert rule.to_profiler_rule_config_dict()["RuleParameters"]["threshold"] == "60"
    with pytest.raises(ConfigError, match=r"\[profiler.rule_parameters.CPUBottleneck\] .*unexpected .*'treshold'"):
        checked(with_parameters({"treshold": "60"}))
    with pytest.raises(ConfigError, match=r"\[profiler.rule_parameters.CPUBottleneck\] threshold must be a valid"):
        checked(with_parameters({"threshold": "150"}))


def test_tuning_jobs_carry_no_debugger_or_profiler(cloud: Built) -> None:
    definition = cloud.args("TuneHyperparameters")["TrainingJobDefinition"]
    assert not {"DebugHookConfig", "DebugRuleConfigurations", "ProfilerConfig"} & set(definition)


def test_unknown_debugger_rule_is_a_config_error_listing_the_real_rules(cloud_config: PipelineConfig) -> None:
    with pytest.raises(ConfigError, match=r"\[debugger\] rules: unknown rule 'loss_not_decresing'; available: ") \
            as raised:
        check_config(cloud_config.replace("debugger", rules=("loss_not_decresing",)), {})
    available = str(raised.value).split("available: ")[1].split(", ")
    assert {"loss_not_decreasing", "vanishing_gradient", "overfit"} <= set(available)
    assert not {"SMS", "Email", "get_collection", "ProfilerReport"} & set(available)  # no actions, helpers, profilers


def test_unknown_profiler_rule_is_a_config_error_listing_the_profiler_rules(cloud_config: PipelineConfig) -> None:
    with pytest.raises(ConfigError, match=r"\[profiler\] rules: unknown rule 'GPUUtilisation'; available: ") \
            as raised:
        check_config(cloud_config.replace("profiler", rules=("GPUUtilisation",)), {})
    available = str(raised.value).split("available: ")[1].split(", ")
    assert {"ProfilerReport", "LowGPUUtilization", "CPUBottleneck"} <= set(available)
    assert "overfit" not in available


@pytest.mark.parametrize(("section", "rule", "hint"), [
    ("debugger", "ProfilerReport", "'ProfilerReport' is a profiler rule: list it in [profiler] rules"),
    ("profiler", "overfit", "'overfit' is a debugger rule: list it in [debugger] rules"),
])
def test_rule_in_the_wrong_section_is_a_config_error_saying_where_it_belongs(
    cloud_config: PipelineConfig, section: str, rule: str, hint: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(hint)):
        check_config(cloud_config.replace(section, rules=(rule,)), {})


def test_spot_training_adds_managed_spot_max_wait_and_checkpoints(
    cloud: Built, debugger_off_with_spot: Built
) -> None:
    instances = debugger_off_with_spot.config.instances
    for step, job in (("TrainModel", "train"), ("TuneHyperparameters", "tune")):
        args = debugger_off_with_spot.args(step)
        args = args.get("TrainingJobDefinition", args)
        assert args["EnableManagedSpotTraining"] is True
        assert args["StoppingCondition"] == {"MaxRuntimeInSeconds": instances.max_run_seconds,
                                             "MaxWaitTimeInSeconds": instances.max_wait_seconds}
        assert args["CheckpointConfig"] == {"S3Uri": f"s3://{BUCKET}/image-classifier/checkpoints/{job}"}
        on_demand = cloud.args(step)
        on_demand = on_demand.get("TrainingJobDefinition", on_demand)
        assert not {"EnableManagedSpotTraining", "CheckpointConfig"} & set(on_demand)
        assert on_demand["StoppingCondition"] == {"MaxRuntimeInSeconds": instances.max_run_seconds}


def test_endpoint_config_name_joins_endpoint_name_and_execution_id(either: Built) -> None:
    config = either.args("EndpointConfig")
    assert config["EndpointConfigName"] == {"Std:Join": {"On": "-", "Values": [
        {"Get": "Parameters.EndpointName"}, {"Get": "Execution.PipelineExecutionId"}]}}
    [variant] = config["ProductionVariants"]
    assert variant["ModelName"] == {"Get": "Steps.ServingModel-CreateModel.ModelName"}
    assert variant["InitialInstanceCount"] == {"Get": "Parameters.InferenceInstanceCount"}
    assert variant["InstanceType"] == {"Get": "Parameters.InferenceInstanceType"}
    endpoint = either.args("Endpoint")
    assert endpoint["EndpointName"] == {"Get": "Parameters.EndpointName"}
    assert endpoint["EndpointConfigName"] == {"Get": "Steps.EndpointConfig.EndpointConfigName"}


def test_model_package_inference_spec_and_metrics(either: Built) -> None:
    args = either.args("ImageClassifier-RegisterModel")
    registry, project = either.config.registry, either.config.project
    assert args["ModelPackageGroupName"] == project.model_package_group
    assert args["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    spec = args["InferenceSpecification"]
    assert spec["SupportedContentTypes"] == list(registry.content_types)
    assert spec["SupportedContentTypes"] == ["application/x-image", "image/jpeg", "image/png", "application/json"]
    assert spec["SupportedResponseMIMETypes"] == list(registry.response_types) == ["application/json"]
    assert spec["SupportedRealtimeInferenceInstanceTypes"] == [{"Get": "Parameters.InferenceInstanceType"}]
    [container] = spec["Containers"]
    assert container["ModelDataUrl"] == {"Get": "Steps.TrainModel.ModelArtifacts.S3ModelArtifacts"}
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert "pytorch-inference" in container["Image"]
    serving = either.args("ServingModel-CreateModel")["PrimaryContainer"]
    assert (serving["Image"], serving["Environment"], serving["ModelDataUrl"]) == \
        (container["Image"], container["Environment"], container["ModelDataUrl"])
    statistics = args["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["ContentType"] == "application/json"
    assert statistics["S3Uri"] == {"Std:Join": {"On": "/", "Values": [
        {"Get": "Steps.EvaluateModel.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"}, "evaluation.json"]}}


# ---------------------------------------------------------------------------------------------- the real scripts
def test_metric_regexes_extract_each_metric_train_py_prints(cloud: Built, finished_run: ContractRun) -> None:
    output = finished_run.train.stdout
    [history] = json.loads((finished_run.root / "output" / "history.json").read_text())  # one epoch
    definitions = cloud.args("TrainModel")["AlgorithmSpecification"]["MetricDefinitions"]
    assert [d["Name"] for d in definitions] == ["train:loss", "train:accuracy", "validation:loss",
                                                "validation:accuracy"]
    for metric in definitions:
        found = re.findall(metric["Regex"], output)
        assert len(found) == 1, f"{metric['Name']}: {found!r} in\n{output}"
        assert float(found[0]) == pytest.approx(history[metric["Name"].replace(":", "_")], abs=1e-4)


def test_evaluate_py_writes_the_accuracy_where_the_condition_reads_it(
    cloud: Built, finished_run: ContractRun
) -> None:
    import evaluate  # scripts/ is on sys.path (conftest)

    report = json.loads((finished_run.root / "evaluation" / REPORT_FILE).read_text())
    accuracy = resolve_json_path(report, ACCURACY_JSON_PATH)
    matrix = report["multiclass_classification_metrics"]["confusion_matrix"]
    correct = sum(row[name] for name, row in matrix.items())
    total = sum(sum(row.values()) for row in matrix.values())
    assert total == 100 and accuracy == pytest.approx(correct / total)
    assert evaluate.ACCURACY_JSON_PATH == ACCURACY_JSON_PATH
    path = cloud.args("CheckAccuracy")["Conditions"][0]["LeftValue"]["Std:JsonGet"]["Path"]
    assert path == ACCURACY_JSON_PATH


def test_validators_sample_report_has_the_real_reports_shape(finished_run: ContractRun) -> None:
    real = json.loads((finished_run.root / "evaluation" / REPORT_FILE).read_text())
    sample = sample_reports()[REPORT_FILE]
    assert set(sample) == set(real)
    assert set(sample["multiclass_classification_metrics"]) == set(real["multiclass_classification_metrics"])


def test_trained_model_dir_is_self_contained_so_no_repack_is_needed(finished_run: ContractRun) -> None:
    model = finished_run.root / "model"
    assert {"model.pth", "model_meta.json"} <= {p.name for p in model.iterdir()}
    assert (model / "code" / "inference.py").is_file()


def test_weights_url_becomes_the_weights_channel_of_every_training_job(cloud: Built,
                                                                       cloud_config: PipelineConfig) -> None:
    def channels(built: Built) -> dict[str, dict[str, Any]]:
        tuning = built.args("TuneHyperparameters")["TrainingJobDefinition"]["InputDataConfig"]
        training = built.args("TrainModel")["InputDataConfig"]
        assert tuning == training  # the best trial and the final job see the same data
        return {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in training}

    assert set(channels(cloud)) == {"train", "validation"}  # none given: no channel, the job's ImageNet download
    url = "s3://my-models/torchvision/resnet50-11ad3fa6.pth"
    weights = channels(build(cloud_config.replace("training", weights_url=url)))["weights"]
    assert (weights["S3Uri"], weights["S3DataType"]) == (url, "S3Prefix")  # an object key is a prefix of itself


@pytest.fixture(scope="module")
def multi_model(cloud_config: PipelineConfig) -> Built:
    return build(cloud_config.replace("deployment", mode="multi-model"))


def test_multi_model_mode_publishes_the_registered_version_under_the_prefix_the_endpoint_model_serves(
        multi_model: Built) -> None:
    gate = multi_model.definition["Steps"][-1]["Arguments"]
    assert names_and_types(gate["IfSteps"]) == [
        ("ImageClassifier-RegisterModel", "RegisterModel"), ("ServingModel-CreateModel", "Model"),
        ("PublishModel", "Processing"), ("MultiModel-CreateModel", "Model"), ("EndpointConfig", "EndpointConfig"),
        ("Endpoint", "Endpoint"), ("BatchTransform", "Transform")]
    prefix = f"s3://{BUCKET}/image-classifier/multi-model/"
    publish = multi_model.args("PublishModel")
    assert publish["AppSpecification"]["ContainerArguments"] == [
        "--model-package-arn", {"Get": "Steps.ImageClassifier-RegisterModel.ModelPackageArn"}]
    assert publish["ProcessingInputs"][0]["S3Input"]["S3Uri"] == {"Get": "Steps.TrainModel.ModelArtifacts."
                                                                          "S3ModelArtifacts"}
    [output] = publish["ProcessingOutputConfig"]["Outputs"]
    assert (output["S3Output"]["S3Uri"], output["S3Output"]["LocalPath"]) == (prefix, "/opt/ml/processing/published")
    served = multi_model.step("MultiModel-CreateModel")
    assert served["DependsOn"] == ["PublishModel"] and "ModelName" not in served["Arguments"]
    container = served["Arguments"]["PrimaryContainer"]
    assert (container["Mode"], container["ModelDataUrl"]) == ("MultiModel", prefix)
    single = multi_model.args("ServingModel-CreateModel")["PrimaryContainer"]
    assert (container["Image"], container["Environment"]) == (single["Image"], single["Environment"])
    # A transform job names no TargetModel: the batch step keeps the single-model model.
    assert multi_model.args("BatchTransform")["ModelName"] == {"Get": "Steps.ServingModel-CreateModel.ModelName"}


def test_multi_model_mode_without_batch_creates_no_single_model_and_retry_off_leaves_no_policies(
        cloud_config: PipelineConfig) -> None:
    config = cloud_config.replace("deployment", mode="multi-model").replace("batch", enabled=False)
    built = build(config.replace("retry", enabled=False))  # one build for both: a build costs seconds
    names = [name for name, _ in names_and_types(built.definition["Steps"][-1]["Arguments"]["IfSteps"])]
    assert names == ["ImageClassifier-RegisterModel", "PublishModel", "MultiModel-CreateModel", "EndpointConfig",
                     "Endpoint"]
    assert not any("RetryPolicies" in step for step in iter_steps(built.definition["Steps"]))


def test_every_step_that_takes_retry_policies_gets_the_ones_that_fit_it(either: Built) -> None:
    retry = either.config.retry
    timing = {"IntervalSeconds": retry.interval_seconds, "BackoffRate": retry.backoff_rate,
              "MaxAttempts": retry.max_attempts}
    service = {"ExceptionType": ["Step.SERVICE_FAULT", "Step.THROTTLING"], **timing}
    jobs = {"ExceptionType": ["SageMaker.RESOURCE_LIMIT", "SageMaker.CAPACITY_ERROR",
                              "SageMaker.JOB_INTERNAL_ERROR"], **timing}
    tuning = {**jobs, "ExceptionType": ["SageMaker.RESOURCE_LIMIT", "SageMaker.CAPACITY_ERROR"]}
    policies = {step["Name"]: step.get("RetryPolicies") for step in iter_steps(either.definition["Steps"])}
    assert policies == {
        "PrepareData": [service, jobs], "TuneHyperparameters": [service, tuning], "TrainModel": [service, jobs],
        "EvaluateModel": [service, jobs], "ExplainModel": [service, jobs], "CheckAccuracy": None,
        "ImageClassifier-RegisterModel": [service],
        "ServingModel-CreateModel": [service], "EndpointConfig": None, "Endpoint": None,
        "BatchTransform": [service, jobs], "AccuracyTooLow": None}
