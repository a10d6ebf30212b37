"""Processing jobs: relocation, inputs and outputs around a fake script, then the pipeline's real PrepareData."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipelines.local.processing import ProcessingJobHandler
from pipelines.local.step_api import StepFailed, StepRun
from pipelines.local.workspace import Workspace

FAKE_PROCESS = r'''
import json, os, pathlib, sys
base = pathlib.Path(os.environ["SAGEMAKER_BASE_DIR"])
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--output-dir") + 1])
data = base / "processing" / "input" / "data"
(out / "nested").mkdir(parents=True, exist_ok=True)
(out / "nested" / "seen.json").write_text(json.dumps({
    "argv": args, "files": sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()),
    "env": os.environ["MY_SETTING"]}))
(base / "output").mkdir(exist_ok=True)
(base / "output" / "message").write_text("processed 2 files")
print("done", flush=True)
sys.exit(int(os.environ.get("EXIT_CODE", "0")))
'''


def step_run(ws: Workspace, request: dict[str, Any], lines: list[str] | None = None, step: str = "Process",
             execution: str = "exec1") -> StepRun:
    return StepRun(execution_id=execution, pipeline_name="image-classifier", step_name=step, step_type="Processing",
                   arguments=request, workspace=ws, cpu_budget=1,
                   log=(lines.append if lines is not None else lambda line: None))


def s3_input(name: str, uri: str, local_path: str) -> dict[str, Any]:
    return {"InputName": name, "AppManaged": False, "S3Input": {
        "S3Uri": uri, "LocalPath": local_path, "S3DataType": "S3Prefix", "S3InputMode": "File",
        "S3DataDistributionType": "FullyReplicated", "S3CompressionType": "None"}}


def s3_output(name: str, uri: str, local_path: str) -> dict[str, Any]:
    return {"OutputName": name, "AppManaged": False,
            "S3Output": {"S3Uri": uri, "LocalPath": local_path, "S3UploadMode": "EndOfJob"}}


@pytest.fixture()
def workspace(tmp_path: Path) -> Workspace:
    ws = Workspace.open(tmp_path / "ws")
    code = ws.path_for("s3://bucket/code/abc/fake.py")
    code.parent.mkdir(parents=True)
    code.write_text(FAKE_PROCESS)
    for name in ("a.txt", "sub/b.txt"):
        ws.path_for(f"s3://bucket/raw/{name}").parent.mkdir(parents=True, exist_ok=True)
        ws.path_for(f"s3://bucket/raw/{name}").write_text(name)
    return ws


def fake_request(exit_code: int = 0) -> dict[str, Any]:
    return {
        "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                                                  "VolumeSizeInGB": 30}},
        "AppSpecification": {"ImageUri": "pytorch-training:2.6.0-cpu-py312",
                             "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/fake.py"],
                             "ContainerArguments": ["--output-dir", "/opt/ml/processing/output/result", "--n", "2"]},
        "Environment": {"MY_SETTING": "on", "EXIT_CODE": str(exit_code)},
        "RoleArn": "arn:aws:iam::000000000000:role/LocalPipelineExecution",
        "ProcessingInputs": [s3_input("data", "s3://bucket/raw", "/opt/ml/processing/input/data"),
                             s3_input("code", "s3://bucket/code/abc/fake.py", "/opt/ml/processing/input/code")],
        "ProcessingOutputConfig": {"Outputs": [
            s3_output("result", "s3://bucket/exec1/Process/output/result", "/opt/ml/processing/output/result"),
            s3_output("empty", "s3://bucket/exec1/Process/output/empty", "/opt/ml/processing/output/empty")]},
        "Tags": [{"Key": "team", "Value": "ml"}],
    }


def test_a_processing_job_runs_relocated_and_its_outputs_reach_their_s3_uris(workspace) -> None:
    lines: list[str] = []
    request = fake_request()
    request["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = 2
    props = ProcessingJobHandler(workspace).run(step_run(workspace, request, lines))
    name = props["ProcessingJobName"]
    assert name.startswith("process-exec1-") and len(name) <= 63
    assert props["ProcessingJobArn"] == f"arn:aws:sagemaker:us-east-1:000000000000:processing-job/{name}"
    assert props["ProcessingJobStatus"] == "Completed" and props["ExitMessage"] == "processed 2 files"
    assert props["ProcessingOutputConfig"] == fake_request()["ProcessingOutputConfig"]
    assert props["ProcessingInputs"] == fake_request()["ProcessingInputs"] and "Tags" not in props
    assert {"ProcessingStartTime", "ProcessingEndTime", "AppSpecification", "RoleArn"} <= set(props)
    assert lines == ["local engine: InstanceCount 2 runs as one host (algo-1)", "done"]
    seen = json.loads(workspace.path_for("s3://bucket/exec1/Process/output/result/nested/seen.json").read_text())
    job_base = workspace.job_dir("exec1", "Process", name) / "opt_ml"
    assert seen["argv"] == ["--output-dir", str(job_base / "processing/output/result"), "--n", "2"]
    assert {"processing/input/data/a.txt", "processing/input/data/sub/b.txt", "processing/input/code/fake.py",
            "config/processingjobconfig.json", "config/resourceconfig.json"} <= set(seen["files"])
    assert seen["env"] == "on"
    assert not workspace.path_for("s3://bucket/exec1/Process/output/empty").exists()  # nothing to upload


def test_a_failing_processing_job_is_an_algorithm_error_and_uploads_nothing(workspace) -> None:
    with pytest.raises(StepFailed, match=r"^AlgorithmError: exit code 4 \(processed 2 files\), last lines:\ndone$"):
        ProcessingJobHandler(workspace).run(step_run(workspace, fake_request(exit_code=4)))
    assert not workspace.path_for("s3://bucket/exec1").exists()


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["AppSpecification"].pop("ContainerEntrypoint"), "cannot run an image's own entrypoint"),
    (lambda r: r["ProcessingInputs"][0]["S3Input"].update(LocalPath="/data"), "must be under /opt/ml/processing"),
    (lambda r: r["ProcessingInputs"].append({"InputName": "q", "DatasetDefinition": {}}), "only S3Input"),
    (lambda r: r["ProcessingInputs"][0]["S3Input"].update(S3Uri="s3://bucket/missing"), "No S3 objects found"),
])
def test_requests_that_cannot_run_fail_with_the_reason(workspace, change, message) -> None:
    request = fake_request()
    change(request)
    with pytest.raises(StepFailed, match=message):
        ProcessingJobHandler(workspace).run(step_run(workspace, request))


# ---------------------------------------------------------------------------------------------- the real PrepareData
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


@pytest.fixture(scope="module")
def real_workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, dict[str, Any]]:
    """A workspace holding the code the SDK uploads while it builds the definition, and PrepareData's arguments."""
    from pipelines.assembly import get_pipeline
    from pipelines.config import load_config
    from pipelines.session import Uploads, build_pipeline_session

    ws = Workspace.open(tmp_path_factory.mktemp("ws"))
    config = load_config()
    session = build_pipeline_session(config, Uploads.WORKSPACE, workspace_s3=ws.s3_root)
    definition = json.loads(get_pipeline(config, session).definition())
    return ws, next(step for step in definition["Steps"] if step["Name"] == "PrepareData")["Arguments"]


