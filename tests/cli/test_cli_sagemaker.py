"""`python pipeline.py --target sagemaker ...`: each command against moto, in-process through click's CliRunner, and
once for real in a subprocess against a ThreadedMotoServer.

Every test runs with fake credentials, no PIPELINE_* variables from the outside, and AWS_ENDPOINT_URL pointing at a
closed local port: a command that reaches AWS without moto fails at once instead of going to the network. Tests
that need AWS take the `aws` fixture (moto's mock_aws, bucket created).
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result
from moto import mock_aws

import pipeline
from pipelines.config import DEFAULTS_FILE, REPO_ROOT, load_config
from pipelines.parameters import PARAMETER_SPECS, parameter_declarations
from pipelines.schedules import VALID_FORMS

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
ROLE = f"arn:aws:iam::{ACCOUNT}:role/PipelineExecution"
BUCKET = "cli-test-bucket"
NAME = "image-classifier"
PIPELINE_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{NAME}"
SAGEMAKER = ["--target", "sagemaker", "--role-arn", ROLE, "--bucket", BUCKET]
CLOSED_PORT = "http://127.0.0.1:9"
pytestmark = pytest.mark.filterwarnings("ignore:Running within a PipelineSession")


def isolate(mp: pytest.MonkeyPatch, home: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("PIPELINE_", "AWS_")):
            mp.delenv(name)
    (home / "empty").write_text("")
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", REGION)
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "empty"))
    mp.setenv("AWS_CONFIG_FILE", str(home / "empty"))
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    mp.setenv("AWS_MAX_ATTEMPTS", "1")
    mp.setenv("AWS_ENDPOINT_URL", CLOSED_PORT)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def build_cache() -> dict:
    return {}


@pytest.fixture
def built_once(monkeypatch: pytest.MonkeyPatch, build_cache: dict) -> None:
    """App.build memoised per configuration for commands that only read the definition (definition, validate,
    schedule): a build costs seconds, and upsert (which records uploads) and test_definition.py build for real."""
    from pipelines.cli_app import App

    real_build = App.build

    def build(app: App, code: Any = None):
        if code is not None:
            return real_build(app, code)
        key = repr(app.config)  # a frozen dataclass, but with dict fields: not hashable
        if key not in build_cache:
            build_cache[key] = real_build(app)
        return build_cache[key]

    monkeypatch.setattr(App, "build", build)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield


def run(*args: str, target: list[str] = SAGEMAKER) -> Result:
    return CliRunner().invoke(pipeline.cli, [*target, *args])


def flat(text: str) -> str:
    return " ".join(text.split())


def assert_refused(result: Result, message: str, exit_code: int = 2) -> None:
    assert result.exit_code == exit_code, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # no other exception escaped
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output and "botocore" not in result.stderr


def bucket_objects(bucket: str = BUCKET) -> dict[str, bytes]:
    s3 = boto3.client("s3", region_name=REGION)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def create_pipeline_in_moto() -> None:
    """A pipeline as `upsert` leaves it (its Parameters those the definition declares), without paying for a
    definition build."""
    config = load_config(None, {"project.target": "sagemaker", "project.bucket": BUCKET, "project.role_arn": ROLE})
    definition = {"Version": "2020-12-01", "Steps": [], "Parameters": parameter_declarations(config)}
    boto3.client("sagemaker", region_name=REGION).create_pipeline(
        PipelineName=NAME, PipelineDefinition=json.dumps(definition), RoleArn=ROLE)


def code_uris(value: Any) -> set[str]:
    """The S3 objects a definition names: code the SDK uploaded (plain or JSON-quoted strings)."""
    if isinstance(value, dict):
        return set().union(*(code_uris(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(code_uris(v) for v in value))
    if isinstance(value, str):
        text = json.loads(value) if value.startswith('"') else value
        if isinstance(text, str) and text.startswith(f"s3://{BUCKET}/") and text.endswith((".py", ".tar.gz")):
            return {text}
    return set()


# ---------------------------------------------------------------------------------------------- offline commands
def test_definition_prints_the_definition_json(aws: None) -> None:
    result = run("definition")
    assert result.exit_code == 0, result.output
    definition = json.loads(result.stdout)
    assert [s["Name"] for s in definition["Steps"]] == ["PrepareData", "TuneHyperparameters", "TrainModel",
                                                        "EvaluateModel", "ExplainModel", "CheckAccuracy"]
    assert definition["Steps"][0]["Arguments"]["RoleArn"] == ROLE
    assert bucket_objects() == {}  # offline: the SDK's code uploads were discarded


def test_definition_with_o_writes_the_file_and_says_so(aws: None, built_once: None, tmp_path: Path) -> None:
    out = tmp_path / "definition.json"
    result = run("definition", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"definition written to {out}" in flat(result.stderr)
    assert len(json.loads(out.read_text())["Parameters"]) == len(PARAMETER_SPECS)


def test_validate_passes_and_exits_0(aws: None, built_once: None) -> None:
    result = run("validate")
    assert result.exit_code == 0, result.output
    assert flat(result.stdout) == f"valid: {NAME}, 12 steps, {len(PARAMETER_SPECS)} parameters"


def test_validate_passes_in_multi_model_mode_with_the_publish_step_and_a_multi_model_model(aws: None, monkeypatch,
                                                                                         built_once: None) -> None:
    monkeypatch.setenv("PIPELINE_DEPLOYMENT_MODE", "multi-model")
    result = run("validate")
    assert result.exit_code == 0, result.output
    assert flat(result.stdout) == f"valid: {NAME}, 14 steps, {len(PARAMETER_SPECS)} parameters"  # + PublishModel,
    definition = json.loads(run("definition").stdout)                                              # MultiModel
    gate = definition["Steps"][-1]["Arguments"]
    container = next(s for s in gate["IfSteps"] if s["Name"] == "MultiModel-CreateModel")["Arguments"]
    assert (container["PrimaryContainer"]["Mode"], container["PrimaryContainer"]["ModelDataUrl"]) == (
        "MultiModel", f"s3://{BUCKET}/{NAME}/multi-model/")
    config = next(s for s in gate["IfSteps"] if s["Name"] == "EndpointConfig")["Arguments"]
    assert config["ProductionVariants"][0]["ModelName"] == {"Get": "Steps.MultiModel-CreateModel.ModelName"}


def test_validate_of_an_invalid_definition_lists_the_problem_and_exits_1(aws: None, monkeypatch) -> None:
    monkeypatch.setenv("PIPELINE_ENDPOINT_NAME", "e" * 51)  # EndpointName-<execution id> would pass 63 characters
    result = run("validate")
    assert result.exit_code == 1
    assert "the definition has 1 problem(s):" in result.stderr
    assert f"- parameter EndpointName: '{'e' * 51}' must be letters, digits and hyphens, at most 50 characters" \
        in result.stderr


# ---------------------------------------------------------------------------------------------- upsert
@dataclass
class Upserts:
    first: Result
    second: Result
    stored_first: dict[str, Any]
    stored_second: dict[str, Any]
    objects_first: dict[str, bytes]
    objects_second: dict[str, bytes]


@pytest.fixture(scope="module")
def upserted_twice(tmp_path_factory: pytest.TempPathFactory) -> Upserts:
    """`upsert`, then `upsert` again with PIPELINE_TUNING_MAX_JOBS=7; what moto holds after each."""
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, tmp_path_factory.mktemp("aws"))
        mp.delenv("AWS_ENDPOINT_URL")
        with mock_aws():
            boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
            sagemaker = boto3.client("sagemaker", region_name=REGION)
            first = run("upsert")
            stored_first = sagemaker.describe_pipeline(PipelineName=NAME)
            objects_first = bucket_objects()
            mp.setenv("PIPELINE_TUNING_MAX_JOBS", "7")
            second = run("upsert")
            stored_second = sagemaker.describe_pipeline(PipelineName=NAME)
            return Upserts(first, second, stored_first, stored_second, objects_first, bucket_objects())


def stored_definition(described: dict[str, Any]) -> dict[str, Any]:
    return json.loads(described["PipelineDefinition"])


def max_tuning_jobs_default(described: dict[str, Any]) -> int:
    return next(p["DefaultValue"] for p in stored_definition(described)["Parameters"] if p["Name"] == "MaxTuningJobs")


def test_upsert_creates_then_updates_the_same_pipeline(upserted_twice: Upserts) -> None:
    assert upserted_twice.first.exit_code == 0, upserted_twice.first.output
    assert upserted_twice.second.exit_code == 0, upserted_twice.second.output
    assert upserted_twice.first.stdout == upserted_twice.second.stdout == f"{PIPELINE_ARN}\n"
    assert max_tuning_jobs_default(upserted_twice.stored_first) == 4
    assert max_tuning_jobs_default(upserted_twice.stored_second) == 7  # the update reached the service
    assert upserted_twice.stored_second["RoleArn"] == ROLE
    assert str(DEFAULTS_FILE) in upserted_twice.stored_second["PipelineDescription"]


def test_upsert_uploads_every_code_object_the_definition_names(upserted_twice: Upserts) -> None:
    for described, objects in ((upserted_twice.stored_first, upserted_twice.objects_first),
                               (upserted_twice.stored_second, upserted_twice.objects_second)):
        uris = code_uris(stored_definition(described))
        assert {uri.rsplit("/", 1)[1] for uri in uris} == {"preprocess.py", "safe_extract.py", "rgb_conversion.py",
                                                           "evaluate.py", "model_loading.py", "explain.py",
                                                           "bias_report.py", "overlays.py", "sourcedir.tar.gz"}
        keys = {uri.removeprefix(f"s3://{BUCKET}/") for uri in uris}
        assert keys <= set(objects), keys - set(objects)
    objects = upserted_twice.objects_first
    preprocess = next(k for k in objects if k.endswith("/preprocess.py"))
    assert objects[preprocess] == (REPO_ROOT / "scripts" / "preprocess.py").read_bytes()
    sourcedir = next(k for k in objects if k.endswith("sourcedir.tar.gz") and "/code/" in k)
    with tarfile.open(fileobj=io.BytesIO(objects[sourcedir])) as tar:
        assert {"train.py", "inference.py"} <= set(tar.getnames())


def test_an_unchanged_re_upsert_keeps_every_cacheable_step_identical(upserted_twice: Upserts) -> None:
    """Across processes (another PYTHONHASHSEED) and timestamps: TrainModel's Debugger collections are sorted and
    the tuning step names TrainModel's content-addressed code and its base job name (pipelines.cache_stability)."""
    first = {s["Name"]: s for s in stored_definition(upserted_twice.stored_first)["Steps"]}
    second = {s["Name"]: s for s in stored_definition(upserted_twice.stored_second)["Steps"]}
    for name in ("PrepareData", "EvaluateModel", "ExplainModel", "TrainModel"):
        assert first[name]["Arguments"] == second[name]["Arguments"], name
    assert first["TuneHyperparameters"]["Arguments"]["TrainingJobDefinition"] == \
        second["TuneHyperparameters"]["Arguments"]["TrainingJobDefinition"]
    static = first["TuneHyperparameters"]["Arguments"]["TrainingJobDefinition"]["StaticHyperParameters"]
    assert static["sagemaker_job_name"] == '"image-classifier-tune"'
    assert static["sagemaker_submit_directory"] == first["TrainModel"]["Arguments"]["HyperParameters"][
        "sagemaker_submit_directory"]
    sourcedirs = [key for key in upserted_twice.objects_second if key.endswith("sourcedir.tar.gz")]
    assert len(sourcedirs) == 1 and "/code/" in sourcedirs[0]  # no timestamped copy of the scripts uploaded


