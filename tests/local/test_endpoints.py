"""Deployment steps and live endpoints: real serving processes on 127.0.0.1, started and stopped by the tests.

The trained artifact comes from the project's own scripts/train.py (one epoch, 16 px, a few digits); the
zero-downtime test uses hand-made tiny models (test_serving.write_tiny_model), which start several times faster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from test_serving import png_bytes, write_tiny_model

from pipelines.local.container import pack_tar_gz
from pipelines.local.deployment import (
    CreateModelHandler,
    EndpointConfigHandler,
    EndpointHandler,
    generated_model_name,
)
from pipelines.local.endpoints import SCHEMA as ENDPOINTS_SCHEMA
from pipelines.local.endpoints import EndpointManager
from pipelines.local.state import StateStore
from pipelines.local.step_api import StepFailed, StepRun
from pipelines.local.workspace import Workspace
from pipelines.targets import TargetError

REPO = Path(__file__).resolve().parents[2]
MODEL_URI = "s3://local-pipeline/image-classifier/train/job-1/output/model.tar.gz"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312"
# ServingModel-CreateModel's Arguments from `get_pipeline(...).definition()`, expressions resolved.
CREATE_MODEL = {
    "ExecutionRoleArn": "arn:aws:iam::000000000000:role/LocalPipelineExecution",
    "PrimaryContainer": {
        "Image": IMAGE,
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20", "SAGEMAKER_REGION": "us-east-1"},
        "ModelDataUrl": MODEL_URI,
    },
}


def endpoint_config(name: str, model_name: str) -> dict:
    return {"EndpointConfigName": name, "Tags": [], "ProductionVariants": [
        {"VariantName": "AllTraffic", "ModelName": model_name, "InitialVariantWeight": 1,
         "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]}


def step_run(workspace: Workspace, step: str, step_type: str, arguments: dict) -> StepRun:
    return StepRun(execution_id="exec1", pipeline_name="image-classifier", step_name=step, step_type=step_type,
                   arguments=arguments, workspace=workspace, cpu_budget=1, log=lambda line: None)


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def training(small_digits_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """scripts/train.py for one epoch at 16 px on 6 train + 2 validation digits a class, started in the background
    (it is mostly imports) so the tests that need no trained model run meanwhile; `trained_artifact` waits for it."""
    root = tmp_path_factory.mktemp("trained")
    for class_dir in sorted(p for p in small_digits_dir.iterdir() if p.is_dir()):
        images = sorted(class_dir.glob("*.png"))
        for split, chosen in (("train", images[:6]), ("validation", images[6:8])):
            (root / split / class_dir.name).mkdir(parents=True)
            for image in chosen:
                shutil.copy(image, root / split / class_dir.name / image.name)
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(root / "opt_ml"), "SM_CHANNEL_TRAIN": str(root / "train"),
           "SM_CHANNEL_VALIDATION": str(root / "validation"), "SM_MODEL_DIR": str(root / "model"),
           "SM_OUTPUT_DATA_DIR": str(root / "output"), "SM_NUM_GPUS": "0"}
    argv = [sys.executable, str(REPO / "scripts" / "train.py"), "--epochs", "1", "--image-size", "16", "--arch",
            "mobilenet_v3_small", "--pretrained", "false", "--batch-size", "64", "--num-workers", "0", "--amp",
            "false"]
    with open(root / "train.log", "wb") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    yield root, process
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module", autouse=True)
def _start_training_early(training) -> None:
    pass


@pytest.fixture(scope="session")
def trained_artifact(training) -> tuple[Path, list[str]]:
    """The trained model dir packed as model.tar.gz, and its class names."""
    root, process = training
    returncode = process.wait(timeout=300)
    assert returncode == 0, (root / "train.log").read_text()[-3000:]
    classes = json.loads((root / "model" / "model_meta.json").read_text())["class_names"]
    return pack_tar_gz(root / "model", root / "model.tar.gz"), classes


@pytest.fixture()
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.open(tmp_path / "ws")


@pytest.fixture()
def store(workspace: Workspace) -> StateStore:
    store = StateStore(workspace.state_db)
    yield store
    store.close()


def serving_processes(workspace: Workspace) -> list[psutil.Process]:
    """Serving processes started for this test's workspace (their --model-dir or cwd is inside it)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "pipelines.local.serving" in cmdline and str(workspace.root.parent) in cmdline and \
                process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


