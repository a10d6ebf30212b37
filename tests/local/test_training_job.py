"""Training jobs: the toolkit's contract around a fake script, then the pipeline's real TrainModel request."""

from __future__ import annotations

import json
import shutil
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from pipelines.local.container import pack_tar_gz
from pipelines.local.step_api import StepFailed, StepRun
from pipelines.local.training import TrainingJobHandler, run_training_job
from pipelines.local.training_contract import decode_hyperparameters, to_cmd_args
from pipelines.local.workspace import Workspace
from steps.estimator import METRIC_DEFINITIONS

FAKE_TRAIN = r'''
import json, os, pathlib, sys, time
base = pathlib.Path(os.environ["SAGEMAKER_BASE_DIR"])
hps = json.loads(os.environ["SM_HPS"])
seen = {"argv": sys.argv[1:], "cwd": os.getcwd(),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("SM_", "SMDEBUG_", "SAGEMAKER_", "OMP_"))},
        "files": sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file() and "code" not in p.parts)}
out = pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"])
(out / "seen.json").write_text(json.dumps(seen))
checkpoint = base / "checkpoints" / "count"
runs = int(checkpoint.read_text()) + 1 if checkpoint.exists() else 1
checkpoint.parent.mkdir(parents=True, exist_ok=True)
checkpoint.write_text(str(runs))
hook = json.loads((base / "input/config/debughookconfig.json").read_text())
pathlib.Path(hook["LocalPath"], "events").mkdir(parents=True, exist_ok=True)
pathlib.Path(hook["LocalPath"], "events", "step0.tfevents").write_text("tensors")
for epoch in (1, 2):
    print(f"epoch={epoch}/2 train_loss={1 / epoch:.4f} train_accuracy=0.{epoch}000 "
          f"validation_loss={2 / epoch:.4f} validation_accuracy=0.{epoch + 4}000 lr=0.001 epoch_seconds=0.1")
if hps["mode"] == "fail":
    (base / "output" / "failure").write_text("lr must be positive")
    print("Traceback: something broke", file=sys.stderr)
    sys.exit(3)
if hps["mode"] == "sleep":
    time.sleep(60)
model = pathlib.Path(os.environ["SM_MODEL_DIR"])
(model / "code").mkdir(parents=True)
(model / "model.pth").write_bytes(b"weights")
(model / "code" / "inference.py").write_text("def model_fn(model_dir): ...\n")
'''


# ---------------------------------------------------------------------------------------------- hyperparameters
def test_hyperparameters_are_decoded_like_the_training_toolkit() -> None:
    raw = {"optimizer": '"adam"', "epochs": "42", "lr": "0.001", "arch": "resnet18", "pretrained": '"false"',
           "hflip": "true", "batch_size": '"\\"64\\""', "sagemaker_program": '"train.py"',
           "sagemaker_container_log_level": "20"}
    user, framework = decode_hyperparameters(raw)
    assert user == {"optimizer": "adam", "epochs": 42, "lr": 0.001, "arch": "resnet18", "pretrained": "false",
                    "hflip": True, "batch_size": '"64"'}
    assert framework == {"sagemaker_program": "train.py", "sagemaker_container_log_level": 20}
    assert to_cmd_args(user) == ["--arch", "resnet18", "--batch_size", '"64"', "--epochs", "42", "--hflip", "True",
                                 "--lr", "0.001", "--optimizer", "adam", "--pretrained", "false"]
    assert to_cmd_args({"x": 1, "m": {"b": 2, "a": 1}}) == ["-m", "a=1,b=2", "-x", "1"]


# ---------------------------------------------------------------------------------------------- a fake script
def workspace_with_script(tmp_path: Path, script: str) -> Workspace:
    """A workspace holding `script` as the job's train.py (sourcedir.tar.gz) and a one-image train/validation."""
    ws = Workspace.open(tmp_path / "ws")
    code = tmp_path / "src"
    code.mkdir()
    (code / "train.py").write_text(script)
    pack_tar_gz(code, ws.path_for("s3://bucket/code/sourcedir.tar.gz"))
    for channel in ("train", "validation"):
        folder = ws.path_for(f"s3://bucket/data/{channel}/cat")
        folder.mkdir(parents=True)
        (folder / "1.png").write_bytes(b"png")
    return ws


@pytest.fixture()
def workspace(tmp_path: Path) -> Workspace:
    return workspace_with_script(tmp_path, FAKE_TRAIN)


