"""Multi-instance training jobs: N hosts on this machine, each with its own /opt/ml, one rendezvous, one job."""

from __future__ import annotations

import json
import os
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest
from test_training_job import (
    fake_request,
    members,
    real_train_model_arguments,
    run_real_train_model,
    step_run,
    workspace_with_script,
)

from pipelines.local.step_api import StepFailed
from pipelines.local.training import run_training_job
from pipelines.local.workspace import Workspace

# What each host's container sees, then what the job is asked to do on that host.
FAKE_HOST = r'''
import json, os, pathlib, sys, time
host = os.environ["SM_CURRENT_HOST"]
base = pathlib.Path(os.environ["SAGEMAKER_BASE_DIR"])
mode = json.loads(os.environ["SM_HPS"])["mode"]
out = pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"])
seen = {k: v for k, v in os.environ.items() if k.startswith(("SM_", "MASTER_", "OMP_", "SAGEMAKER_"))}
seen["pid"] = os.getpid()
seen["resourceconfig"] = json.loads((base / "input/config/resourceconfig.json").read_text())
seen["data"] = sorted(str(p.relative_to(base)) for p in (base / "input/data").rglob("*.png"))
(out / f"seen-{host}.json").write_text(json.dumps(seen))
print(f"hello from {host}", flush=True)
model = pathlib.Path(os.environ["SM_MODEL_DIR"])
if host == "algo-1":
    print("epoch=1/1 train_loss=0.5000 train_accuracy=0.5000 validation_loss=0.5000 validation_accuracy=0.7000 "
          "lr=0.001 epoch_seconds=0.1", flush=True)
    if mode == "fail":
        time.sleep(60)  # the other host fails first: this one must be stopped, not left running
    (model / "model.pth").write_bytes(b"weights")
    (base / "checkpoints" / "state").write_text("written by rank 0")
else:
    if mode == "fail":
        time.sleep(0.5)
        (base / "output" / "failure").write_text("rendezvous lost")
        sys.exit(3)
    (model / f"extra-{host}.txt").write_text("from " + host)
    (model / "model.pth").write_bytes(b"a clash")
'''


@pytest.fixture()
def workspace(tmp_path: Path) -> Workspace:
    return workspace_with_script(tmp_path, FAKE_HOST)


def hosts_request(count: Any, mode: str = "ok") -> dict[str, Any]:
    request = fake_request(mode)
    request["ResourceConfig"]["InstanceCount"] = count
    del request["DebugHookConfig"]
    return request