def test_upsert_of_an_invalid_definition_refuses_and_uploads_nothing(aws: None, monkeypatch) -> None:
    monkeypatch.setenv("PIPELINE_ENDPOINT_NAME", "endpoint-" + "x" * 45)
    result = run("upsert")
    assert result.exit_code == 1
    assert "the definition has 1 problem(s):" in result.stderr
    assert "- parameter EndpointName: 'endpoint-xxx" in result.stderr
    assert "nothing was uploaded or changed" in result.stderr
    assert result.stdout == ""
    assert bucket_objects() == {}
    assert boto3.client("sagemaker", region_name=REGION).list_pipelines()["PipelineSummaries"] == []


# ---------------------------------------------------------------------------------------------- executions
def test_start_with_param_json_prints_arn_status_and_steps(aws: None) -> None:
    create_pipeline_in_moto()
    result = run("start", "--param", "MaxTuningJobs=3", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary) == {"arn", "status", "failure_reason", "started", "ended", "parameters", "steps"}
    assert summary["arn"].startswith(f"{PIPELINE_ARN}/execution/")
    assert summary["status"] == "Succeeded"  # moto finishes an execution at once
    assert summary["parameters"] == {"MaxTuningJobs": "3"}
    assert summary["steps"] is None  # moto has no ListPipelineExecutionSteps
    sent = boto3.client("sagemaker", region_name=REGION).list_pipeline_parameters_for_execution(
        PipelineExecutionArn=summary["arn"])["PipelineParameters"]
    assert sent == [{"Name": "MaxTuningJobs", "Value": "3"}]


