"""Profiler rules over synthetic timelines: each fires on a deliberately broken run and stays quiet on a healthy one,
with AWS's defaults and the definition's RuleParameters (strings) as overrides."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from smdebug_rulesconfig.profiler_rules import rules as aws_rules

from pipelines.local.profiling import RULES, Sample, Timeline, evaluate_profiler_rules, run_rules
from pipelines.local.profiling.joblog import JobFacts, read_job_facts
from pipelines.local.profiling.report import SUB_RULES
from pipelines.local.profiling.rules import Evidence

START = 1_700_000_000.0
Value = float | Callable[[int], float]


def make_timeline(n: int, *, cpu: Value = 50.0, iowait: Value = 0.0, gpu: Value | None = None,
                  gpu_memory: Value = 30.0, job_cpu: Value = 150.0, children: int = 0, memory: Value = 40.0,
                  cores: int = 2, idle_cores: int = 0, interval: float = 0.5) -> Timeline:
    """`n` samples `interval` apart; each value a constant or a function of the sample's index; the last
    `idle_cores` cores at 3%."""
    def at(value: Value, i: int) -> float:
        return float(value(i) if callable(value) else value)

    samples = []
    for i in range(n):
        sample = Sample(Timestamp=START + (i + 1) * interval,
                        CPUUtilization={f"cpu{c}": at(cpu, i) if c < cores - idle_cores else 3.0
                                        for c in range(cores)},
                        IOWaitPercentage={f"cpu{c}": at(iowait, i) for c in range(cores)},
                        MemoryUsedPercent=at(memory, i), JobCPUPercent=at(job_cpu, i), JobRSSBytes=2**28,
                        JobProcesses=1 + children, JobChildProcesses=children)
        if gpu is not None:
            sample.GPUUtilization, sample.GPUMemoryUtilization = {"gpu0": at(gpu, i)}, {"gpu0": at(gpu_memory, i)}
        samples.append(sample)
    return Timeline(cores=list(range(cores)), interval_ms=int(interval * 1000), samples=samples, cpu_count=cores,
                    gpu_count=int(gpu is not None), start_time=START)


def judge(rule: str, timeline: Timeline | None, facts: JobFacts | None = None, **parameters: str):
    evidence = Evidence(timeline, facts or JobFacts())
    return RULES[rule](**parameters).evaluate(evidence)


# ---------------------------------------------------------------------------------------------- AWS's defaults
@pytest.mark.parametrize("name", ["ProfilerReport", "LowGPUUtilization", "CPUBottleneck", "IOBottleneck",
                                  "BatchSize", "StepOutlier", "GPUMemoryIncrease", "OverallSystemUsage",
                                  "Dataloader"])
def test_each_rule_has_the_defaults_of_the_sdk_class_the_definition_is_built_from(name) -> None:
    signature = inspect.signature(getattr(aws_rules, name).__init__)
    aws = {p.name: p.default for p in signature.parameters.values() if p.default is not inspect.Parameter.empty}
    assert RULES[name].defaults == aws


# ---------------------------------------------------------------------------------------------- GPU-starved rules
def test_cpu_bottleneck_fires_when_the_cpu_is_pegged_while_the_gpu_waits() -> None:
    finding = judge("CPUBottleneck", make_timeline(60, cpu=99, gpu=2), patience="10")
    assert finding.status == "IssuesFound"
    assert re.search(r"^\d+ of \d+ datapoints \(100%\) had a core's CPU utilization above 90% while a GPU was "
                     r"below 10% \(threshold 50%\), by \d+ s into the job", finding.detail), finding.detail
    assert judge("CPUBottleneck", make_timeline(60, cpu=99, gpu=95), patience="10").status == "NoIssuesFound"


def test_cpu_bottleneck_waits_for_patience_and_says_so() -> None:
    finding = judge("CPUBottleneck", make_timeline(60, cpu=99, gpu=2))
    assert finding.status == "NoIssuesFound"
    assert "only 60 datapoints, not more than patience=1000" in finding.detail and "60 bottlenecks" in finding.detail


def test_without_a_gpu_the_gpu_rules_report_that_there_was_nothing_to_check() -> None:
    pegged = make_timeline(60, cpu=100, iowait=80)
    for rule in ("CPUBottleneck", "IOBottleneck", "LowGPUUtilization", "BatchSize", "GPUMemoryIncrease"):
        finding = judge(rule, pegged, patience="1")
        assert finding.status == "NoIssuesFound" and "no GPU on this machine" in finding.detail, finding
    assert "CPU utilization peaked at 100% on a core" in judge("CPUBottleneck", pegged).detail


def test_io_bottleneck_fires_when_io_wait_is_high_while_the_gpu_waits() -> None:
    starved = judge("IOBottleneck", make_timeline(40, iowait=85, gpu=0), patience="10")
    assert starved.status == "IssuesFound" and "I/O wait above 50%" in starved.detail
    assert judge("IOBottleneck", make_timeline(40, iowait=2, gpu=0), patience="10").status == "NoIssuesFound"


def test_low_gpu_utilization_fires_on_an_idle_or_a_fluctuating_gpu() -> None:
    idle = judge("LowGPUUtilization", make_timeline(50, gpu=20), patience="10", window="20")
    assert idle.status == "IssuesFound" and idle.detail.startswith("gpu0 under-used: p95 20%")
    flapping = judge("LowGPUUtilization", make_timeline(50, gpu=lambda i: 100 * (i % 2)), patience="10")
    assert flapping.status == "IssuesFound" and "fluctuating" in flapping.detail
    busy = judge("LowGPUUtilization", make_timeline(50, gpu=90), patience="10")
    assert busy.status == "NoIssuesFound" and busy.detail.startswith("gpu0 p95 90% p5 90%")


def test_batch_size_fires_when_cpu_gpu_and_gpu_memory_all_have_room() -> None:
    facts = JobFacts(batch_size=32)
    roomy = judge("BatchSize", make_timeline(60, cpu=20, gpu=30, gpu_memory=15), facts, patience="10", window="20")
    assert roomy.status == "IssuesFound"
    assert "CPU p95 20%, gpu0 p95 30% and memory p95 15%" in roomy.detail and "raise batch_size=32" in roomy.detail
    full = judge("BatchSize", make_timeline(60, cpu=20, gpu=30, gpu_memory=85), facts, patience="10", window="20")
    assert full.status == "NoIssuesFound"


def test_gpu_memory_increase_fires_on_memory_that_keeps_growing() -> None:
    leak = judge("GPUMemoryIncrease", make_timeline(40, gpu=80, gpu_memory=lambda i: 2 + 5 * i), patience="15")
    assert leak.status == "IssuesFound" and "memory moving average rose 7.5 points (increase 5)" in leak.detail
    flat = judge("GPUMemoryIncrease", make_timeline(40, gpu=80, gpu_memory=60), patience="15")
    assert flat.status == "NoIssuesFound" and "largest step 0.0 points" in flat.detail


# ---------------------------------------------------------------------------------------------- job-level rules
def steps_log(tmp_path: Path, epochs: list[list[float]]) -> JobFacts:
    lines = [f"epoch={i}/9 train_step_seconds=" + ",".join(f"{s:.3f}" for s in steps) for i, steps in
             enumerate(epochs, 1)]
    (tmp_path / "job.log").write_text("\n".join(lines) + "\n")
    return read_job_facts(tmp_path)


def test_step_outlier_fires_on_stalled_steps_from_the_jobs_step_lines(tmp_path) -> None:
    stalled = [[0.1] * 150, [0.1] * 130 + [2.0] * 20]  # e.g. a checkpoint written every few steps
    finding = judge("StepOutlier", None, steps_log(tmp_path, stalled))
    assert finding.status == "IssuesFound"
    assert re.search(r"TRAIN: 20 of 300 steps took longer than .* more than n_outliers=10; the slowest 2 s at "
                     r"step 281 \(epoch 2\)", finding.detail), finding.detail


def test_step_outlier_stays_quiet_on_steady_steps_and_needs_more_than_100(tmp_path) -> None:
    steady = [[0.1 + 0.001 * (i % 7) for i in range(150)], [0.5] + [0.1] * 149]  # only the first step is slow
    assert judge("StepOutlier", None, steps_log(tmp_path, steady)).status == "NoIssuesFound"
    few = judge("StepOutlier", None, steps_log(tmp_path, [[0.1] * 50 + [9.0] * 20]))
    assert few.status == "NoIssuesFound" and "TRAIN: 70 steps, the rule needs more than 100" in few.detail
    assert "logged no step durations" in judge("StepOutlier", make_timeline(3)).detail
    assert judge("StepOutlier", None, steps_log(tmp_path, steady), mode="EVAL").detail.startswith("the job logged no")


def test_dataloader_compares_workers_with_the_cores_the_job_got() -> None:
    starved = judge("Dataloader", make_timeline(5, cores=8), JobFacts(dataloader_workers=1, input_mode="lazy"))
    assert starved.status == "IssuesFound"
    assert starved.detail == ("8 cores, 1 dataloader worker (as the job logged), fewer than min_threshold 70% of "
                              "the cores: raise num_workers (to about 8)")
    seen = judge("Dataloader", make_timeline(5, cores=2, children=2))
    assert seen.status == "NoIssuesFound" and "2 dataloader workers (seen as child processes)" in seen.detail
    cached = judge("Dataloader", make_timeline(5), JobFacts(dataloader_workers=0, input_mode="cached"))
    assert cached.status == "NoIssuesFound" and "cached in memory" in cached.detail


def test_overall_system_usage_summarises_and_cannot_trigger() -> None:
    finding = judge("OverallSystemUsage", make_timeline(20, cpu=lambda i: 5 * i, memory=40, job_cpu=180))
    assert finding.status == "NoIssuesFound"
    assert finding.detail.startswith("20 samples over 2 core(s): CPU p50 48% p95 90% max 95%; memory p50 40%")
    assert "job CPU (100% = one core) p50 180%" in finding.detail and finding.detail.endswith("no GPU")
    assert finding.report["Details"]["CPU"]["algo-1"]["max"] == 95.0


# ---------------------------------------------------------------------------------------------- ProfilerReport
def test_profiler_report_finds_issues_when_a_rule_it_runs_triggers_and_recommends() -> None:
    crippled = make_timeline(60, cpu=99, gpu=3, job_cpu=98, children=0, cores=8, idle_cores=7)
    facts = JobFacts(dataloader_workers=1, input_mode="lazy", batch_size=32)
    finding = judge("ProfilerReport", crippled, facts, CPUBottleneck_patience="10")
    assert finding.status == "IssuesFound" and finding.detail.startswith("CPUBottleneck: 60 of 60 datapoints")
    recommendations = finding.report["Details"]["Recommendations"]
    assert recommendations[0].startswith("8 cores, 1 dataloader worker (as the job logged), fewer than")
    assert any(r.startswith("CPUBottleneck: CPU bottlenecks can happen") for r in recommendations)
    assert recommendations[-1].startswith("the job kept about one of its 8 cores busy (p95 98% of a core) while")
    reports = finding.report["Details"]["Rules"]  # written as profiler-reports/<Rule>.json
    assert set(reports) == {rule.name for rule in SUB_RULES}
    assert reports["CPUBottleneck"]["RuleTriggered"] == 1 and "Recommendation" in reports["CPUBottleneck"]
    assert reports["IOBottleneck"]["Status"] == "NoIssuesFound" and "Recommendation" not in reports["IOBottleneck"]


def test_profiler_report_is_quiet_on_a_healthy_run_but_still_advises_a_cpu_bound_one() -> None:
    finding = judge("ProfilerReport", make_timeline(60, cpu=97, job_cpu=195), JobFacts(input_mode="cached"))
    assert finding.status == "NoIssuesFound"
    assert finding.detail.startswith("none of CPUBottleneck, IOBottleneck, LowGPUUtilization, StepOutlier")
    assert finding.detail.endswith("Recommendations: the job kept all 2 cores busy (p95 195% of a core, no GPU): it "
                                   "is CPU-bound, and more cores or a GPU instance would shorten it")


def test_profiler_report_tells_a_job_starved_by_other_work_from_a_busy_one() -> None:
    finding = judge("ProfilerReport", make_timeline(60, cpu=100, job_cpu=40), JobFacts(input_mode="cached"))
    assert finding.status == "NoIssuesFound"
    assert finding.report["Details"]["Recommendations"] == [
        "other work kept the job's 2 cores busy (CPU p50 100%) while the job itself used p95 40% of a core: it "
        "competed for CPU (fewer parallel jobs would help)"]


# ---------------------------------------------------------------------------------------------- statuses
def definition_rules(**overrides: dict[str, Any]) -> dict[str, Any]:
    """ProfilerRuleConfigurations as the definition has them: the SDK classes' parameters, as strings."""
    configs = []
    for name in ("ProfilerReport", "LowGPUUtilization", "CPUBottleneck", "IOBottleneck", "BatchSize",
                 "StepOutlier", "GPUMemoryIncrease", "OverallSystemUsage"):
        parameters = getattr(aws_rules, name)(**overrides.get(name, {})).rule_parameters
        configs.append({"RuleConfigurationName": name, "RuleEvaluatorImage": "x.dkr.ecr/sagemaker-debugger-rules",
                        "RuleParameters": {key: str(value) for key, value in parameters.items()}})
    return {"ProfilerConfig": {"S3OutputPath": "s3://b/p", "ProfilingIntervalInMilliseconds": 500},
            "ProfilerRuleConfigurations": configs}


