"""`pipelines.local.transform`: a Transform job through the model's own serving code, written as SageMaker writes
it; what fails the job (a record the model refuses, one over MaxPayloadInMB, an empty prefix) names the file."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from test_endpoints import CREATE_MODEL, MODEL_URI, step_run
from test_serving import png_bytes, write_tiny_model

from pipelines.local.container import pack_tar_gz
from pipelines.local.deployment import CreateModelHandler
from pipelines.local.state import StateStore
from pipelines.local.step_api import StepFailed
from pipelines.local.transform import TransformJobHandler
from pipelines.local.workspace import Workspace

INPUT = "s3://local-pipeline/image-classifier/exec1/test"
OUTPUT = "s3://local-pipeline/image-classifier/exec1/batch-output"
# BatchTransform's Arguments from `get_pipeline(...).definition()`, expressions resolved.
REQUEST = {
    "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": INPUT}},
                       "ContentType": "application/x-image"},
    "TransformOutput": {"S3OutputPath": OUTPUT, "Accept": "application/json"},
    "TransformResources": {"InstanceCount": 1, "InstanceType": "ml.m5.large"},
    "BatchStrategy": "SingleRecord", "MaxConcurrentTransforms": 2, "MaxPayloadInMB": 1,
}


@pytest.fixture()
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.open(tmp_path / "ws")


@pytest.fixture()
def store(workspace: Workspace):
    store = StateStore(workspace.state_db)
    yield store
    store.close()


@pytest.fixture()
def model_name(workspace: Workspace, store: StateStore, tmp_path: Path) -> str:
    """A CreateModel'd plain-Python model (no torch import: its server is up at once) that says 'cat'."""
    model_dir = write_tiny_model(tmp_path / "model", ["cat", "dog"], kind="plain")
    pack_tar_gz(model_dir, workspace.path_for(MODEL_URI))
    created = CreateModelHandler(workspace, store).run(step_run(workspace, "M", "Model",
                                                                {**copy.deepcopy(CREATE_MODEL), "ModelName": "m1"}))
    return created["ModelName"]


def images(workspace: Workspace, files: dict[str, bytes]) -> None:
    for key, data in files.items():
        path = workspace.path_for(f"{INPUT}/{key}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def transform(workspace: Workspace, store: StateStore, model_name: str, **changes) -> dict:
    request = {**copy.deepcopy(REQUEST), "ModelName": model_name, **changes}
    return TransformJobHandler(workspace, store, "eu-west-1").run(step_run(workspace, "BatchTransform", "Transform",
                                                                            request))


def test_each_input_file_gets_its_out_file_with_the_handlers_response(workspace, store, model_name) -> None:
    images(workspace, {"cat/1.png": png_bytes(), "cat/2.jpg": png_bytes(fmt="JPEG"), "dog/3.png": png_bytes()})
    described = transform(workspace, store, model_name)
    output = workspace.path_for(OUTPUT)
    written = sorted(p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file())
    assert written == ["cat/1.png.out", "cat/2.jpg.out", "dog/3.png.out"]  # keys kept, as SageMaker writes them
    answer = json.loads((output / "dog" / "3.png.out").read_text())
    assert answer["predictions"][0]["top_k"][0]["label"] == "cat"  # the tiny model always says cat
    assert described["TransformJobStatus"] == "Completed" and described["ModelName"] == model_name
    assert described["TransformJobArn"] == f"arn:aws:sagemaker:eu-west-1:000000000000:transform-job/" \
                                           f"{described['TransformJobName']}"
    log = workspace.job_dir("exec1", "BatchTransform", described["TransformJobName"]) / "job.log"
    assert log.is_file()  # the server's log is the job's: `logs BatchTransform` shows it


def test_an_undecodable_file_fails_the_job_naming_it(workspace, store, model_name) -> None:
    images(workspace, {"cat/1.png": png_bytes(), "cat/broken.png": b"not an image at all"})
    with pytest.raises(StepFailed, match=r"ClientError: cat/broken\.png: the model answered HTTP 5\d\d"):
        transform(workspace, store, model_name, MaxConcurrentTransforms=1)


def test_a_file_over_max_payload_fails_the_job_naming_it_and_the_limit(workspace, store, model_name) -> None:
    images(workspace, {"big.png": b"x" * (1024 * 1024 + 1)})
    with pytest.raises(StepFailed, match=r"ClientError: big\.png is 1\.0 MB, over MaxPayloadInMB 1: raise "
                                         r"\[batch\] max_payload_mb"):
        transform(workspace, store, model_name)


def test_an_empty_prefix_fails_as_sagemaker_says(workspace, store, model_name) -> None:
    with pytest.raises(StepFailed, match="ClientError: No S3 objects found under S3 URL"):
        transform(workspace, store, model_name)


@pytest.mark.parametrize(("change", "message"), [
    ({"TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": INPUT}}}},
     "reads S3DataType S3Prefix only"),
    ({"TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": INPUT}},
                         "SplitType": "Line"}}, "not SplitType Line"),
    ({"DataProcessing": {"InputFilter": "$[1:]"}}, "DataProcessing"),
    ({"ModelName": "no-such-model"}, 'Could not find model "no-such-model"'),
])
def test_what_the_local_engine_does_not_do_is_refused_by_name(workspace, store, model_name, change,
                                                             message) -> None:
    with pytest.raises(StepFailed, match=message):
        transform(workspace, store, model_name, **change)