@pytest.fixture()
def manager(workspace: Workspace, store: StateStore) -> EndpointManager:
    yield EndpointManager(workspace, store, ready_timeout=120)
    for process in serving_processes(workspace):  # a failed test must not leave servers behind
        process.kill()
        process.wait(10)


def port_refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def top_labels(body: bytes) -> list[str]:
    return [entry["label"] for prediction in json.loads(body)["predictions"] for entry in prediction["top_k"]]


# ---------------------------------------------------------------------------------------------- records
def test_deployment_records_answer_like_the_service(workspace: Workspace, store: StateStore) -> None:
    with pytest.raises(StepFailed, match="Could not find model data at s3://"):
        CreateModelHandler(workspace, store).run(step_run(workspace, "ServingModel-CreateModel", "Model",
                                                          CREATE_MODEL))
    workspace.path_for(MODEL_URI).parent.mkdir(parents=True)
    workspace.path_for(MODEL_URI).write_bytes(b"not checked until deployed")
    model = CreateModelHandler(workspace, store).run(step_run(workspace, "ServingModel-CreateModel", "Model",
                                                              CREATE_MODEL))
    assert re.fullmatch(r"pipelines-exec1-ServingModel-CreateModel-[0-9a-f]{8}", model["ModelName"])
    assert model["ModelArn"] == f"arn:aws:sagemaker:us-east-1:000000000000:model/{model['ModelName'].lower()}"
    assert model["PrimaryContainer"] == CREATE_MODEL["PrimaryContainer"]
    assert model["ExecutionRoleArn"] == CREATE_MODEL["ExecutionRoleArn"]
    named = {**CREATE_MODEL, "ModelName": model["ModelName"]}
    with pytest.raises(StepFailed, match="Cannot create already existing model"):
        CreateModelHandler(workspace, store).run(step_run(workspace, "M", "Model", named))
    assert len(generated_model_name("x" * 80, "ServingModel-CreateModel")) <= 63

    configs = EndpointConfigHandler(workspace, store)
    with pytest.raises(StepFailed, match='Could not find model "nope"'):
        configs.run(step_run(workspace, "EndpointConfig", "EndpointConfig", endpoint_config("c1", "nope")))
    first = configs.run(step_run(workspace, "EndpointConfig", "EndpointConfig",
                                 endpoint_config("c1", model["ModelName"])))
    assert first["EndpointConfigArn"].endswith(":endpoint-config/c1")
    assert configs.run(step_run(workspace, "EndpointConfig", "EndpointConfig",
                                endpoint_config("c1", model["ModelName"]))) == first  # a retried step
    changed = endpoint_config("c1", model["ModelName"])
    changed["ProductionVariants"][0]["InstanceType"] = "ml.c5.large"
    with pytest.raises(StepFailed, match="Cannot create already existing endpoint configuration"):
        configs.run(step_run(workspace, "EndpointConfig", "EndpointConfig", changed))
    with pytest.raises(StepFailed, match='Could not find endpoint configuration "c2"'):
        EndpointHandler(workspace, store).run(step_run(workspace, "Endpoint", "Endpoint",
                                                       {"EndpointName": "e", "EndpointConfigName": "c2"}))


def test_a_workspace_from_before_multi_model_endpoints_gets_the_column_and_keeps_its_rows(
        workspace: Workspace, store: StateStore) -> None:
    old_schema = re.sub(r"\n\s*multi_model_url TEXT,[^\n]*", "", ENDPOINTS_SCHEMA)
    assert "multi_model_url" not in old_schema
    store.execute_script(old_schema)
    with store.transaction() as db:
        db.execute("INSERT INTO endpoints (name, arn, config_name, model_dir, entry_point, environment, port, status, "
                   "url, created, updated) VALUES ('old', 'arn', 'c', '/m', 'code/inference.py', '{}', 1, 'Failed', "
                   "'http://127.0.0.1:1', 't', 't')")
    [row] = EndpointManager(workspace, store).list()
    assert (row["name"], row["mode"], row["status"]) == ("old", "SingleModel", "Failed")