def test_statuses_are_shaped_like_describe_training_job(tmp_path) -> None:
    job_dir = tmp_path / "trainmodel-exec1-abc"
    job_dir.mkdir()
    request = definition_rules(CPUBottleneck={"patience": 5})
    items = evaluate_profiler_rules(request, make_timeline(30, cpu=99, gpu=1), job_dir)
    assert [i["RuleConfigurationName"] for i in items] == [c["RuleConfigurationName"] for c in
                                                            request["ProfilerRuleConfigurations"]]
    by_name = {i["RuleConfigurationName"]: i for i in items}
    assert by_name["CPUBottleneck"]["RuleEvaluationStatus"] == "IssuesFound"
    assert by_name["ProfilerReport"]["RuleEvaluationStatus"] == "NoIssuesFound"  # its own defaults: patience 1000
    assert by_name["OverallSystemUsage"]["RuleEvaluationStatus"] == "NoIssuesFound"
    for item in items:
        assert set(item) == {"RuleConfigurationName", "RuleEvaluationJobArn", "RuleEvaluationStatus",
                             "StatusDetails", "LastModifiedTime"}
        assert re.fullmatch(r"arn:aws:sagemaker:us-east-1:000000000000:processing-job/trainmodel-exec1-abc-"
                            r"[A-Za-z]+-[0-9a-f]{8}", item["RuleEvaluationJobArn"])
        assert 0 < len(item["StatusDetails"]) <= 1024


