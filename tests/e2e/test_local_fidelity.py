"""What fails on SageMaker fails locally, the same way: each case a real execution through the real engine.

The definition always comes from `get_pipeline` (built in-process into the test's workspace, which is what `upsert`
does); a case that needs a broken definition edits its JSON before `LocalTarget.upsert`, as a definition uploaded
with a mistake the service only finds at run time. Executions run through the real CLI in subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

RUN_TIMEOUT_S = 300
ONE_TRIAL = ("--param", "MaxTuningJobs=1", "--param", "MaxParallelTuningJobs=1")  # half the tuning cost
AFTER_THE_GATE = ("ImageClassifier-RegisterModel", "ServingModel-CreateModel", "EndpointConfig", "Endpoint")
NEVER_MATCHING_REGEX = "validation_acc_never_printed=([0-9.]+)"
MISSING_PATH = "multiclass_classification_metrics.no_such_metric.value"
# Building a definition in-process: the SDK says that nothing starts inside a PipelineSession; we know.
pytestmark = pytest.mark.filterwarnings("ignore:Running within a PipelineSession:UserWarning")


def steps_by_name(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in summary["steps"]}


def step_named(definition: dict[str, Any], name: str) -> dict[str, Any]:
    found = [step for step in definition["Steps"] if step["Name"] == name]
    assert len(found) == 1, f"the definition has no single step {name}: {[s['Name'] for s in definition['Steps']]}"
    return found[0]


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Polls `predicate` until it returns something truthy; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def upsert(local_cli, tiny_config: Path) -> Callable[..., None]:
    """`upsert(edit=None)`: builds the definition with `get_pipeline` into the test's workspace (code uploads
    included), lets `edit` change its JSON, and upserts it with `LocalTarget.upsert`."""

    from pipelines.building import build_definition  # the SDK: imported when a test runs, not at collection
    from pipelines.config import load_config
    from pipelines.local.target import LocalTarget
    from pipelines.local.workspace import Workspace
    from pipelines.session import Uploads, build_pipeline_session

    def build_and_upsert(edit: Callable[[dict[str, Any]], None] | None = None) -> None:
        environ = {**local_cli.env, "PIPELINE_LOCAL_WORKSPACE": str(local_cli.workspace)}
        config = load_config(tiny_config, environ=environ)
        workspace = Workspace.open(config.local.workspace)
        built = build_definition(config, build_pipeline_session(config, Uploads.WORKSPACE,
                                                                workspace_s3=workspace.s3_root))
        assert built.problems == []
        definition = json.loads(built.text)
        if edit is not None:
            edit(definition)
        target = LocalTarget(config, workspace)
        try:
            target.upsert(json.dumps(definition), "fidelity test")
        finally:
            target.store.close()

    return build_and_upsert


def start_failing(cli, *params: str) -> dict[str, Any]:
    """`start --wait --json` of an execution that must fail: exit 1 and a Failed summary."""
    summary = cli.json("start", "--wait", "--json", *params, expect_rc=1, timeout=RUN_TIMEOUT_S)
    assert summary["status"] == "Failed", summary
    return summary


def assert_nothing_registered_or_deployed(cli) -> None:
    assert cli.json("models", "--json") == [], "a model package was registered"
    assert cli.json("endpoints", "--json") == [], "an endpoint was deployed"


# ---------------------------------------------------------------------------------------------- a broken definition
def test_metric_regex_that_never_matches_fails_tuning_naming_the_metric_and_regex(local_cli, upsert, digits_input):
    def never_matching_objective(definition: dict[str, Any]) -> None:
        spec = step_named(definition, "TuneHyperparameters")["Arguments"]["TrainingJobDefinition"]
        metrics = spec["AlgorithmSpecification"]["MetricDefinitions"]
        objective = [m for m in metrics if m["Name"] == "validation:accuracy"]
        assert len(objective) == 1, metrics
        objective[0]["Regex"] = NEVER_MATCHING_REGEX

    upsert(never_matching_objective)
    summary = start_failing(local_cli, "--param", f"InputDataUrl={digits_input}", *ONE_TRIAL)
    steps = steps_by_name(summary)
    assert list(steps) == ["PrepareData", "TuneHyperparameters"], "nothing after the failed step may run"
    assert steps["PrepareData"]["status"] == "Succeeded"
    tuning = steps["TuneHyperparameters"]
    assert tuning["status"] == "Failed"
    assert "validation:accuracy" in tuning["failure_reason"] and NEVER_MATCHING_REGEX in tuning["failure_reason"]
    assert summary["failure_reason"].startswith("Step failure: One or multiple steps failed. "
                                                "Step TuneHyperparameters (Tuning) failed: ")
    assert tuning["failure_reason"] in summary["failure_reason"]


def test_jsonget_path_missing_from_evaluation_json_fails_check_accuracy_naming_the_path(local_cli, upsert,
                                                                                       digits_input):
    def missing_path(definition: dict[str, Any]) -> None:
        condition = step_named(definition, "CheckAccuracy")["Arguments"]["Conditions"][0]
        condition["LeftValue"]["Std:JsonGet"]["Path"] = MISSING_PATH

    upsert(missing_path)
    summary = start_failing(local_cli, "--param", f"InputDataUrl={digits_input}", *ONE_TRIAL)
    steps = steps_by_name(summary)
    assert list(steps) == ["PrepareData", "TuneHyperparameters", "TrainModel", "EvaluateModel", "CheckAccuracy"]
    assert [s["status"] for s in summary["steps"][:4]] == ["Succeeded"] * 4
    check = steps["CheckAccuracy"]
    assert check["status"] == "Failed"
    assert MISSING_PATH in check["failure_reason"] and "EvaluationReport" in check["failure_reason"]
    assert "Step CheckAccuracy (Condition) failed" in summary["failure_reason"]
    assert_nothing_registered_or_deployed(local_cli)


# ---------------------------------------------------------------------------------------------- the gate
def test_accuracy_threshold_above_any_accuracy_fails_at_accuracy_too_low_registering_nothing(local_cli, upsert,
                                                                                            digits_input):
    upsert()
    summary = start_failing(local_cli, "--param", f"InputDataUrl={digits_input}", "--param",
                            "AccuracyThreshold=1.01", *ONE_TRIAL)
    steps = steps_by_name(summary)
    assert set(steps) == {"PrepareData", "TuneHyperparameters", "TrainModel", "EvaluateModel", "ExplainModel",
                          "CheckAccuracy", "AccuracyTooLow"}
    # The model that failed the gate is explained too: the FailStep waits for ExplainModel
    assert steps["ExplainModel"]["status"] == "Succeeded"
    assert list(steps).index("ExplainModel") < list(steps).index("AccuracyTooLow")
    assert steps["CheckAccuracy"]["status"] == "Succeeded" and steps["CheckAccuracy"]["details"] == {"Outcome": False}
    execution_id = summary["arn"].rsplit("/", 1)[-1]
    reports = [p for p in (local_cli.workspace / "s3").rglob("evaluation.json") if execution_id in p.parts]
    assert len(reports) == 1, reports
    accuracy = json.loads(reports[0].read_text())["multiclass_classification_metrics"]["accuracy"]["value"]
    message = (f"Test accuracy {accuracy} is below the AccuracyThreshold of 1.01 - the model was not registered or "
               f"deployed.")
    assert steps["AccuracyTooLow"]["status"] == "Failed"
    assert steps["AccuracyTooLow"]["failure_reason"] == message
    assert summary["failure_reason"] == message  # a Fail step's message is the execution's failure reason
    assert_nothing_registered_or_deployed(local_cli)


# ---------------------------------------------------------------------------------------------- the container fails
def test_dataset_with_one_class_fails_prepare_data_with_the_tail_of_preprocess_log(local_cli, upsert, digits_input,
                                                                                   tmp_path):
    one_class = tmp_path / "one-class"
    shutil.copytree(digits_input / "3-three", one_class / "3-three")
    upsert()
    summary = start_failing(local_cli, "--param", f"InputDataUrl={one_class}")
    steps = steps_by_name(summary)
    assert list(steps) == ["PrepareData"]
    reason = steps["PrepareData"]["failure_reason"]
    assert reason.startswith("AlgorithmError: exit code 2, last lines:\n"), reason
    assert "preprocess: error: need at least 2 classes with usable images, found 1 (3-three)" in reason
    assert "Step PrepareData (Processing) failed: AlgorithmError" in summary["failure_reason"]
    log = local_cli.run("logs", "PrepareData").stdout
    assert "need at least 2 classes" in log


def test_empty_input_folder_fails_prepare_data_with_no_s3_objects_found(local_cli, upsert, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    upsert()
    summary = start_failing(local_cli, "--param", f"InputDataUrl={empty}")
    steps = steps_by_name(summary)
    assert list(steps) == ["PrepareData"]
    reason = steps["PrepareData"]["failure_reason"]
    assert reason.startswith(f'ClientError: No S3 objects found under S3 URL "{empty}"'), reason
    assert not any(empty.iterdir()), "an InputDataUrl the user passed is never filled in"


# ---------------------------------------------------------------------------------------------- kill and retry
def training_processes(job_dir: Path) -> list[psutil.Process]:
    """The train.py process(es) of one job: python, running inside `job_dir` (children of one another excluded)."""
    root, found = str(job_dir.resolve()), []
    for process in psutil.process_iter():
        try:
            cmdline = process.cmdline()
            inside = process.cwd().startswith(root) or any(root in part for part in cmdline)
            if inside and "python" in os.path.basename(cmdline[0]) and any(p.endswith("train.py") for p in cmdline):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, IndexError):
            continue
    pids = {p.pid for p in found}
    return [p for p in found if p.ppid() not in pids]


def job_dirs(workspace: Path, execution_id: str, step: str) -> set[str]:
    return {p.name for p in (workspace / "jobs" / execution_id / step).glob("*") if p.is_dir()}


def test_killed_training_job_fails_train_model_and_retry_resumes_from_it(local_cli, upsert, digits_input):
    upsert()
    started = local_cli.json("start", "--no-wait", "--json", "--param", f"InputDataUrl={digits_input}", *ONE_TRIAL)
    assert started["status"] == "Executing", started
    execution_id = started["arn"].rsplit("/", 1)[-1]
    train_root = local_cli.workspace / "jobs" / execution_id / "TrainModel"

    next_status_check = time.monotonic() + 5

    def training_log_has_a_line() -> Path | None:
        nonlocal next_status_check
        for log in train_root.glob("*/job.log"):
            if log.read_text(errors="replace").strip():
                return log
        if time.monotonic() > next_status_check:  # now and then (a CLI call costs CPU): did it end without it?
            next_status_check = time.monotonic() + 5
            if local_cli.json("status", "--json")["status"] != "Executing":
                raise AssertionError(f"the execution ended before TrainModel logged:\n{local_cli.run('status').stdout}")
        return None

    log = wait_for("TrainModel's job.log to get its first line", training_log_has_a_line, timeout=RUN_TIMEOUT_S,
                   interval=0.2)
    killed_job = log.parent.name
    trainer = wait_for(f"the train.py process of {killed_job}", lambda: training_processes(log.parent), timeout=10)
    assert len(trainer) == 1, [p.cmdline() for p in trainer]
    trainer[0].send_signal(signal.SIGKILL)

    def failed() -> dict[str, Any] | None:
        summary = local_cli.json("status", "--json")
        return summary if summary["status"] != "Executing" else None

    summary = wait_for("the execution to fail after the kill", failed, timeout=60, interval=0.5)
    assert summary["status"] == "Failed", summary
    steps = steps_by_name(summary)
    assert list(steps) == ["PrepareData", "TuneHyperparameters", "TrainModel"]
    reason = steps["TrainModel"]["failure_reason"]
    assert steps["TrainModel"]["status"] == "Failed"
    assert reason.startswith("AlgorithmError: exit code -9 (killed by SIGKILL)"), reason
    assert "Step TrainModel (Training) failed" in summary["failure_reason"]
    kept = {name: steps[name] for name in ("PrepareData", "TuneHyperparameters")}
    kept_jobs = {step: job_dirs(local_cli.workspace, execution_id, step) for step in kept}

    retried = local_cli.json("retry", "--wait", "--json", timeout=RUN_TIMEOUT_S)
    assert retried["status"] == "Succeeded", retried.get("failure_reason")
    assert retried["arn"] == started["arn"], "a retry resumes the same execution"
    after = steps_by_name(retried)
    assert all(step["status"] == "Succeeded" for step in retried["steps"]), retried["steps"]
    assert set(AFTER_THE_GATE) <= set(after)
    for name, before in kept.items():  # reused, not re-run: same job, same start, same results
        assert after[name] == before, f"{name} was re-run by the retry"
        assert job_dirs(local_cli.workspace, execution_id, name) == kept_jobs[name], f"{name} ran a new job"
    new_job = after["TrainModel"]["details"]["TrainingJobName"]
    assert new_job != killed_job
    assert job_dirs(local_cli.workspace, execution_id, "TrainModel") == {killed_job, new_job}
    assert [row["arn"] for row in local_cli.json("executions", "--json")] == [started["arn"]]
    assert [e["status"] for e in local_cli.json("endpoints", "--json")] == ["InService"]