def fake_request(mode: str = "ok", max_runtime: int = 60) -> dict[str, Any]:
    channels = [{"ChannelName": name, "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": f"s3://bucket/data/{name}", "S3DataDistributionType": "FullyReplicated"}}}
        for name in ("train", "validation")]
    return {
        "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "pytorch-training:2.6.0-cpu-py312",
                                   "MetricDefinitions": [dict(m) for m in METRIC_DEFINITIONS]},
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/models/"},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "RoleArn": "arn:aws:iam::000000000000:role/LocalPipelineExecution",
        "InputDataConfig": channels,
        "HyperParameters": {"optimizer": '"adam"', "epochs": "2", "lr": "0.001", "mode": json.dumps(mode),
                            "sagemaker_program": '"train.py"',
                            "sagemaker_submit_directory": '"s3://bucket/code/sourcedir.tar.gz"',
                            "sagemaker_container_log_level": "20", "sagemaker_region": '"us-east-1"'},
        "CheckpointConfig": {"S3Uri": "s3://bucket/checkpoints/train"},
        "DebugHookConfig": {"S3OutputPath": "s3://bucket/debug-output",
                            "CollectionConfigurations": [{"CollectionName": "losses",
                                                          "CollectionParameters": {"save_interval": "500"}}]},
        "Tags": [{"Key": "team", "Value": "ml"}],
    }


def step_run(ws: Workspace, request: dict[str, Any], lines: list[str] | None = None, cpu: int = 1) -> StepRun:
    return StepRun(execution_id="exec1", pipeline_name="image-classifier", step_name="TrainModel",
                   step_type="Training", arguments=request, workspace=ws, cpu_budget=cpu,
                   log=(lines.append if lines is not None else lambda line: None))


def members(archive: Path) -> set[str]:
    with tarfile.open(archive) as tar:
        return {m.name for m in tar.getmembers() if m.isfile()}


