"""The profiler's sampler on real processes, its hook in JobProcess, and the rules' statuses after a real train.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from smdebug_rulesconfig.profiler_rules import rules as aws_rules

from pipelines.local.container import JobProcess, pack_tar_gz
from pipelines.local.profiling import JobProfiler, SystemSampler, Timeline
from pipelines.local.profiling.joblog import read_job_facts
from pipelines.local.step_api import StepRun
from pipelines.local.training import run_training_job
from pipelines.local.workspace import Workspace
from steps.estimator import METRIC_DEFINITIONS

REPO = Path(__file__).resolve().parents[2]
PROFILER_RULES = ("ProfilerReport", "LowGPUUtilization", "CPUBottleneck", "IOBottleneck", "BatchSize",
                  "StepOutlier", "GPUMemoryIncrease", "OverallSystemUsage")
# busy, then 64 MiB more memory, then two child processes (like DataLoader workers), then idle
PHASES = r'''
import subprocess, sys, time
end = time.time() + 1.0
while time.time() < end:
    pass
ballast = b"x" * (64 * 2**20)
time.sleep(0.4)
kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.2)"]) for _ in range(2)]
for kid in kids:
    kid.wait()
time.sleep(0.8)
'''


class FakeGpu:
    """A GPU probe answering fixed values, or failing like a driver that went away."""

    def __init__(self, fail: bool = False) -> None:
        self.available, self.fail = True, fail

    def read(self) -> tuple[dict[str, float], dict[str, float]]:
        if self.fail:
            raise RuntimeError("driver gone")
        return {"gpu0": 55.0}, {"gpu0": 12.5}


def profiler_request(interval_ms: int = 100, **overrides: dict[str, Any]) -> dict[str, Any]:
    """ProfilerConfig and ProfilerRuleConfigurations as the definition has them (SDK classes, values as strings)."""
    configs = [{"RuleConfigurationName": name, "RuleEvaluatorImage": "x.dkr.ecr/sagemaker-debugger-rules:latest",
                "RuleParameters": {k: str(v) for k, v in
                                   getattr(aws_rules, name)(**overrides.get(name, {})).rule_parameters.items()}}
               for name in PROFILER_RULES]
    return {"ProfilerConfig": {"S3OutputPath": "s3://bucket/profiler-output", "DisableProfiler": False,
                               "ProfilingIntervalInMilliseconds": interval_ms},
            "ProfilerRuleConfigurations": configs, "OutputDataConfig": {"S3OutputPath": "s3://bucket/models"}}


# ---------------------------------------------------------------------------------------------- the sampler
def test_the_sampler_sees_cpu_memory_and_child_processes_of_a_real_job() -> None:
    process = subprocess.Popen([sys.executable, "-c", PHASES])
    sampler = SystemSampler(process.pid, interval_ms=100).start()
    process.wait(timeout=60)
    timeline = sampler.stop()
    samples = timeline.samples
    assert timeline.error is None and len(samples) >= 8, timeline.error
    assert timeline.cores == sorted(os.sched_getaffinity(0)) and timeline.interval_ms == 100
    cores = {f"cpu{c}" for c in timeline.cores}
    assert all(set(s.CPUUtilization) == cores == set(s.IOWaitPercentage) for s in samples)
    assert all(0 < s.MemoryUsedPercent <= 100 and not s.GPUUtilization for s in samples)
    # relations, not thresholds: on a loaded machine the busy loop's share of a core varies and the
    # interpreter's exit can land in the last sample, but the busy phase always outweighs the idle one
    busy = max(s.JobCPUPercent for s in samples[:8])
    idle = min(s.JobCPUPercent for s in samples[-3:])
    assert busy > 0 and idle < busy / 4, (busy, idle)
    assert max(s.JobRSSBytes for s in samples) - samples[0].JobRSSBytes >= 48 * 2**20
    assert max(s.JobChildProcesses for s in samples) == 2
    assert samples[-1].JobChildProcesses == 0 and samples[-1].JobProcesses == 1


def test_gpu_values_come_from_the_probe_and_the_timeline_reads_back(tmp_path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.6)"])
    sampler = SystemSampler(process.pid, interval_ms=100, gpu_probe=FakeGpu()).start()
    process.wait(timeout=30)
    timeline = sampler.stop()
    assert timeline.gpu_count == 1 and timeline.samples
    assert all(s.GPUUtilization == {"gpu0": 55.0} and s.GPUMemoryUtilization == {"gpu0": 12.5}
               for s in timeline.samples)
    again = Timeline.read(timeline.write(tmp_path / "system_metrics.json"))
    assert again.to_json() == timeline.to_json()
    written = json.loads((tmp_path / "system_metrics.json").read_text())
    assert written["Samples"][0]["I/OWaitPercentage"] == timeline.samples[0].IOWaitPercentage

    from smdebug.profiler.system_metrics_reader import LocalSystemMetricsReader

    files = timeline.write_sagemaker_layout(tmp_path / "profiler-output")
    assert all(f.match("system/incremental/20*/*.algo-1.json") for f in files)
    events = LocalSystemMetricsReader(str(tmp_path / "profiler-output")).get_events(0, 2**62)
    assert {(e.dimension, e.name) for e in events} >= {
        ("CPUUtilization", f"cpu{timeline.cores[0]}"), ("I/OWaitPercentage", f"cpu{timeline.cores[0]}"),
        ("Memory", "MemoryUsedPercent"), ("GPUUtilization", "gpu0"), ("GPUMemoryUtilization", "gpu0")}


# ---------------------------------------------------------------------------------------------- the hook
def job_process(tmp_path: Path, code: str, profiler: JobProfiler) -> JobProcess:
    return JobProcess([sys.executable, "-c", code], job_dir=tmp_path, cwd=tmp_path, env={}, cpu_budget=1,
                      max_runtime_s=60, cancelled=threading.Event(), log=lambda line: None,
                      monitor=profiler.watch)


def test_a_sampler_that_breaks_leaves_the_job_alone_and_the_rules_report_error(tmp_path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    profiler = JobProfiler(profiler_request(), ws, "job-1", tmp_path, gpu_probe=FakeGpu(fail=True))
    job_process(tmp_path, "import time; time.sleep(0.5); print('done')", profiler).run()  # no StepFailed
    assert (tmp_path / "job.log").read_text() == "done\n"
    properties = profiler.properties()
    assert properties["ProfilingStatus"] == "Enabled"
    statuses = {s["RuleConfigurationName"]: s for s in properties["ProfilerRuleEvaluationStatuses"]}
    assert statuses["CPUBottleneck"]["RuleEvaluationStatus"] == "Error"
    assert statuses["CPUBottleneck"]["StatusDetails"] == (
        "the local profiler failed, so the rule cannot judge the job: sampling stopped after 0 samples: "
        "RuntimeError: driver gone")
    assert statuses["StepOutlier"]["RuleEvaluationStatus"] == "NoIssuesFound"  # it reads the log, not the sampler


def test_a_job_gone_before_the_first_sample_has_nothing_to_check(tmp_path) -> None:
    profiler = JobProfiler(profiler_request(), Workspace.open(tmp_path / "ws"), "job-1", tmp_path)
    with profiler.watch(2**22 + 4321):  # above any pid_max: no such process
        pass
    statuses = profiler.properties()["ProfilerRuleEvaluationStatuses"]
    assert {s["RuleEvaluationStatus"] for s in statuses} == {"NoIssuesFound"}
    assert statuses[2]["StatusDetails"].startswith("the job ended before the first sample (100 ms interval)")


def test_without_profiler_config_nothing_is_added_and_a_disabled_profiler_says_why(tmp_path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    assert JobProfiler({}, ws, "job-1", tmp_path).properties() == {}
    request = profiler_request()
    request["ProfilerConfig"]["DisableProfiler"] = True
    profiler = JobProfiler(request, ws, "job-1", tmp_path)
    job_process(tmp_path, "pass", profiler).run()
    properties = profiler.properties()
    assert properties["ProfilingStatus"] == "Disabled" and not (tmp_path / "system_metrics.json").exists()
    details = {s["StatusDetails"] for s in properties["ProfilerRuleEvaluationStatuses"]
               if s["RuleConfigurationName"] == "IOBottleneck"}
    assert details == {"the profiler is off (ProfilerConfig.DisableProfiler, or no ProfilerConfig): no system "
                       "metrics were collected for this job"}


# ---------------------------------------------------------------------------------------------- a real train.py
@pytest.fixture()
def train_workspace(tmp_path: Path, small_digits_dir: Path) -> Workspace:
    ws = Workspace.open(tmp_path / "ws")
    code = tmp_path / "code"
    shutil.copytree(REPO / "scripts", code, ignore=shutil.ignore_patterns("__pycache__"))
    pack_tar_gz(code, ws.path_for("s3://bucket/code/sourcedir.tar.gz"))
    for split, images in (("train", slice(0, 6)), ("validation", slice(6, 9))):
        for class_dir in sorted(p for p in small_digits_dir.iterdir() if p.is_dir()):
            target = ws.path_for(f"s3://bucket/data/{split}/{class_dir.name}")
            target.mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[images]:
                shutil.copy(image, target / image.name)
    return ws


def train_request() -> dict[str, Any]:
    hyperparameters = {"arch": '"resnet18"', "pretrained": "false", "image_size": "16", "epochs": "1",
                       "batch_size": '"16"', "lr": "0.003", "optimizer": '"adam"', "hflip": "false",
                       "sagemaker_program": '"train.py"',
                       "sagemaker_submit_directory": '"s3://bucket/code/sourcedir.tar.gz"'}
    channels = [{"ChannelName": name, "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": f"s3://bucket/data/{name}"}}} for name in ("train", "validation")]
    return {**profiler_request(100, CPUBottleneck={"patience": 2}),
            "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "pytorch-training:cpu",
                                       "MetricDefinitions": [dict(m) for m in METRIC_DEFINITIONS]},
            "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 600}, "InputDataConfig": channels,
            "HyperParameters": hyperparameters}


def test_a_real_training_job_gets_profiler_rule_statuses_and_its_timeline(train_workspace) -> None:
    ws, request = train_workspace, train_request()
    run = StepRun(execution_id="exec1", pipeline_name="p", step_name="TrainModel", step_type="Training",
                  arguments=request, workspace=ws, cpu_budget=1, log=lambda line: None)
    props = run_training_job(run, "trainmodel-prof", request)
    assert props["ProfilingStatus"] == "Enabled" and props["ProfilerConfig"] == request["ProfilerConfig"]
    statuses = props["ProfilerRuleEvaluationStatuses"]
    assert [s["RuleConfigurationName"] for s in statuses] == list(PROFILER_RULES)
    assert {s["RuleEvaluationStatus"] for s in statuses} <= {"NoIssuesFound", "IssuesFound"}, statuses
    by_name = {s["RuleConfigurationName"]: s["StatusDetails"] for s in statuses}
    assert "no GPU on this machine" in by_name["LowGPUUtilization"]
    assert re.match(r"\d+ samples over 1 core\(s\): CPU p50 \d+%", by_name["OverallSystemUsage"])

    job_dir = ws.job_dir("exec1", "TrainModel", "trainmodel-prof")
    facts = read_job_facts(job_dir)  # train.py's profiler line
    assert (facts.dataloader_workers, facts.batch_size, facts.input_mode) == (0, 16, "cached")
    timeline = Timeline.read(job_dir / "system_metrics.json")
    assert timeline.samples and max(s.JobCPUPercent for s in timeline.samples) > 0
    assert len(timeline.cores) == 1  # pinned to the step's one core
    profiler_output = ws.path_for("s3://bucket/profiler-output/trainmodel-prof/profiler-output/system/incremental")
    assert list(profiler_output.rglob("*.algo-1.json"))
    report = ws.path_for("s3://bucket/models/trainmodel-prof/rule-output/ProfilerReport/profiler-output")
    assert (report / "profiler-reports" / "CPUBottleneck.json").is_file()
    summary = json.loads((report / "profiler-report.json").read_text())
    assert summary["RuleName"] == "ProfilerReport" and isinstance(summary["Report"]["Details"]["Recommendations"], list)