def test_status_and_executions_show_the_started_execution(aws: None) -> None:
    create_pipeline_in_moto()
    arn = boto3.client("sagemaker", region_name=REGION).start_pipeline_execution(PipelineName=NAME)[
        "PipelineExecutionArn"]
    latest = run("status", "--json")
    assert latest.exit_code == 0, latest.output
    assert (json.loads(latest.stdout)["arn"], json.loads(latest.stdout)["status"]) == (arn, "Succeeded")
    table = run("status", arn)
    assert table.exit_code == 0 and "Succeeded" in table.stdout
    listed = run("executions", "--json")
    assert listed.exit_code == 0, listed.output
    assert [(row["arn"], row["status"]) for row in json.loads(listed.stdout)] == [(arn, "Succeeded")]


def test_status_before_any_start_says_to_start_first(aws: None) -> None:
    create_pipeline_in_moto()
    assert_refused(run("status"), f"pipeline {NAME} has no executions yet: run `start` first")


def test_start_of_a_pipeline_never_upserted_is_a_clear_error(aws: None) -> None:
    assert_refused(run("start"), f"start of pipeline {NAME}: ValidationException:")


# ---------------------------------------------------------------------------------------------- refusals
ALL_PARAMETERS = ", ".join(spec.name for spec in PARAMETER_SPECS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["start", "--param", "foo"], "--param 'foo' must look like NAME=VALUE, e.g. --param MaxTuningJobs=4"),
        (["start", "--param", "=3"], "--param '=3' must look like NAME=VALUE"),
        (["schedule", "--cron", "0 3 * * *"],
         f"bad --cron '0 3 * * *': a cron expression has 6 fields, '0 3 * * *' has 5. Valid forms: {VALID_FORMS}"),
        (["schedule", "--cron", "0 3 * * * *"],
         f"bad --cron '0 3 * * * *': exactly one of day-of-month and day-of-week must be '?'. Valid forms: "
         f"{VALID_FORMS}"),
        (["schedule", "--rate", "3 weeks"],
         f"bad --rate: rate unit 'weeks' is not one of minute, minutes, hour, hours, day, days. Valid forms: "
         f"{VALID_FORMS}"),
        (["schedule", "--rate", "1 hours"], "bad --rate: say '1 hour' for one"),
        (["schedule"], f"give exactly one of --cron, --rate, --describe NAME, --delete NAME; the forms: {VALID_FORMS}"),
        (["schedule", "--cron", "0 3 * * ? *", "--rate", "1 day"], "give exactly one of --cron, --rate"),
    ],
    ids=["param-without-equals", "param-without-name", "cron-5-fields", "cron-no-question-mark", "rate-weeks",
         "rate-1-hours", "schedule-nothing", "schedule-cron-and-rate"],
)
def test_user_mistake_is_refused_with_exit_2_before_reaching_aws(args: list[str], message: str) -> None:
    assert_refused(run(*args), message)


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("MaxTuningJob=3", f"unknown parameter 'MaxTuningJob'; the pipeline's parameters are: {ALL_PARAMETERS}"),
        ("MaxTuningJobs=x", "parameter MaxTuningJobs takes a whole number, got 'x'"),
        ("AccuracyThreshold=high", "parameter AccuracyThreshold takes a number, got 'high'"),
        ("ModelApprovalStatus=Maybe",
         "parameter ModelApprovalStatus takes one of PendingManualApproval, Approved, Rejected, got 'Maybe'"),
    ],
    ids=["unknown-param", "param-not-integer", "param-not-number", "param-not-in-enum"],
)
def test_bad_param_is_refused_against_the_stored_definition_and_nothing_starts(aws: None, param: str,
                                                                              message: str) -> None:
    create_pipeline_in_moto()
    assert_refused(run("start", "--param", param), message)
    executions = boto3.client("sagemaker", region_name=REGION).list_pipeline_executions(PipelineName=NAME)
    assert executions["PipelineExecutionSummaries"] == []


