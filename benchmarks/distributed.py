"""Data-parallel training on local hosts: one training job on 1 host against the same job on 2 hosts.

Each run is a CreateTrainingJob request through the local engine (`run_training_job`), scripts/train.py on the
bundled digits split by preprocess.py, the local architecture and image size, the same epochs, global batch and
learning rate; only `InstanceCount` differs. The machine's cores are the job's budget: 1 host gets them all, 2
hosts get half each (pinned), so on 2 cores no speed-up is expected and the figure is what the all-reduce costs.

- wall-time ratio: 2-host job / 1-host job (the whole job: start-up, decoding, epochs, upload);
- communication share: a third run does one worker's share of the work alone (1 host, half the cores, half the
  batch) with no peer; 1 - its step time / the 2-host step time is the part of a 2-host step spent on the
  all-reduce and waiting for the other rank;
- accuracy: validation accuracy of the 1- and 2-host jobs (target: within 1 point).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import SCRIPTS_DIR, Result, Table, median, ratio, sample_splits, usable_cores
from benchmarks.training import default_settings

ACCURACY_TOLERANCE = 0.01
STEP_LINE = re.compile(r"^train_step_seconds=([0-9.,]+)", re.M)
EPOCH_SECONDS = re.compile(r"^epoch=\d+/\d+ .* epoch_seconds=([0-9.]+)", re.M)


@dataclass
class JobRun:
    label: str
    hosts: int
    cores: int
    batch_size: int
    wall_s: float
    loop_s: float  # rank 0's epochs, validation included
    step_s: float  # rank 0's median training step
    accuracy: float


def request_for(data: str, code: Path, hyperparameters: dict[str, Any], hosts: int) -> dict[str, Any]:
    """A script-mode CreateTrainingJob request, as the PyTorch estimator writes one (no Debugger, no Profiler)."""
    channels = [{"ChannelName": name, "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": f"{data}/{name}", "S3DataDistributionType": "FullyReplicated"}}}
        for name in ("train", "validation")]
    hps = {name: json.dumps(value) for name, value in hyperparameters.items()}  # as the SDK writes them
    hps.update(sagemaker_program='"train.py"', sagemaker_submit_directory=f'"{code}"')
    return {"AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "pytorch-training:local",
                                       "MetricDefinitions": [{"Name": "validation:accuracy",
                                                              "Regex": r"validation_accuracy=([0-9.]+)"}]},
            "OutputDataConfig": {"S3OutputPath": "s3://local-pipeline/bench/models/"},
            "StoppingCondition": {"MaxRuntimeInSeconds": 1800},
            "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": hosts, "VolumeSizeInGB": 30},
            "RoleArn": "arn:aws:iam::000000000000:role/LocalPipelineExecution",
            "InputDataConfig": channels, "HyperParameters": hps}


def parse_job(label: str, log: str, hosts: int, cores: int, batch: int, wall: float, props: dict) -> JobRun:
    steps = [float(s) for line in STEP_LINE.findall(log) for s in line.split(",") if s]
    final = {m["MetricName"]: m["Value"] for m in props.get("FinalMetricDataList", [])}
    return JobRun(label, hosts, cores, batch, wall, sum(float(s) for s in EPOCH_SECONDS.findall(log)),
                  median(steps), float(final.get("validation:accuracy", float("nan"))))


def run_job(workdir: Path, label: str, hosts: int, cores: int, hyperparameters: dict[str, Any]) -> JobRun:
    from pipelines.local.step_api import StepRun
    from pipelines.local.training import run_training_job
    from pipelines.local.workspace import Workspace

    workspace = Workspace.open(workdir / "workspace")
    data = "s3://local-pipeline/bench/data"
    if not workspace.path_for(f"{data}/train").exists():
        split = sample_splits(workdir)
        for name in ("train", "validation"):
            shutil.copytree(split / name, workspace.path_for(f"{data}/{name}"))
    request = request_for(data, SCRIPTS_DIR, hyperparameters, hosts)
    name = f"ddp-{label.replace(' ', '-').replace(',', '')}"
    run = StepRun(execution_id="bench", pipeline_name="bench", step_name="TrainModel", step_type="Training",
                  arguments=request, workspace=workspace, cpu_budget=cores, log=lambda line: None)
    shutil.rmtree(run.job_dir(name), ignore_errors=True)
    started = time.perf_counter()
    props = run_training_job(run, name, request)
    wall = time.perf_counter() - started
    log = (run.job_dir(name) / "job.log").read_text(errors="replace")
    return parse_job(label, log, hosts, cores, int(hyperparameters["batch_size"]), wall, props)


def communication_share(two_hosts_step_s: float, one_worker_step_s: float) -> float:
    """The part of a 2-host step that one worker's own compute does not explain: all-reduce and waiting."""
    return max(0.0, 1 - ratio(one_worker_step_s, two_hosts_step_s))


def run(workdir: Path, quick: bool) -> Result:
    settings = default_settings(epochs=4 if quick else 8)
    cores = usable_cores()
    hps = {"arch": settings.arch, "pretrained": False, "image_size": settings.image_size,
           "epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.lr, "hflip": False}
    one = run_job(workdir, "1 host", 1, cores, hps)
    two = run_job(workdir, "2 hosts", 2, cores, hps)
    alone = run_job(workdir, "1 worker's share alone", 1, max(1, cores // 2),
                    {**hps, "batch_size": settings.batch_size // 2})
    table = Table(["job", "hosts", "cores", "batch", "wall s", "epochs s", "step ms", "val accuracy"])
    for job in (one, two, alone):
        table.add(job.label, job.hosts, job.cores, job.batch_size, job.wall_s, job.loop_s, 1000 * job.step_s,
                  f"{job.accuracy:.4f}")
    share = communication_share(two.step_s, alone.step_s)
    size = settings.image_size or "auto"
    result = Result("distributed", f"Data-parallel training: 1 vs 2 local hosts ({settings.arch}, image_size "
                    f"{size}, {settings.epochs} epochs, global batch {settings.batch_size})")
    result.tables.append(("", table))
    result.figures.update(wall_ratio=ratio(two.wall_s, one.wall_s), epochs_ratio=ratio(two.loop_s, one.loop_s),
                          communication_share=share, accuracy_1_host=one.accuracy, accuracy_2_hosts=two.accuracy)
    result.targets["2-host accuracy within 1 point of 1 host"] = abs(two.accuracy - one.accuracy) <= \
        ACCURACY_TOLERANCE
    result.notes.append(f"2 hosts / 1 host: wall {result.figures['wall_ratio']:.2f}x, epochs "
                        f"{result.figures['epochs_ratio']:.2f}x; all-reduce and waiting: {100 * share:.0f}% of a "
                        f"2-host step (1 - {1000 * alone.step_s:.0f} ms / {1000 * two.step_s:.0f} ms). On {cores} "
                        "cores both hosts share the machine: no speed-up is expected here")
    return result
