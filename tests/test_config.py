"""load_config: pipeline.toml < --config FILE < PIPELINE_* env vars < overrides, and every refusal's message.

Every call passes `environ=` explicitly: the real environment never leaks in.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from pipelines.config import DEFAULTS_FILE, ConfigError, PipelineConfig, env_var_name, load_config

SAGEMAKER = {"project.target": "sagemaker"}


def write_toml(tmp_path: Path, text: str, name: str = "my.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def ranges_by_name(config: PipelineConfig) -> dict:
    return {r.name: r for r in config.tuning.ranges}


def refused(match: str, *args, **kwargs) -> str:
    """The ConfigError message of load_config(*args, **kwargs), which must contain `match` literally."""
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError, match=re.escape(match)) as raised:
        load_config(*args, **kwargs)
    return str(raised.value)


# ---------------------------------------------------------------------------------------------- the layers
def test_no_file_no_env_gives_pipeline_toml_with_its_local_tables() -> None:
    defaults = tomllib.loads(DEFAULTS_FILE.read_text())
    config = load_config(environ={})
    assert config.project.target == defaults["project"]["target"] == "local"
    assert config.project.pipeline_name == defaults["project"]["pipeline_name"]
    # [local.*] replaced the cloud values on the local target...
    assert config.training.arch == defaults["local"]["training"]["arch"]
    assert config.training.pretrained is False and config.training.image_size == 0  # follow the images
    assert config.tuning.strategy == defaults["local"]["tuning"]["strategy"]
    assert config.tuning.max_jobs == defaults["local"]["tuning"]["max_jobs"]
    assert config.evaluation.accuracy_threshold == defaults["local"]["evaluation"]["accuracy_threshold"]
    epochs = ranges_by_name(config)["epochs"]
    assert (epochs.min, epochs.max) == (6, 8)
    # ...the rest stays as [section] says, and [local]'s own keys land in config.local.
    assert config.training.optimizer == defaults["training"]["optimizer"]
    assert config.local.workspace == defaults["local"]["workspace"]
    assert config.source == str(DEFAULTS_FILE)


def test_sagemaker_target_leaves_the_local_tables_out() -> None:
    defaults = tomllib.loads(DEFAULTS_FILE.read_text())
    config = load_config(overrides=SAGEMAKER, environ={})
    assert config.project.target == "sagemaker"
    assert config.training.arch == defaults["training"]["arch"] == "resnet50"
    assert config.training.pretrained is True and config.training.image_size == 224
    assert (config.tuning.strategy, config.tuning.max_jobs) == ("Bayesian", 4)
    assert config.evaluation.accuracy_threshold == defaults["evaluation"]["accuracy_threshold"]
    assert {name: (r.type, r.min, r.max, r.scaling, r.values) for name, r in ranges_by_name(config).items()} == {
        "lr": ("continuous", 0.0001, 0.01, "Logarithmic", ()),
        "batch_size": ("categorical", None, None, "Auto", ("32", "64")),
        "epochs": ("integer", 3, 6, "Auto", ()),
    }


def test_target_from_the_environment_also_decides_the_local_tables() -> None:
    assert load_config(environ={"PIPELINE_TARGET": "sagemaker"}).training.arch == "resnet50"
    # an override beats the environment
    assert load_config(overrides={"project.target": "local"}, environ={"PIPELINE_TARGET": "sagemaker"}).training.arch \
        == "resnet18"


@pytest.mark.parametrize(
    ("use_file", "environ", "overrides", "expected"),
    [
        (False, {}, {}, ("", 4)),
        (True, {}, {}, ("from-file", 5)),
        (True, {"PIPELINE_BUCKET": "from-env", "PIPELINE_TUNING_MAX_JOBS": "6"}, {}, ("from-env", 6)),
        (True, {"PIPELINE_BUCKET": "from-env"}, {"project.bucket": "from-flag"}, ("from-flag", 5)),
        (False, {"PIPELINE_BUCKET": "from-env"}, {"project.bucket": "from-flag"}, ("from-flag", 4)),
    ],
    ids=["toml-only", "file-over-toml", "env-over-file", "flag-over-env", "flag-over-env-without-file"],
)
def test_precedence_toml_then_file_then_env_then_overrides(
    tmp_path: Path, use_file: bool, environ: dict, overrides: dict, expected: tuple
) -> None:
    user = write_toml(tmp_path, '[project]\nbucket = "from-file"\n[tuning]\nmax_jobs = 5\n')
    config = load_config(user if use_file else None, {**SAGEMAKER, **overrides}, environ)
    assert (config.project.bucket, config.tuning.max_jobs) == expected
    assert config.source == (str(user) if use_file else str(DEFAULTS_FILE))


def test_user_file_range_replaces_the_whole_range_and_keeps_the_others(tmp_path: Path) -> None:
    user = write_toml(tmp_path, '[tuning.ranges.lr]\ntype = "categorical"\nvalues = [0.001, 0.01]\n')
    ranges = ranges_by_name(load_config(user, SAGEMAKER, {}))
    assert (ranges["lr"].type, ranges["lr"].min, ranges["lr"].values) == ("categorical", None, ("0.001", "0.01"))
    assert set(ranges) == {"lr", "batch_size", "epochs"}


def test_user_file_local_table_applies_on_the_local_target_only(tmp_path: Path) -> None:
    user = write_toml(tmp_path, '[local]\nworkspace = "ws"\n[local.training]\narch = "mobilenet_v3_small"\n')
    local = load_config(user, environ={})
    cloud = load_config(user, SAGEMAKER, {})
    assert (local.training.arch, local.local.workspace) == ("mobilenet_v3_small", "ws")
    assert cloud.training.arch == "resnet50"


def test_environment_values_are_coerced_to_each_fields_type() -> None:
    config = load_config(
        overrides=SAGEMAKER,
        environ={
            "PIPELINE_REGISTRY_CONTENT_TYPES": "image/png, application/json",
            "PIPELINE_INSTANCES_SPOT": "yes",
            "PIPELINE_DEBUGGER_ENABLED": "off",
            "PIPELINE_EVALUATION_ACCURACY_THRESHOLD": "0.5",
            "PIPELINE_TUNING_MAX_PARALLEL_JOBS": "3",
            "PIPELINE_UNRELATED": "ignored",
        },
    )
    assert config.registry.content_types == ("image/png", "application/json")
    assert config.instances.spot is True and config.debugger.enabled is False
    assert config.evaluation.accuracy_threshold == 0.5 and config.tuning.max_parallel_jobs == 3


def test_rule_parameters_from_a_user_file_become_the_apis_strings(tmp_path: Path) -> None:
    user = write_toml(tmp_path, "[debugger.rule_parameters.overfit]\npatience = 2\nstart_step = true\n"
                                "[profiler.rule_parameters.CPUBottleneck]\nthreshold = 50\n")
    config = load_config(user, environ={"PIPELINE_DEBUGGER_STOP_TRAINING_ON": "overfit, dead_relu"})
    assert config.debugger.rule_parameters == {"overfit": {"patience": "2", "start_step": "true"}}
    assert config.profiler.rule_parameters == {"CPUBottleneck": {"threshold": "50"}}
    assert config.debugger.stop_training_on == ("overfit", "dead_relu")


def test_env_var_name_has_no_section_for_project() -> None:
    assert env_var_name("project", "role_arn") == "PIPELINE_ROLE_ARN"
    assert env_var_name("tuning", "max_parallel_jobs") == "PIPELINE_TUNING_MAX_PARALLEL_JOBS"


def test_replace_changes_a_copy_only() -> None:
    config = load_config(environ={})
    changed = config.replace("debugger", enabled=False)
    assert changed.debugger.enabled is False and config.debugger.enabled is True
    assert changed.profiler == config.profiler


def test_max_wait_below_max_run_is_fine_without_spot() -> None:
    config = load_config(environ={"PIPELINE_INSTANCES_MAX_WAIT_SECONDS": "10"})
    assert config.instances.max_wait_seconds == 10 and config.instances.spot is False


# ---------------------------------------------------------------------------------------------- refusals
def test_unknown_section_in_user_file_names_the_file(tmp_path: Path) -> None:
    user = write_toml(tmp_path, "[trainig]\narch = 'resnet18'\n")
    message = refused(f"{user}: unknown section [trainig]; known sections: project, data,", user)
    assert "training" in message


def test_unknown_key_in_user_file_names_the_file_and_the_known_keys(tmp_path: Path) -> None:
    user = write_toml(tmp_path, "[tuning]\nmax_job = 3\n")
    message = refused(f"{user}: unknown key 'max_job' in [tuning]; known keys:", user)
    assert "max_jobs" in message


def test_unknown_key_in_user_files_local_table_is_refused(tmp_path: Path) -> None:
    user = write_toml(tmp_path, "[local.training]\narhc = 'resnet18'\n")
    refused(f"{user} [local]: unknown key 'arhc' in [training]", user)


def test_unknown_key_in_user_files_local_section_itself_is_refused(tmp_path: Path) -> None:
    user = write_toml(tmp_path, "[local]\nworkspce = 'elsewhere'\n")
    refused(f"{user}: unknown key 'workspce' in [local]; known keys: workspace", user)


def test_section_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    user = write_toml(tmp_path, "training = 3\n")
    refused(f"{user}: [training] must be a table", user)


def test_wrong_type_in_user_file_names_the_file(tmp_path: Path) -> None:
    user = write_toml(tmp_path, "[tuning]\nmax_jobs = 2.5\n")
    refused(f"{user}: [tuning] max_jobs must be a whole number, got 2.5", user, SAGEMAKER)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PIPELINE_TUNING_MAX_JOBS", "many", "[tuning] max_jobs must be a whole number, got 'many'"),
        ("PIPELINE_TUNING_MAX_JOBS", "3.5", "[tuning] max_jobs must be a whole number, got '3.5'"),
        ("PIPELINE_EVALUATION_ACCURACY_THRESHOLD", "high", "[evaluation] accuracy_threshold must be a number"),
        ("PIPELINE_INSTANCES_SPOT", "maybe", "[instances] spot must be true or false, got 'maybe'"),
        ("PIPELINE_INSTANCES_SPOT", "", "[instances] spot must be true or false, got ''"),
    ],
)
def test_wrong_type_from_env_var_names_the_env_var(name: str, value: str, message: str) -> None:
    refused(f"{name}: {message}", environ={name: value})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ('type = "float"\nmin = 1\nmax = 2', "type must be one of continuous, integer, categorical, got 'float'"),
        ('type = "continuous"\nmax = 2', "min must be a number, got None"),
        ('type = "continuous"\nmin = "1"\nmax = 2', "min must be a number, got '1'"),
        ('type = "integer"\nmin = 1.5\nmax = 4', "min must be a whole number for an integer range"),
        ('type = "categorical"\nvalues = []', "categorical needs a non-empty list `values`"),
        ('type = "continuous"\nmin = 1\nmax = 2\nstep = 1', "has unknown keys ['step']"),
        ('type = "continuous"\nmin = 1\nmax = 2\nscaling = "Log"', "scaling must be one of Auto, Linear, Log"),
        ('type = "integer"\nmin = 5\nmax = 5', "min (5) must be below max (5)"),
        ('type = "continuous"\nmin = 0.1\nmax = 0.01', "min (0.1) must be below max (0.01)"),
        ('type = "continuous"\nmin = 0\nmax = 1\nscaling = "Logarithmic"', "Logarithmic scaling needs min > 0, got 0"),
        ('type = "continuous"\nmin = -1\nmax = 1\nscaling = "Logarithmic"', "Logarithmic scaling needs min > 0"),
    ],
    ids=["bad-type", "no-min", "string-min", "fractional-integer", "empty-values", "unknown-key", "bad-scaling",
         "min-equals-max", "min-above-max", "log-from-zero", "log-from-negative"],
)
def test_bad_range_spec_in_user_file_is_blamed_on_that_file_even_on_the_local_target(
    tmp_path: Path, spec: str, message: str
) -> None:
    user = write_toml(tmp_path, f"[tuning.ranges.lr]\n{spec}\n")
    refused(f"{user}: [tuning.ranges.lr] {message}", user)


def test_range_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    user = write_toml(tmp_path, "[tuning.ranges]\nlr = 0.1\n")
    refused(f"{user}: [tuning.ranges.lr] must be a table with a type", user)


@pytest.mark.parametrize(
    ("environ", "where", "message"),
    [
        ({"PIPELINE_DATA_VAL_FRACTION": "0.5", "PIPELINE_DATA_TEST_FRACTION": "0.5"}, "PIPELINE_DATA_TEST_FRACTION",
         "val_fraction + test_fraction must leave images for training (sum < 1)"),
        ({"PIPELINE_DATA_VAL_FRACTION": "0.7", "PIPELINE_DATA_TEST_FRACTION": "0.4"}, "PIPELINE_DATA_TEST_FRACTION",
         "sum < 1"),
        ({"PIPELINE_DATA_VAL_FRACTION": "1.2"}, "PIPELINE_DATA_VAL_FRACTION",
         "val_fraction must be in [0, 1), got 1.2"),
        ({"PIPELINE_DATA_TEST_FRACTION": "0"}, "PIPELINE_DATA_TEST_FRACTION", "test_fraction must be > 0"),
        ({"PIPELINE_TUNING_MAX_PARALLEL_JOBS": "5"}, "PIPELINE_TUNING_MAX_PARALLEL_JOBS",
         "max_parallel_jobs must be between 1 and max_jobs"),
        ({"PIPELINE_TUNING_MAX_PARALLEL_JOBS": "0"}, "PIPELINE_TUNING_MAX_PARALLEL_JOBS", "between 1 and max_jobs"),
        ({"PIPELINE_TUNING_STRATEGY": "Bayes"}, "PIPELINE_TUNING_STRATEGY",
         "strategy must be one of Bayesian, Random, Grid, Hyperband, got 'Bayes'"),
        ({"PIPELINE_TUNING_STRATEGY": "Grid"}, "PIPELINE_TUNING_STRATEGY",
         "the Grid strategy needs every range to be categorical (SageMaker's rule); lr, epochs are not"),
        ({"PIPELINE_TUNING_EARLY_STOPPING": "On"}, "PIPELINE_TUNING_EARLY_STOPPING", "must be Off or Auto"),
        ({"PIPELINE_TUNING_STRATEGY": "Hyperband", "PIPELINE_TUNING_EARLY_STOPPING": "Auto"},
         "PIPELINE_TUNING_EARLY_STOPPING", "early_stopping must be Off with the Hyperband strategy, which stops "
         "trials itself (SageMaker's rule)"),
        ({"PIPELINE_REGISTRY_APPROVAL_STATUS": "Maybe"}, "PIPELINE_REGISTRY_APPROVAL_STATUS",
         "approval_status must be one of PendingManualApproval, Approved, Rejected"),
        ({"PIPELINE_EVALUATION_ACCURACY_THRESHOLD": "1.5"}, "PIPELINE_EVALUATION_ACCURACY_THRESHOLD",
         "accuracy_threshold must be between 0 and 1"),
        ({"PIPELINE_TRAINING_IMAGE_SIZE": "-1"}, "PIPELINE_TRAINING_IMAGE_SIZE",
         "image_size must be positive (px), or 0 to follow the training images, got -1"),
        ({"PIPELINE_TRAINING_MIN_CROP_SCALE": "0"}, "PIPELINE_TRAINING_MIN_CROP_SCALE",
         "min_crop_scale is the smallest share of the image a random crop keeps: in (0, 1], 1 for no cropping, "
         "got 0.0"),
        ({"PIPELINE_TRAINING_COLOR_JITTER": "-0.1"}, "PIPELINE_TRAINING_COLOR_JITTER",
         "color_jitter must be 0 (none) or more, got -0.1"),
        ({"PIPELINE_INSTANCES_SPOT": "true", "PIPELINE_INSTANCES_MAX_WAIT_SECONDS": "3600"},
         "PIPELINE_INSTANCES_MAX_WAIT_SECONDS", "max_wait_seconds must be >= max_run_seconds for spot training"),
        ({"PIPELINE_BATCH_MAX_PAYLOAD_MB": "101"}, "PIPELINE_BATCH_MAX_PAYLOAD_MB",
         "max_payload_mb must be between 1 and 100 (SageMaker's MaxPayloadInMB), got 101"),
        ({"PIPELINE_BATCH_MAX_CONCURRENT_TRANSFORMS": "0"}, "PIPELINE_BATCH_MAX_CONCURRENT_TRANSFORMS",
         "max_concurrent_transforms must be at least 1, got 0"),
        ({"PIPELINE_DEPLOYMENT_MODE": "multi"}, "PIPELINE_DEPLOYMENT_MODE",
         "mode must be one of single, multi-model, got 'multi'"),
        ({"PIPELINE_DEPLOYMENT_MIN_INSTANCES": "0"}, "PIPELINE_DEPLOYMENT_MIN_INSTANCES",
         "min_instances must be at least 1, got 0"),
        ({"PIPELINE_DEPLOYMENT_MAX_INSTANCES": "0"}, "PIPELINE_DEPLOYMENT_MAX_INSTANCES",
         "max_instances (0) must be at least min_instances (1)"),
        ({"PIPELINE_DEPLOYMENT_TARGET_INVOCATIONS_PER_INSTANCE": "0"},
         "PIPELINE_DEPLOYMENT_TARGET_INVOCATIONS_PER_INSTANCE", "target_invocations_per_instance must be at least 1"),
        ({"PIPELINE_DEPLOYMENT_SCALE_IN_COOLDOWN_S": "-5"}, "PIPELINE_DEPLOYMENT_SCALE_IN_COOLDOWN_S",
         "scale_in_cooldown_s must be 0 or more seconds, got -5"),
        ({"PIPELINE_LOCAL_ENDPOINT_MEMORY_MB": "0"}, "PIPELINE_LOCAL_ENDPOINT_MEMORY_MB",
         "endpoint_memory_mb must be at least 1 (MB), got 0"),
        ({"PIPELINE_RETRY_MAX_ATTEMPTS": "21"}, "PIPELINE_RETRY_MAX_ATTEMPTS",
         "max_attempts must be between 1 and 20 (SageMaker's limit), got 21"),
        ({"PIPELINE_RETRY_INTERVAL_SECONDS": "0"}, "PIPELINE_RETRY_INTERVAL_SECONDS",
         "interval_seconds must be at least 1, got 0"),
        ({"PIPELINE_RETRY_BACKOFF_RATE": "0.5"}, "PIPELINE_RETRY_BACKOFF_RATE", "backoff_rate must be at least 1"),
        ({"PIPELINE_EXPLAIN_METHOD": "shap"}, "PIPELINE_EXPLAIN_METHOD",
         "method must be one of gradcam, integrated_gradients, occlusion, got 'shap'"),
        ({"PIPELINE_EXPLAIN_SAMPLES_PER_CLASS": "0"}, "PIPELINE_EXPLAIN_SAMPLES_PER_CLASS",
         "samples_per_class must be between 1 and 100, got 0"),
        ({"PIPELINE_EXPLAIN_TOP_LOSS": "101"}, "PIPELINE_EXPLAIN_TOP_LOSS",
         "top_loss must be between 0 and 100, got 101"),
    ],
    ids=["fractions-sum-1", "fractions-over-1", "val-over-1", "no-test-split", "parallel-over-max",
         "parallel-zero", "bad-strategy", "grid-with-numeric-ranges", "bad-early-stopping",
         "hyperband-with-early-stopping", "bad-approval", "threshold-over-1", "negative-image-size",
         "no-crop-area", "negative-jitter", "spot-wait-below-run", "batch-payload-over-100",
         "batch-no-concurrency", "bad-deployment-mode", "no-min-instances", "max-below-min", "no-target",
         "negative-cooldown", "no-endpoint-memory", "retry-attempts-over-20", "retry-no-interval",
         "retry-backoff-below-1", "bad-explain-method", "no-explain-samples", "top-loss-over-100"],
)
def test_inconsistent_values_are_refused_naming_their_origin(environ: dict, where: str, message: str) -> None:
    refused(f"{where}: [", overrides=SAGEMAKER, environ=environ)
    refused(message, overrides=SAGEMAKER, environ=environ)


def test_cross_field_refusal_shows_both_values_and_where_each_came_from(tmp_path: Path) -> None:
    user = write_toml(tmp_path, "[tuning]\nmax_jobs = 1\n")  # max_parallel_jobs stays 2: the file is at fault
    refused(f"max_parallel_jobs = 2 (pipeline.toml); max_jobs = 1 ({user})", user, SAGEMAKER)
    refused("max_wait_seconds = 172800 (pipeline.toml); max_run_seconds = 999999 (PIPELINE_INSTANCES_MAX_RUN_SECONDS)",
            environ={"PIPELINE_INSTANCES_SPOT": "true", "PIPELINE_INSTANCES_MAX_RUN_SECONDS": "999999"})
    refused("val_fraction = 0.95 (PIPELINE_DATA_VAL_FRACTION); test_fraction = 0.1 (pipeline.toml)",
            environ={"PIPELINE_DATA_VAL_FRACTION": "0.95"})


def test_value_from_pipeline_tomls_local_table_is_labelled_with_it() -> None:
    refused("max_parallel_jobs = 2 (pipeline.toml [local.tuning]); max_jobs = 1 (PIPELINE_TUNING_MAX_JOBS)",
            environ={"PIPELINE_TUNING_MAX_JOBS": "1"})


def test_rule_parameters_for_a_rule_not_listed_blame_the_file_that_names_it(tmp_path: Path) -> None:
    user = write_toml(tmp_path, "[debugger.rule_parameters.tensor_variance]\nmax_threshold = 10\n")
    refused(f"{user}: [debugger] rule_parameters: 'tensor_variance' is configured but not in rules (pipeline.toml); "
            "add it to rules or remove it", user)


def test_stop_training_on_a_rule_not_listed_blames_the_env_var() -> None:
    refused("PIPELINE_DEBUGGER_STOP_TRAINING_ON: [debugger] stop_training_on: 'dataloader' is configured but not in "
            "rules", environ={"PIPELINE_DEBUGGER_STOP_TRAINING_ON": "dataloader"})


@pytest.mark.parametrize(
    ("text", "message"),
    [("[debugger]\nrule_parameters = 3\n", "[debugger] rule_parameters must be tables, one per rule"),
     ("[debugger.rule_parameters]\noverfit = 2\n", "[debugger] rule_parameters must be tables, one per rule"),
     ("[debugger.rule_parameters.overfit]\npatience = [1, 2]\n",
      "[debugger] rule_parameters.overfit.patience must be a single value, got [1, 2]")],
    ids=["not-a-table", "rule-not-a-table", "list-value"],
)
def test_malformed_rule_parameters_are_refused(tmp_path: Path, text: str, message: str) -> None:
    user = write_toml(tmp_path, text)
    refused(f"{user}: {message}", user)


@pytest.mark.parametrize(
    ("overrides", "environ"),
    [({"project.target": "cloud"}, {}), ({}, {"PIPELINE_TARGET": "aws"})],
    ids=["override", "env"],
)
def test_unknown_target_lists_the_targets(overrides: dict, environ: dict) -> None:
    refused("choose one of: local, sagemaker", overrides=overrides, environ=environ)


def test_missing_config_file_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    refused(f"config file {missing} does not exist (pass --config with an existing TOML file)", missing)


def test_invalid_toml_says_so_with_the_parser_position(tmp_path: Path) -> None:
    user = write_toml(tmp_path, "[tuning\nmax_jobs = 3\n")
    message = refused(f"config file {user} is not valid TOML:", user)
    assert "line 1" in message


def test_config_pointing_at_pipeline_toml_itself_is_just_the_defaults() -> None:
    assert load_config(DEFAULTS_FILE, environ={}) == load_config(environ={})


def test_a_config_file_beats_the_bundled_local_tables(tmp_path: Path) -> None:
    # pipeline.toml's [local.evaluation] says 0.9; the user's plain [evaluation] must still win on the local target.
    user = write_toml(tmp_path, "[evaluation]\naccuracy_threshold = 0.5\n")
    config = load_config(user, environ={})
    assert config.evaluation.accuracy_threshold == 0.5
    # ...and the user's own [local.*] tables beat the user's plain sections.
    text = "[evaluation]\naccuracy_threshold = 0.5\n[local.evaluation]\naccuracy_threshold = 0.7\n"
    user = write_toml(tmp_path, text)
    assert load_config(user, environ={}).evaluation.accuracy_threshold == 0.7


def test_profiler_stop_training_on_is_refused(tmp_path: Path) -> None:
    user = write_toml(tmp_path, '[profiler]\nstop_training_on = ["CPUBottleneck"]\n')
    refused(f"{user}: [profiler] profiler rules take no actions in SageMaker", user)


def test_debugger_stop_training_on_is_refused_on_sagemaker_and_kept_locally(tmp_path: Path) -> None:
    user = write_toml(tmp_path, '[debugger]\nstop_training_on = ["loss_not_decreasing"]\n')
    assert load_config(user, environ={}).debugger.stop_training_on == ("loss_not_decreasing",)
    text = refused(f"{user}: [debugger] stop_training_on cannot work on the sagemaker target", user,
                   overrides=SAGEMAKER)
    assert "Leave [debugger] stop_training_on empty for sagemaker" in text


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://datasets", "input_data_url 's3://datasets' names a bucket but no key prefix: write it as s3://BUCKET/"),
        ("s3://datasets/", "names a bucket but no key prefix"),
        ("s3://Data_Sets/pets", "'Data_Sets' is not a valid S3 bucket name"),
        ("datasets/pets", "input_data_url 'datasets/pets' is not an S3 URL: write it as s3://BUCKET/KEY/PREFIX"),
    ],
    ids=["bucket-only", "bucket-slash", "bad-bucket", "no-scheme"],
)
def test_input_data_url_that_is_no_s3_prefix_is_refused_on_sagemaker(url: str, message: str) -> None:
    text = refused(message, overrides=SAGEMAKER, environ={"PIPELINE_DATA_INPUT_DATA_URL": url})
    assert text.startswith("PIPELINE_DATA_INPUT_DATA_URL: [data] ")


def test_input_data_url_may_be_a_folder_on_the_local_target_but_an_s3_one_must_have_a_key(tmp_path: Path) -> None:
    folder = str(tmp_path / "photos")
    assert load_config(environ={"PIPELINE_DATA_INPUT_DATA_URL": folder}).data.input_data_url == folder
    refused("names a bucket but no key prefix", environ={"PIPELINE_DATA_INPUT_DATA_URL": "s3://datasets"})


def test_weights_url_is_an_s3_url_on_sagemaker_and_may_be_a_path_here_locally(tmp_path: Path) -> None:
    refused("PIPELINE_TRAINING_WEIGHTS_URL: [training] weights_url '/models/r50.pth' is not an S3 URL",
            overrides=SAGEMAKER, environ={"PIPELINE_TRAINING_WEIGHTS_URL": "/models/r50.pth"})
    missing = tmp_path / "r18.pth"
    refused(f"[training] weights_url '{missing}' is neither an S3 URL nor a file or folder on this machine",
            environ={"PIPELINE_TRAINING_WEIGHTS_URL": str(missing)})
    missing.write_bytes(b"state dict")
    assert load_config(environ={"PIPELINE_TRAINING_WEIGHTS_URL": str(missing)}).training.weights_url == str(missing)
    s3 = "s3://my-models/r50.pth"
    assert load_config(overrides=SAGEMAKER, environ={"PIPELINE_TRAINING_WEIGHTS_URL": s3}).training.weights_url == s3