def test_schedule_on_the_local_target_is_refused() -> None:
    result = run("schedule", "--cron", "0 3 * * ? *", target=["--target", "local"])
    assert_refused(result, "schedules run on AWS (EventBridge Scheduler): use --target sagemaker")


@pytest.mark.parametrize(
    ("target", "command", "message"),
    [
        (["--target", "sagemaker", "--bucket", BUCKET], "upsert",
         f"the sagemaker target needs role_arn (role_arn: pass --role-arn, set PIPELINE_ROLE_ARN, or set role_arn "
         f"in [project] of {DEFAULTS_FILE})"),
        (["--target", "sagemaker", "--role-arn", ROLE], "definition",
         f"the sagemaker target needs bucket (bucket: pass --bucket, set PIPELINE_BUCKET, or set bucket in "
         f"[project] of {DEFAULTS_FILE})"),
        (["--target", "sagemaker"], "validate", "the sagemaker target needs role_arn and bucket (role_arn: pass "
                                                "--role-arn, set PIPELINE_ROLE_ARN"),
    ],
    ids=["upsert-without-role", "definition-without-bucket", "validate-without-either"],
)
def test_missing_role_or_bucket_says_every_way_to_give_it(target: list[str], command: str, message: str) -> None:
    assert_refused(run(command, target=target), message)