def test_two_instances_run_as_two_hosts_with_one_rendezvous_and_one_model(workspace) -> None:
    lines: list[str] = []
    request = hosts_request(2)
    workspace.path_for("s3://bucket/checkpoints/train/state").parent.mkdir(parents=True)
    workspace.path_for("s3://bucket/checkpoints/train/state").write_text("from an earlier run")
    props = run_training_job(step_run(workspace, request, lines, cpu=2), "trainmodel-2hosts", request)
    job_dir = workspace.job_dir("exec1", "TrainModel", "trainmodel-2hosts")
    # One log per host: algo-1 where a one-host job has it, algo-2 in its own folder (`logs --host algo-2`).
    assert "hello from algo-1" in (job_dir / "job.log").read_text()
    assert "hello from algo-2" in (job_dir / "algo-2/job.log").read_text()
    assert "[algo-2] hello from algo-2" in lines and "hello from algo-1" in lines
    assert any("InstanceCount 2 runs as hosts algo-1..algo-2 on this machine, 1 core(s) each" in line
               for line in lines)
    seen = {}
    for host, base in (("algo-1", job_dir / "opt_ml"), ("algo-2", job_dir / "algo-2/opt_ml")):
        seen[host] = json.loads((base / f"output/data/seen-{host}.json").read_text())
        env = seen[host]
        assert env["SAGEMAKER_BASE_DIR"] == str(base) and env["SM_CURRENT_HOST"] == host
        assert json.loads(env["SM_HOSTS"]) == ["algo-1", "algo-2"] and env["OMP_NUM_THREADS"] == "1"
        assert env["SM_CHANNEL_TRAIN"] == str(base / "input/data/train")
        assert env["SM_MODEL_DIR"] == str(base / "model")
        assert json.loads(env["SM_TRAINING_ENV"])["is_master"] is (host == "algo-1")
        assert env["SM_NUM_CPUS"] == "1"
        resources = env["resourceconfig"]
        assert (resources["current_host"], resources["hosts"]) == (host, ["algo-1", "algo-2"])
        assert env["data"] == ["input/data/train/cat/1.png", "input/data/validation/cat/1.png"]  # FullyReplicated
    assert seen["algo-1"]["MASTER_ADDR"] == seen["algo-2"]["MASTER_ADDR"] == "127.0.0.1"
    assert seen["algo-1"]["MASTER_PORT"] == seen["algo-2"]["MASTER_PORT"]
    # SageMaker aggregates every host's model dir and output data into one archive each.
    model_uri = props["ModelArtifacts"]["S3ModelArtifacts"]
    assert members(workspace.path_for(model_uri)) == {"model.pth", "extra-algo-2.txt"}
    with tarfile.open(workspace.path_for(model_uri)) as tar:
        assert tar.extractfile("model.pth").read() == b"weights"  # a name both hosts wrote: algo-1's
    assert "local engine: algo-2 also wrote model.pth; algo-1's is kept" in lines
    # Every host got the earlier checkpoint; rank 0's newer one is what goes back out.
    assert (job_dir / "algo-2/opt_ml/checkpoints/state").read_text() == "from an earlier run"
    assert workspace.path_for("s3://bucket/checkpoints/train/state").read_text() == "written by rank 0"
    output = workspace.path_for(model_uri.replace("model.tar.gz", "output.tar.gz"))
    assert members(output) == {"seen-algo-1.json", "seen-algo-2.json"}
    # Metrics come from algo-1 (rank 0 prints the epoch lines).
    assert {m["MetricName"]: m["Value"] for m in props["FinalMetricDataList"]}["validation:accuracy"] == 0.7
    assert props["ResourceConfig"]["InstanceCount"] == 2


def test_a_host_that_dies_fails_the_job_with_its_log_and_stops_the_others(workspace) -> None:
    request = hosts_request(2, "fail")
    with pytest.raises(StepFailed) as failed:
        run_training_job(step_run(workspace, request, cpu=2), "trainmodel-dies", request)
    reason = failed.value.reason
    job_dir = workspace.job_dir("exec1", "TrainModel", "trainmodel-dies")
    assert reason.startswith(f"AlgorithmError: host algo-2 of 2 failed (its log: {job_dir / 'algo-2/job.log'}): "
                             "exit code 3 (rendezvous lost), last lines:")
    assert "hello from algo-2" in reason
    # algo-1 sleeps 60 s before it writes its model: stopped, it never got that far.
    assert not (job_dir / "opt_ml/model/model.pth").exists()
    algo1 = json.loads((job_dir / "opt_ml/output/data/seen-algo-1.json").read_text())
    with pytest.raises(ProcessLookupError):  # no orphan survives the job
        os.kill(algo1["pid"], 0)


def test_stopping_the_execution_stops_a_running_training_job(workspace) -> None:
    request = hosts_request(1, "fail")  # algo-1 sleeps 60 s before it writes its model
    run = step_run(workspace, request, cpu=2)
    threading.Timer(1.0, run.cancelled.set).start()
    with pytest.raises(StepFailed, match="^Stopped"):
        run_training_job(run, "trainmodel-stopped", request)
    job_dir = workspace.job_dir("exec1", "TrainModel", "trainmodel-stopped")
    assert not (job_dir / "opt_ml/model/model.pth").exists()