# ---------------------------------------------------------------------------------------------- live endpoints
class Client(threading.Thread):
    """Sends one request at a time to 127.0.0.1 (each on a new connection, or all on one keep-alive connection)
    until stopped: at most 100 requests or 20 s."""

    def __init__(self, url: str, keep_alive: bool) -> None:
        super().__init__(daemon=True)
        self.url, self.keep_alive, self.stopped = f"{url}/invocations", keep_alive, threading.Event()
        self.labels: list[str] = []
        self.errors: list[str] = []

    def run(self) -> None:
        deadline = time.monotonic() + 20
        with httpx.Client(timeout=10, trust_env=False, limits=httpx.Limits(
                max_keepalive_connections=1 if self.keep_alive else 0)) as http:
            while not self.stopped.is_set() and self.count < 100 and time.monotonic() < deadline:
                try:
                    response = http.post(self.url, content=png_bytes(), headers={"Content-Type": "image/png"})
                    self.labels.append(top_labels(response.content)[0] if response.status_code == 200 else
                                       f"HTTP {response.status_code}")
                except httpx.TransportError as exc:
                    self.errors.append(repr(exc))
                time.sleep(0.1)

    @property
    def count(self) -> int:
        return len(self.labels) + len(self.errors)

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 20
        while self.count < count and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.05)


def test_redeploy_switches_models_without_a_refused_connection(tmp_path: Path, workspace: Workspace,
                                                               manager: EndpointManager) -> None:
    old_model = write_tiny_model(tmp_path / "old", ["old-cat", "old-dog"], kind="plain")
    new_model = write_tiny_model(tmp_path / "new", ["new-cat", "new-dog"], kind="plain")
    first = manager.deploy("pets", "pets-1", old_model, model_name="old")
    clients = [Client(first["url"], keep_alive=False), Client(first["url"], keep_alive=True)]
    for client in clients:
        client.start()
        client.wait_for(3)
    before = [client.count for client in clients]
    second = manager.deploy("pets", "pets-2", new_model, model_name="new")
    after = [client.count for client in clients]
    for client, count in zip(clients, after, strict=True):
        client.wait_for(count + 5)
        client.stopped.set()
        client.join(15)

    for client, sent_before, sent_after in zip(clients, before, after, strict=True):
        assert client.errors == []
        assert client.labels[0] == "old-cat" and set(client.labels[sent_after:]) == {"new-cat"}
        assert set(client.labels) <= {"old-cat", "new-cat"}
        assert sent_after - sent_before >= 3, "the redeploy was too quick for the client to send requests meanwhile"
    assert second["port"] == first["port"] and second["pid"] != first["pid"]
    assert not psutil.pid_exists(first["pid"]) or psutil.Process(first["pid"]).status() == psutil.STATUS_ZOMBIE
    assert [p.pid for p in serving_processes(workspace)] == [second["pid"]]

    # A model that fails to load leaves the live one serving, and says why.
    broken = write_tiny_model(tmp_path / "broken", ["x"], kind="broken")
    with pytest.raises(StepFailed, match=r"(?s)exited.*server\.log.*deliberately broken model"):
        manager.deploy("pets", "pets-3", broken)
    [row] = manager.list()
    assert (row["status"], row["pid"], row["config"]) == ("InService", second["pid"], "pets-2")
    assert "deliberately broken" in row["failure_reason"]
    assert top_labels(manager.invoke("pets", png_bytes(), "image/png")[1]) == ["new-cat"]

    # A server that died is reported, comes back on its port when redeployed, and the endpoint can be deleted.
    os.kill(second["pid"], signal.SIGKILL)
    psutil.Process(second["pid"]).wait(10)
    assert manager.list()[0]["status"] == "OutOfService"
    with pytest.raises(TargetError, match=r"'pets' is not running.*python pipeline.py start"):
        manager.invoke("pets", png_bytes(), "image/png")
    revived = manager.redeploy("pets")
    assert (revived["status"], revived["port"], revived["config"]) == ("InService", first["port"], "pets-2")
    assert top_labels(manager.invoke("pets", png_bytes(), "image/png")[1]) == ["new-cat"]
    manager.delete("pets")
    assert manager.list() == [] and port_refuses(first["port"])