def test_missing_role_names_the_users_config_file(tmp_path: Path) -> None:
    config = tmp_path / "team.toml"
    config.write_text(f'[project]\nbucket = "{BUCKET}"\n')
    result = run("upsert", target=["--target", "sagemaker", "--config", str(config)])
    assert_refused(result, f"or set role_arn in [project] of {config})")


def test_upload_data_without_bucket_is_refused(tmp_path: Path) -> None:
    result = run("upload-data", str(tmp_path), target=["--target", "sagemaker", "--role-arn", ROLE])
    assert_refused(result, "the sagemaker target needs bucket (bucket: pass --bucket")


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"PIPELINE_TUNING_MAX_JOBS": "many"}, ["validate"],
         "PIPELINE_TUNING_MAX_JOBS: [tuning] max_jobs must be a whole number, got 'many'"),
        ({"PIPELINE_DEBUGGER_RULES": "loss_not_decresing"}, ["definition"],
         "[debugger] rules: unknown rule 'loss_not_decresing'; available: all_zero,"),
        ({}, ["--config", "missing.toml", "validate"], "config file missing.toml does not exist"),
    ],
    ids=["env-wrong-type", "unknown-debugger-rule", "missing-config-file"],
)
def test_configuration_mistake_is_refused_with_exit_2(monkeypatch, env: dict, args: list[str], message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert_refused(run(*args), message)


def test_missing_aws_credentials_is_one_clear_sentence(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = run("start")
    assert_refused(result, f"start of pipeline {NAME}: no AWS credentials found. Configure them (aws configure, "
                           "AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or use --target local")
    data = tmp_path / "data.zip"
    data.write_bytes(b"PK")
    assert_refused(run("upload-data", str(data)), f"upload to s3://{BUCKET}/{NAME}/input-data: no AWS credentials")


# ---------------------------------------------------------------------------------------------- schedule
def test_schedule_put_describe_delete(aws: None, built_once: None) -> None:
    create_pipeline_in_moto()
    scheduler = boto3.client("scheduler", region_name=REGION)
    put = run("schedule", "--cron", "0 3 * * ? *")
    assert put.exit_code == 0, put.output
    schedule_arn = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{NAME}-schedule"
    assert put.stdout == f"schedule {NAME}-schedule (enabled): {schedule_arn}\n"
    stored = scheduler.get_schedule(Name=f"{NAME}-schedule")
    assert (stored["ScheduleExpression"], stored["State"]) == ("cron(0 3 * * ? *)", "ENABLED")
    assert (stored["Target"]["Arn"], stored["Target"]["RoleArn"]) == (PIPELINE_ARN, ROLE)

    rate = run("schedule", "--rate", "12 hours", "--name", "twice-a-day", "--disabled")
    assert rate.exit_code == 0, rate.output
    assert rate.stdout.startswith("schedule twice-a-day (disabled): ")
    stored = scheduler.get_schedule(Name="twice-a-day")
    assert (stored["ScheduleExpression"], stored["State"]) == ("rate(12 hours)", "DISABLED")

    described = run("schedule", "--describe", f"{NAME}-schedule")
    assert described.exit_code == 0, described.output
    assert json.loads(described.stdout)["Schedule_Expression"] == "cron(0 3 * * ? *)"

    deleted = run("schedule", "--delete", f"{NAME}-schedule")
    assert deleted.exit_code == 0, deleted.output
    assert f"deleted schedule {NAME}-schedule" in deleted.stdout
    names = [s["Name"] for s in scheduler.list_schedules()["Schedules"]]
    assert names == ["twice-a-day"]


def test_schedule_before_upsert_is_a_clear_error(aws: None, built_once: None) -> None:
    result = run("schedule", "--cron", "0 3 * * ? *")
    assert result.exit_code == 2, result.output
    assert "schedule:" in result.stderr and NAME in result.stderr
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------- data and models
def test_upload_data_of_a_folder_keeps_its_paths_under_the_default_prefix(aws: None, tmp_path: Path) -> None:
    data = tmp_path / "dataset"
    for relative in ("cat/1.png", "cat/2.png", "dog/sub/3.jpg"):
        (data / relative).parent.mkdir(parents=True, exist_ok=True)
        (data / relative).write_bytes(relative.encode())
    result = run("upload-data", str(data))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"s3://{BUCKET}/{NAME}/input-data\n"  # InputDataUrl's default
    assert "uploaded 3 file(s)" in result.stderr
    assert bucket_objects() == {f"{NAME}/input-data/{r}": r.encode() for r in ("cat/1.png", "cat/2.png",
                                                                                 "dog/sub/3.jpg")}


def test_upload_data_of_an_archive_puts_it_under_the_prefix(aws: None, tmp_path: Path) -> None:
    archive = tmp_path / "digits.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        source = tmp_path / "one.png"
        source.write_bytes(b"png")
        tar.add(source, arcname="one/one.png")
    result = run("upload-data", str(archive), "--to", f"s3://{BUCKET}/datasets/digits/")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"s3://{BUCKET}/datasets/digits\n"
    assert bucket_objects() == {"datasets/digits/digits.tar.gz": archive.read_bytes()}
    # Not where the pipeline reads: the user is told how to point it there.
    assert f"start it with --param InputDataUrl=s3://{BUCKET}/datasets/digits" in flat(result.stderr)


def test_upload_data_goes_to_the_configured_input_data_url_in_its_own_bucket(
        aws: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="datasets")
    monkeypatch.setenv("PIPELINE_DATA_INPUT_DATA_URL", "s3://datasets/pets/v1")
    data = tmp_path / "pets"
    (data / "beagle").mkdir(parents=True)
    (data / "beagle" / "1.jpg").write_bytes(b"jpg")
    result = run("upload-data", str(data))
    assert result.exit_code == 0, result.output
    assert result.stdout == "s3://datasets/pets/v1\n"
    assert "uploaded 1 file(s) to s3://datasets/pets/v1" in result.stderr
    assert "--param InputDataUrl" not in result.stderr  # it is where the pipeline reads
    assert bucket_objects("datasets") == {"pets/v1/beagle/1.jpg": b"jpg"}
    assert bucket_objects() == {}  # nothing in the project's bucket


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "s3://datasets"], "--to 's3://datasets' names a bucket but no key prefix: write it as s3://BUCKET/"),
        (["--to", "datasets/pets"], "--to 'datasets/pets' is not an S3 URL"),
    ],
    ids=["bucket-without-key", "not-an-s3-url"],
)
def test_upload_data_to_a_url_that_is_no_s3_prefix_is_refused(aws: None, tmp_path: Path, args: list[str],
                                                               message: str) -> None:
    (tmp_path / "a.jpg").write_bytes(b"jpg")
    assert_refused(run("upload-data", str(tmp_path), *args), message)
    assert bucket_objects() == {}