def test_rules_that_cannot_judge_report_error_with_why(tmp_path) -> None:
    request = {"ProfilerRuleConfigurations": [
        {"RuleConfigurationName": "LoadBalancing", "RuleParameters": {"rule_to_invoke": "LoadBalancing"}},
        {"RuleConfigurationName": "CPUBottleneck", "RuleParameters": {"rule_to_invoke": "CPUBottleneck",
                                                                       "treshold": "5"}},
        {"RuleConfigurationName": "ProfilerReport", "RuleParameters": {"rule_to_invoke": "ProfilerReport",
                                                                        "CPUBottleneck_nope": "1"}},
        {"RuleConfigurationName": "IOBottleneck", "RuleParameters": {"rule_to_invoke": "IOBottleneck"}}]}
    broken = make_timeline(3)
    broken.error = "sampling stopped after 3 samples: PermissionError: /proc"
    details = [(r.finding.status, r.finding.detail) for r in run_rules(request, broken, tmp_path)]
    assert details[0] == ("Error", details[0][1]) and "LoadBalancing is not evaluated by the local engine" in \
        details[0][1]
    assert details[1] == ("Error", "RuleParameters: CPUBottleneck takes no parameter treshold (it takes threshold, "
                                   "gpu_threshold, cpu_threshold, patience, scan_interval_us)")
    assert details[2][0] == "Error" and "'CPUBottleneck_nope': expected <Rule>_<parameter>" in details[2][1]
    assert details[3] == ("Error", "the local profiler failed, so the rule cannot judge the job: sampling stopped "
                                   "after 3 samples: PermissionError: /proc")
    nothing = run_rules(request, None, tmp_path, unavailable="the profiler is off")[3].finding
    assert (nothing.status, nothing.detail) == ("Error", "the profiler is off")


def test_a_finding_says_in_which_epoch_it_was_seen(tmp_path) -> None:
    stamps = [START + 10, START + 20, START + 30]  # three epochs ended at 10, 20 and 30 s
    metrics = {"Metrics": {"train:loss": [{"Value": 1.0, "Timestamp": _iso(t)} for t in stamps]}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    facts = read_job_facts(tmp_path)
    late_bottleneck = make_timeline(50, cpu=99, gpu=lambda i: 90 if i < 30 else 1)  # from 15 s on
    finding = judge("CPUBottleneck", late_bottleneck, facts, patience="10", threshold="20",
                    scan_interval_us="5000000")
    assert finding.status == "IssuesFound" and finding.detail.endswith("by 20 s into the job (epoch 2)")


def _iso(timestamp: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC).isoformat()