def test_the_real_prepare_data_request_splits_the_dataset(real_workspace, small_digits_dir, tmp_path) -> None:
    ws, arguments = real_workspace
    dataset = tmp_path / "dataset"
    shutil.copytree(small_digits_dir, dataset, ignore=shutil.ignore_patterns(".*"))
    request = resolve(arguments, {"Parameters.ProcessingInstanceType": "ml.m5.xlarge",
                                               "Parameters.InputDataUrl": f"file://{dataset}",
                                               "Execution.PipelineExecutionId": "exec1"})
    lines: list[str] = []
    props = ProcessingJobHandler(ws).run(step_run(ws, request, lines, step="PrepareData"))
    outputs = {o["OutputName"]: o["S3Output"]["S3Uri"] for o in props["ProcessingOutputConfig"]["Outputs"]}
    assert outputs["train"] == "s3://local-pipeline/image-classifier/exec1/PrepareData/output/train"
    manifest = json.loads((ws.path_for(outputs["report"]) / "manifest.json").read_text())
    assert len(manifest["classes"]) == 10, "\n".join(lines)
    for split in ("train", "validation", "test"):
        images = [p for p in ws.path_for(outputs[split]).rglob("*") if p.is_file()]
        assert len(images) == manifest["totals"][split] > 0
    assert sum(manifest["totals"].values()) == 300