def test_upload_data_of_an_empty_folder_is_refused(aws: None, tmp_path: Path) -> None:
    (empty := tmp_path / "no-images").mkdir()
    assert_refused(run("upload-data", str(empty)), f"{empty} holds no files: nothing to upload")


def register(sagemaker: Any, metrics: dict[str, Any] | None, bias: dict[str, Any] | None = None) -> str:
    model_metrics: dict[str, Any] = {}
    version = len(sagemaker.list_model_packages(ModelPackageGroupName=NAME)["ModelPackageSummaryList"]) + 1
    s3 = boto3.client("s3", region_name=REGION)
    for section, kind, document in (("ModelQuality", "Statistics", metrics), ("Bias", "Report", bias)):
        if document is not None:
            key = f"reports/{version}/{section}.json"
            s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(document).encode())
            model_metrics[section] = {kind: {"ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{key}"}}
    return sagemaker.create_model_package(
        ModelPackageGroupName=NAME, ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={"Containers": [{"Image": "image"}], "SupportedContentTypes": ["image/png"],
                                "SupportedResponseMIMETypes": ["application/json"]},
        **({"ModelMetrics": model_metrics} if model_metrics else {}))["ModelPackageArn"]


def test_models_shows_the_test_accuracy_from_the_packages_model_metrics(aws: None) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_model_package_group(ModelPackageGroupName=NAME)
    measured = register(sagemaker, {"multiclass_classification_metrics": {"accuracy": {"value": 0.9375}}})
    unmeasured = register(sagemaker, None)
    listed = run("models", "--json")
    assert listed.exit_code == 0, listed.output
    accuracy = {row["arn"]: row["accuracy"] for row in json.loads(listed.stdout)}
    assert accuracy == {measured: 0.9375, unmeasured: None}
    table = run("models")
    assert "0.9375" in table.stdout