def test_a_sharded_by_s3_key_channel_gives_each_host_its_share(workspace) -> None:
    for name in ("2.png", "3.png"):
        workspace.path_for(f"s3://bucket/data/train/cat/{name}").write_bytes(b"png")
    request = hosts_request(2)
    request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3DataDistributionType"] = "ShardedByS3Key"
    run_training_job(step_run(workspace, request, cpu=2), "trainmodel-sharded", request)
    job_dir = workspace.job_dir("exec1", "TrainModel", "trainmodel-sharded")
    seen = {host: json.loads((base / f"output/data/seen-{host}.json").read_text())["data"]
            for host, base in (("algo-1", job_dir / "opt_ml"), ("algo-2", job_dir / "algo-2/opt_ml"))}
    assert seen["algo-1"] == ["input/data/train/cat/1.png", "input/data/train/cat/3.png",
                              "input/data/validation/cat/1.png"]
    assert seen["algo-2"] == ["input/data/train/cat/2.png", "input/data/validation/cat/1.png"]  # FullyReplicated


@pytest.mark.parametrize("count", [0, -1, "2", 1.5])
def test_an_instance_count_that_is_not_a_positive_whole_number_is_refused(workspace, count) -> None:
    request = hosts_request(count)
    with pytest.raises(StepFailed, match=r"^ValidationException: ResourceConfig.InstanceCount must be a whole "
                                         rf"number of at least 1, got {count!r}"):
        run_training_job(step_run(workspace, request), "trainmodel-count", request)


def test_the_real_train_model_request_trains_data_parallel_on_two_hosts(tmp_path, small_digits_dir) -> None:
    """The definition's TrainModel with TrainingInstanceCount 2: train.py on both hosts, Gloo over the loopback,
    one model, Debugger tensors from rank 0."""
    ws = Workspace.open(tmp_path / "ws")
    arguments = real_train_model_arguments(ws, **{"profiler.enabled": False})
    lines: list[str] = []
    request, props = run_real_train_model(ws, arguments, small_digits_dir, lines, instance_count=2)
    assert request["ResourceConfig"]["InstanceCount"] == 2
    assert props["TrainingJobStatus"] == "Completed", "\n".join(lines)
    assert any(line.startswith("distributed: rank 0 of 2") for line in lines), "\n".join(lines)
    assert any(line.startswith("[algo-2] distributed: rank 1 of 2") for line in lines), "\n".join(lines)
    assert any("(shard 2 of 2)" in line and line.startswith("[algo-2]") for line in lines)
    assert any(line.startswith("batch: 16 per worker x 2 workers (batch_size 32 is the global batch)")
               for line in lines)
    # Epoch lines (what the metric regexes read) once per job, from rank 0, with figures over both shards.
    assert len([line for line in lines if line.startswith("epoch=")]) == 1
    assert not [line for line in lines if line.startswith(("[algo-2] epoch=", "[algo-2] train_step_seconds="))]
    assert "[algo-2] rank 1: done; rank 0 writes the model" in lines
    assert {"model.pth", "model_meta.json", "code/inference.py"} <= members(
        ws.path_for(props["ModelArtifacts"]["S3ModelArtifacts"]))
    debug_output = ws.path_for(f"{request['DebugHookConfig']['S3OutputPath']}/trainmodel-real/debug-output")
    events = [p.name for p in debug_output.rglob("*.tfevents")]
    assert events and all(name.endswith("_worker_0.tfevents") for name in events)


def test_an_engine_error_on_a_host_reaches_the_job_and_stops_the_others(tmp_path) -> None:
    """Not a job failure (the log cannot be written): it is raised as it is, so the job reports it as the service
    would (InternalServerError), and the healthy host is stopped rather than left to finish."""
    import threading

    from pipelines.local.training_contract import job_hosts
    from pipelines.local.training_hosts import HostGroup

    class Broken:
        cancelled = None
        log_path = tmp_path / "job.log"

        def run(self) -> None:
            raise OSError("No space left on device")

    class Waiting(Broken):
        def run(self) -> None:
            if not self.cancelled.wait(30):
                raise AssertionError("never stopped")
            raise StepFailed("Stopped: the job was stopped on request")

    hosts = job_hosts(tmp_path, 2, 2)
    with pytest.raises(OSError, match="No space left on device"):
        HostGroup([(hosts[0], Waiting()), (hosts[1], Broken())], threading.Event()).run()