def test_a_model_that_fails_to_load_fails_the_deploy_with_its_log(tmp_path: Path, workspace: Workspace,
                                                                  manager: EndpointManager) -> None:
    broken = write_tiny_model(tmp_path / "broken", ["x"], kind="broken")
    with pytest.raises(StepFailed) as failure:
        manager.deploy("bad", "bad-1", broken)
    assert "RuntimeError: weights.json is corrupt" in failure.value.reason
    assert str(workspace.endpoints_root / "bad" / "bad-1" / "server.log") in failure.value.reason
    [row] = manager.list()
    assert row["status"] == "Failed" and row["pid"] is None
    assert serving_processes(workspace) == []
    with pytest.raises(TargetError, match="'bad' is not running"):
        manager.invoke("bad", b"", "image/png")
    with pytest.raises(TargetError, match="no local endpoint 'nope'; known endpoints: bad"):
        manager.delete("nope")


def test_a_stopped_execution_stops_the_server_it_was_starting(tmp_path: Path, workspace: Workspace,
                                                              manager: EndpointManager) -> None:
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(StepFailed, match="stopped while the endpoint's server was starting"):
        manager.deploy("pets", "pets-1", write_tiny_model(tmp_path / "m", ["cat"], kind="plain"), cancelled=cancelled)
    assert manager.list()[0]["status"] == "Failed" and serving_processes(workspace) == []