def test_a_training_job_gets_the_contract_and_its_results_land_where_sagemaker_puts_them(workspace) -> None:
    lines: list[str] = []
    props = TrainingJobHandler(workspace, region="eu-west-1").run(step_run(workspace, fake_request(), lines))
    name = props["TrainingJobName"]
    assert name.startswith("trainmodel-exec1-") and len(name) <= 63
    assert props["TrainingJobArn"] == f"arn:aws:sagemaker:eu-west-1:000000000000:training-job/{name}"
    assert props["TrainingJobStatus"] == props["SecondaryStatus"] == "Completed"
    model_uri = f"s3://bucket/models/{name}/output/model.tar.gz"
    assert props["ModelArtifacts"] == {"S3ModelArtifacts": model_uri}
    assert members(workspace.path_for(model_uri)) == {"model.pth", "code/inference.py"}
    output = workspace.path_for(f"s3://bucket/models/{name}/output/output.tar.gz")
    assert members(output) == {"seen.json"}
    final = {m["MetricName"]: m["Value"] for m in props["FinalMetricDataList"]}
    assert final == {"train:loss": 0.5, "train:accuracy": 0.2, "validation:loss": 1.0, "validation:accuracy": 0.6}
    assert props["HyperParameters"] == fake_request()["HyperParameters"] and "Tags" not in props
    assert props["DebugHookConfig"] == fake_request()["DebugHookConfig"]
    assert "DebugRuleEvaluationStatuses" not in props
    assert [t["Status"] for t in props["SecondaryStatusTransitions"]] == [
        "Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert any(line.startswith("epoch=2/2") for line in lines)
    job_dir = workspace.job_dir("exec1", "TrainModel", name)
    history = json.loads((job_dir / "metrics.json").read_text())["Metrics"]
    assert [h["Value"] for h in history["validation:accuracy"]] == [0.5, 0.6]
    assert "epoch=1/2" in (job_dir / "job.log").read_text()
    # debug tensors and checkpoints went to S3 where SageMaker puts them
    debug = workspace.path_for(f"s3://bucket/debug-output/{name}/debug-output/events/step0.tfevents")
    assert debug.read_text() == "tensors"
    assert workspace.path_for("s3://bucket/checkpoints/train/count").read_text() == "1"
    check_what_the_script_saw(json.loads((job_dir / "opt_ml/output/data/seen.json").read_text()), job_dir, name)


def check_what_the_script_saw(seen: dict[str, Any], job_dir: Path, name: str) -> None:
    base = job_dir / "opt_ml"
    assert seen["argv"] == ["--epochs", "2", "--lr", "0.001", "--mode", "ok", "--optimizer", "adam"]
    assert seen["cwd"] == str(base / "code")
    assert {"input/config/hyperparameters.json", "input/config/inputdataconfig.json",
            "input/config/resourceconfig.json", "input/config/debughookconfig.json",
            "input/data/train/cat/1.png", "input/data/validation/cat/1.png"} <= set(seen["files"])
    env = seen["env"]
    assert env["SAGEMAKER_BASE_DIR"] == str(base) and env["OMP_NUM_THREADS"] == "1"
    assert env["SM_MODEL_DIR"] == str(base / "model") and env["SM_OUTPUT_DATA_DIR"] == str(base / "output/data")
    assert env["SM_CHANNEL_TRAIN"] == str(base / "input/data/train")
    assert json.loads(env["SM_CHANNELS"]) == ["train", "validation"]
    assert json.loads(env["SM_HPS"]) == {"optimizer": "adam", "epochs": 2, "lr": 0.001, "mode": "ok"}
    assert env["SM_HP_OPTIMIZER"] == "adam" and env["SM_HP_EPOCHS"] == "2"
    assert env["SM_NUM_CPUS"] == "1" and env["SM_NUM_GPUS"].isdigit() and env["SM_CURRENT_HOST"] == "algo-1"
    assert json.loads(env["SM_HOSTS"]) == ["algo-1"] and env["SM_USER_ENTRY_POINT"] == "train.py"
    assert env["SM_MODULE_DIR"] == "s3://bucket/code/sourcedir.tar.gz" and env["SM_LOG_LEVEL"] == "20"
    assert env["SM_INPUT_CONFIG_DIR"] == str(base / "input/config")
    assert env["SMDEBUG_CONFIG_FILE_PATH"] == str(base / "input/config/debughookconfig.json")
    assert json.loads(env["SM_TRAINING_ENV"])["job_name"] == name
    config = base / "input" / "config"
    assert json.loads((config / "hyperparameters.json").read_text()) == fake_request()["HyperParameters"]
    assert json.loads((config / "inputdataconfig.json").read_text())["train"] == {
        "TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
    resources = json.loads((config / "resourceconfig.json").read_text())
    assert resources["current_host"] == "algo-1" and resources["current_instance_type"] == "ml.m5.xlarge"
    hook = json.loads((config / "debughookconfig.json").read_text())
    assert hook["LocalPath"] == str(base / "output/tensors")
    assert hook["CollectionConfigurations"][0]["CollectionName"] == "losses"


def test_a_failing_script_is_an_algorithm_error_and_its_checkpoints_are_kept(workspace) -> None:
    with pytest.raises(StepFailed) as failed:
        run_training_job(step_run(workspace, fake_request("fail")), "trainmodel-fails", fake_request("fail"))
    reason = failed.value.reason
    assert reason.startswith("AlgorithmError: exit code 3 (lr must be positive), last lines:")
    assert reason.splitlines()[-1] == "Traceback: something broke" and "epoch=2/2" in reason
    assert not workspace.path_for("s3://bucket/models/trainmodel-fails").exists()
    # a retry resumes: the checkpoint synced out after the failure comes back in
    assert workspace.path_for("s3://bucket/checkpoints/train/count").read_text() == "1"
    run_training_job(step_run(workspace, fake_request()), "trainmodel-retry", fake_request())
    assert workspace.path_for("s3://bucket/checkpoints/train/count").read_text() == "2"


def test_a_job_past_max_runtime_is_killed(workspace) -> None:
    request = fake_request("sleep", max_runtime=1)
    with pytest.raises(StepFailed, match=r"^MaxRuntimeExceeded: .*MaxRuntimeInSeconds \(1 s\)"):
        run_training_job(step_run(workspace, request), "trainmodel-slow", request)


def test_concurrent_jobs_with_distinct_names_do_not_interfere(workspace) -> None:
    results: dict[str, Any] = {}

    def train(name: str) -> None:
        results[name] = run_training_job(step_run(workspace, fake_request()), name, fake_request())

    threads = [threading.Thread(target=train, args=(f"trial-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in ("trial-0", "trial-1"):
        assert results[name]["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://bucket/models/{name}/output/model.tar.gz"
        assert len(results[name]["FinalMetricDataList"]) == 4


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["HyperParameters"].pop("sagemaker_program"), "script-mode training jobs only"),
    (lambda r: r["InputDataConfig"][0].update(InputMode="Pipe"), "only S3 data sources in File mode"),
    (lambda r: r["InputDataConfig"][0]["DataSource"]["S3DataSource"].update(S3Uri="s3://bucket/none"),
     "No S3 objects found"),
])
def test_requests_that_cannot_run_fail_with_the_reason(workspace, change, message) -> None:
    request = fake_request()
    change(request)
    with pytest.raises(StepFailed, match=message):
        run_training_job(step_run(workspace, request), "trainmodel-bad", request)


# ---------------------------------------------------------------------------------------------- the real TrainModel
def resolve(value: Any, values: dict[str, Any]) -> Any:
    """The executor's job, by hand: `Get` and `Std:Join` replaced by this test's values."""
    if isinstance(value, dict):
        if "Get" in value:
            return values[value["Get"]]
        if "Std:Join" in value:
            join = value["Std:Join"]
            return join["On"].join(str(resolve(v, values)) for v in join["Values"])
        return {k: resolve(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, values) for v in value]
    return value


def real_train_model_arguments(ws: Workspace, **overrides: Any) -> dict[str, Any]:
    """TrainModel's arguments in the real definition, built into `ws` (which then holds the sourcedir.tar.gz the SDK
    uploads)."""
    from pipelines.assembly import get_pipeline
    from pipelines.config import load_config
    from pipelines.session import Uploads, build_pipeline_session

    config = load_config(overrides=overrides)
    session = build_pipeline_session(config, Uploads.WORKSPACE, workspace_s3=ws.s3_root)
    definition = json.loads(get_pipeline(config, session).definition())
    return next(step for step in definition["Steps"] if step["Name"] == "TrainModel")["Arguments"]


@pytest.fixture(scope="module")
def real_workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, dict[str, Any]]:
    ws = Workspace.open(tmp_path_factory.mktemp("ws"))
    return ws, real_train_model_arguments(ws)


def run_real_train_model(ws: Workspace, arguments: dict[str, Any], digits: Path, lines: list[str],
                         instance_count: int = 1) -> tuple[dict, dict]:
    """Runs the real TrainModel request for one epoch over 12 + 6 digits a class: (the request, the job's
    properties)."""
    prepared = "s3://local-pipeline/image-classifier/exec1/PrepareData/output"
    for split, images in (("train", slice(0, 12)), ("validation", slice(12, 18))):
        for class_dir in sorted(p for p in digits.iterdir() if p.is_dir()):
            target = ws.path_for(f"{prepared}/{split}/{class_dir.name}")
            target.mkdir(parents=True, exist_ok=True)
            for image in sorted(class_dir.iterdir())[images]:
                shutil.copy(image, target / image.name)
    tuned = "Steps.TuneHyperparameters.BestTrainingJob.TunedHyperParameters"
    request = resolve(arguments, {
        "Parameters.TrainingInstanceType": "ml.m5.xlarge", "Parameters.Arch": "resnet18", "Parameters.ImageSize": 16,
        "Parameters.TrainingInstanceCount": instance_count,
        "Steps.PrepareData.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri": f"{prepared}/train",
        "Steps.PrepareData.ProcessingOutputConfig.Outputs['validation'].S3Output.S3Uri": f"{prepared}/validation",
        f"{tuned}['lr']": "0.003", f"{tuned}['batch_size']": '"32"', f"{tuned}['epochs']": "1"})
    # One core: pinned, train.py sizes its torch threads to it (two threads on a shared, loaded CPU run 5x slower).
    return request, run_training_job(step_run(ws, request, lines, cpu=instance_count), "trainmodel-real", request)


def test_the_real_train_model_request_trains_a_servable_model(real_workspace, small_digits_dir) -> None:
    ws, arguments = real_workspace
    lines: list[str] = []
    request, props = run_real_train_model(ws, arguments, small_digits_dir, lines)
    model = ws.path_for(props["ModelArtifacts"]["S3ModelArtifacts"])
    assert {"model.pth", "model_meta.json", "code/inference.py"} <= members(model), "\n".join(lines)
    final = {m["MetricName"]: m["Value"] for m in props["FinalMetricDataList"]}
    assert set(final) == {"train:loss", "train:accuracy", "validation:loss", "validation:accuracy"}
    assert 0.0 <= final["validation:accuracy"] <= 1.0
    assert any(line.startswith("debugger: on") for line in lines), "\n".join(lines)
    debug_output = ws.path_for(f"{request['DebugHookConfig']['S3OutputPath']}/trainmodel-real/debug-output")
    assert any(debug_output.rglob("*")), "smdebug wrote no tensors"


def test_the_weights_url_reaches_the_real_job_as_its_weights_channel(tmp_path, small_digits_dir) -> None:
    import torch
    import torchvision

    weights = tmp_path / "offline" / "resnet18-imagenet.pth"  # what a user copies from ~/.cache/torch
    weights.parent.mkdir()
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), weights)
    ws = Workspace.open(tmp_path / "ws")
    arguments = real_train_model_arguments(ws, **{"training.weights_url": str(weights), "debugger.enabled": False,
                                                  "profiler.enabled": False})
    lines: list[str] = []
    _, props = run_real_train_model(ws, arguments, small_digits_dir, lines)
    assert props["TrainingJobStatus"] == "Completed", "\n".join(lines)
    assert any("weights: loaded 120 tensors from" in line and "resnet18-imagenet.pth" in line for line in lines), \
        "\n".join(lines)