def test_models_shows_the_bias_verdict_from_the_packages_bias_report(aws: None) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_model_package_group(ModelPackageGroupName=NAME)
    verdict = "class 6-six has 1.1% of the training images (an even split gives 10.0%)"
    explained = register(sagemaker, {"multiclass_classification_metrics": {"accuracy": {"value": 0.9}}},
                         {"version": "1.0", "summary": verdict})
    unexplained = register(sagemaker, {"multiclass_classification_metrics": {"accuracy": {"value": 0.8}}})
    listed = run("models", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {row["arn"]: (row["accuracy"], row["bias"]) for row in json.loads(listed.stdout)}
    assert rows == {explained: (0.9, verdict), unexplained: (0.8, None)}
    table = run("models").stdout
    assert "6-six" in table


def test_endpoints_shows_the_invocation_url_and_the_arn_apart(aws: None) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "image"})
    sagemaker.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[{
        "VariantName": "v", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    arn = sagemaker.create_endpoint(EndpointName=NAME, EndpointConfigName="c")["EndpointArn"]
    listed = run("endpoints", "--json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert row["arn"] == arn
    assert row["url"] == f"https://runtime.sagemaker.{REGION}.amazonaws.com/endpoints/{NAME}/invocations"


def test_approve_changes_the_model_packages_status(aws: None) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_model_package_group(ModelPackageGroupName=NAME)
    package = sagemaker.create_model_package(
        ModelPackageGroupName=NAME, ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={"Containers": [{"Image": "image"}], "SupportedContentTypes": ["image/png"],
                                "SupportedResponseMIMETypes": ["application/json"]},
    )["ModelPackageArn"]
    approved = run("approve", package)
    assert approved.exit_code == 0, approved.output
    assert approved.stdout == f"{package}: Approved\n"
    assert sagemaker.describe_model_package(ModelPackageName=package)["ModelApprovalStatus"] == "Approved"
    rejected = run("approve", package, "--status", "Rejected")
    assert rejected.exit_code == 0, rejected.output
    assert sagemaker.describe_model_package(ModelPackageName=package)["ModelApprovalStatus"] == "Rejected"


def test_approve_of_a_missing_package_is_a_clear_error(aws: None) -> None:
    missing = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{NAME}/9"
    assert_refused(run("approve", missing), f"approval of {missing}: ValidationException:")


def test_approve_refuses_an_unknown_status() -> None:
    result = run("approve", "arn:x", "--status", "Maybe")
    assert result.exit_code == 2
    assert "'Maybe' is not one of 'Approved', 'Rejected', 'PendingManualApproval'" in flat(result.stderr)


# ---------------------------------------------------------------------------------------------- the real CLI
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_real_cli_upserts_and_starts_against_a_moto_server(tmp_path: Path) -> None:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIPELINE_"))}
        (tmp_path / "empty").write_text("")
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION,
                   AWS_ENDPOINT_URL=endpoint, AWS_EC2_METADATA_DISABLED="true", AWS_MAX_ATTEMPTS="1",
                   AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "empty"), AWS_CONFIG_FILE=str(tmp_path / "empty"))
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        s3.create_bucket(Bucket=BUCKET)
        command = [sys.executable, "pipeline.py", "--target", "sagemaker", "--role-arn", ROLE, "--bucket", BUCKET]
        upsert = subprocess.run([*command, "upsert"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                timeout=300)
        assert upsert.returncode == 0, upsert.stderr
        assert upsert.stdout.strip() == PIPELINE_ARN
        assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] >= 4  # the code went to the server's S3
        start = subprocess.run([*command, "start", "--json"], cwd=REPO_ROOT, env=env, capture_output=True,
                               text=True, timeout=300)
        assert start.returncode == 0, start.stderr
        summary = json.loads(start.stdout)
        assert summary["arn"].startswith(f"{PIPELINE_ARN}/execution/")
        assert summary["status"] == "Succeeded"
    finally:
        server.stop()