def test_a_tarball_that_escapes_its_folder_is_refused(workspace: Workspace, store: StateStore,
                                                      tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        (tmp_path / "x").write_text("x")
        tar.add(tmp_path / "x", arcname="../../escaped.txt")
    workspace.path_for(MODEL_URI).parent.mkdir(parents=True)
    shutil.copy(evil, workspace.path_for(MODEL_URI))
    model = CreateModelHandler(workspace, store).run(step_run(workspace, "M", "Model", CREATE_MODEL))
    EndpointConfigHandler(workspace, store).run(step_run(workspace, "C", "EndpointConfig",
                                                         endpoint_config("c1", model["ModelName"])))
    with pytest.raises(StepFailed, match="unsafe member '../../escaped.txt'"):
        EndpointHandler(workspace, store).run(step_run(workspace, "E", "Endpoint",
                                                       {"EndpointName": "e", "EndpointConfigName": "c1"}))
    assert not list(workspace.root.rglob("escaped.txt"))
    assert not (workspace.endpoints_root / "e" / "c1" / "model").exists()


def test_a_multi_model_endpoint_serves_each_published_version_evicts_over_its_budget_and_survives_bad_keys(
        trained_artifact, workspace: Workspace, store: StateStore, tmp_path: Path) -> None:
    """Two versions of the trained artifact (the second with other class names) under one prefix, as PublishModel
    writes them, behind a `Mode: MultiModel` model; a budget that holds one of them."""
    tarball, classes = trained_artifact
    prefix_url = "s3://local-pipeline/image-classifier/multi-model/"
    prefix = workspace.path_for(prefix_url)
    prefix.mkdir(parents=True)
    shutil.copy(tarball, prefix / "v1.tar.gz")
    renamed = [f"renamed-{name}" for name in classes]
    unpacked = tmp_path / "v2"
    with tarfile.open(tarball) as tar:
        tar.extractall(unpacked, filter="data")
    meta = json.loads((unpacked / "model_meta.json").read_text())
    (unpacked / "model_meta.json").write_text(json.dumps({**meta, "class_names": renamed}))
    pack_tar_gz(unpacked, prefix / "v2.tar.gz")
    size_mb = sum(p.stat().st_size for p in unpacked.rglob("*") if p.is_file()) / 2**20
    assert size_mb > 1, "the budget below must hold one model and not two"

    container = {**CREATE_MODEL["PrimaryContainer"], "ModelDataUrl": prefix_url, "Mode": "MultiModel"}
    model = CreateModelHandler(workspace, store).run(step_run(workspace, "MultiModel-CreateModel", "Model",
                                                              {**CREATE_MODEL, "PrimaryContainer": container}))
    EndpointConfigHandler(workspace, store).run(step_run(workspace, "EndpointConfig", "EndpointConfig",
                                                         endpoint_config("mm-exec1", model["ModelName"])))
    manager = EndpointManager(workspace, store, ready_timeout=120, memory_budget_mb=int(size_mb) + 1)
    try:
        described = EndpointHandler(workspace, store, manager=manager).run(step_run(
            workspace, "Endpoint", "Endpoint", {"EndpointName": "mm", "EndpointConfigName": "mm-exec1"}))
        assert described["EndpointStatus"] == "InService"

        def labels_of(key: str) -> set[str]:
            status, body = manager.invoke("mm", png_bytes((250, 250, 250)), "image/png", target_model=key)
            assert status == 200, body
            return set(top_labels(body))

        assert labels_of("v1.tar.gz") <= set(classes)
        assert labels_of("v2.tar.gz") <= set(renamed)
        [row] = manager.list()
        assert (row["mode"], row["model_data_prefix"]) == ("MultiModel", prefix_url)
        assert [m["target_model"] for m in row["loaded_models"]] == ["v2.tar.gz"]  # v1 evicted for v2
        assert labels_of("v1.tar.gz") <= set(classes)  # and loaded again on demand

        status, body = manager.invoke("mm", png_bytes(), "image/png", target_model="v9.tar.gz")
        assert status == 404 and f"there is no {prefix_url}v9.tar.gz" in json.loads(body)["error"]
        status, body = manager.invoke("mm", png_bytes(), "image/png")
        assert status == 400 and "v1.tar.gz, v2.tar.gz" in json.loads(body)["error"]
        [row] = manager.list()
        assert row["status"] == "InService" and [m["target_model"] for m in row["loaded_models"]] == ["v1.tar.gz"]
    finally:
        manager.delete("mm")
    assert serving_processes(workspace) == [] and prefix.joinpath("v1.tar.gz").is_file()  # the prefix stays


# The trained model last: its training ran in the background during the tests above.
def test_endpoint_steps_serve_the_trained_model_until_deleted(trained_artifact, workspace: Workspace,
                                                              store: StateStore, manager: EndpointManager) -> None:
    tarball, classes = trained_artifact
    workspace.path_for(MODEL_URI).parent.mkdir(parents=True)
    shutil.copy(tarball, workspace.path_for(MODEL_URI))
    model = CreateModelHandler(workspace, store).run(step_run(workspace, "ServingModel-CreateModel", "Model",
                                                              CREATE_MODEL))
    EndpointConfigHandler(workspace, store).run(step_run(workspace, "EndpointConfig", "EndpointConfig",
                                                         endpoint_config("image-classifier-exec1", model["ModelName"])))
    described = EndpointHandler(workspace, store, manager=manager).run(step_run(
        workspace, "Endpoint", "Endpoint", {"EndpointName": "image-classifier", "Tags": [],
                                            "EndpointConfigName": "image-classifier-exec1"}))
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointArn"] == "arn:aws:sagemaker:us-east-1:000000000000:endpoint/image-classifier"
    assert described["ProductionVariants"][0]["DeployedImages"][0]["SpecifiedImage"] == IMAGE
    assert (workspace.endpoints_root / "image-classifier" / "image-classifier-exec1" / "model" / "code" /
            "inference.py").is_file()

    status, body = manager.invoke("image-classifier", png_bytes((250, 250, 250)), "image/png")
    assert status == 200, body
    assert top_labels(body) and set(top_labels(body)) <= set(classes)
    [row] = manager.list()
    assert (row["name"], row["status"], row["model"]) == ("image-classifier", "InService", model["ModelName"])
    assert row["url"] == f"http://127.0.0.1:{row['port']}"

    manager.delete("image-classifier")
    assert port_refuses(row["port"])
    assert manager.list() == [] and serving_processes(workspace) == []
    with pytest.raises(TargetError, match="no local endpoint 'image-classifier'; known endpoints: none"):
        manager.invoke("image-classifier", b"", "image/png")
