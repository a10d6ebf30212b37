"""ReportData from both targets: the local state database and workspace (written by report_runs.LocalRuns in the shapes
a real run leaves), and SageMaker's Describe*/List* responses (botocore Stubber) with S3 objects (moto)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from report_runs import (
    ADVICE,
    BUCKET,
    CLASSES,
    DEBUG_RULES,
    PIPELINE,
    PIPELINE_ARN,
    T0,
    LocalRuns,
    history,
    png_bytes,
    system_metric_lines,
    timeline_document,
)
from sagemaker_responses import (
    EXECUTION,
    JOB,
    REGION,
    arn,
    listed_step,
    put_s3_outputs,
    stub_sagemaker,
    tar_gz,
)

from pipelines.local.endpoints import EndpointManager
from pipelines.local.registry import ModelRegistry
from pipelines.report.profiling import parse_system_metrics
from pipelines.report.sagemaker import SageMakerCollector
from pipelines.targets import TargetError


# ---------------------------------------------------------------------------------------------- local target
def test_local_succeeded_run_fills_every_section(local_runs: LocalRuns) -> None:
    local_runs.add_succeeded()
    data = local_runs.target().report_data("goodrun00001")

    assert data.missing == {}
    assert (data.target, data.pipeline_name, data.status, data.execution_id) == \
        ("local", PIPELINE, "Succeeded", "goodrun00001")
    steps = {s.name: s for s in data.steps}
    assert list(steps)[:3] == ["PrepareData", "TuneHyperparameters", "TrainModel"]
    assert steps["TrainModel"].duration_s == pytest.approx(30.5)
    assert steps["EvaluateModel"].depends_on == ["TrainModel"]  # PrepareData -> EvaluateModel is implied
    assert steps["ServingModel-CreateModel"].depends_on == ["ImageClassifier-RegisterModel"]
    assert steps["AccuracyTooLow"].status == "NotRun"
    assert steps["AccuracyTooLow"].detail == "CheckAccuracy was true"
    assert steps["AccuracyTooLow"].branch == ("CheckAccuracy", False)
    assert steps["CheckAccuracy"].detail == "outcome: true"

    tuning = data.tuning
    assert [t.best for t in tuning.trials] == [True, False, False]
    assert tuning.trials[0].hyperparameters == {"lr": "0.0011555", "batch_size": "64", "epochs": "3"}
    assert tuning.trials[2].objective is None and "loss is nan" in tuning.trials[2].failure_reason
    assert (tuning.objective_metric, tuning.objective_type, tuning.log_scale) == \
        ("validation:accuracy", "Maximize", {"lr"})

    training = data.training
    assert training.hyperparameters == {"arch": "resnet18", "lr": "0.0011555", "batch_size": "64"}
    assert training.final_metrics == {"validation:accuracy": 0.91, "train:loss": 0.5}
    assert training.curves.epochs == [1, 2, 3]
    assert training.curves.series["validation_accuracy"] == [h["validation_accuracy"] for h in history()]


def test_local_rules_profiler_and_recommendations(local_runs: LocalRuns) -> None:
    local_runs.add_succeeded()
    data = local_runs.target().report_data("goodrun00001")

    assert [(r.name, r.status) for r in data.debugger_rules] == [
        ("LossNotDecreasing", "IssuesFound"), ("ExplodingTensor", "NoIssuesFound"), ("Overfit", "not evaluated")]
    assert "step 120" in data.debugger_rules[0].detail
    assert data.profiler_rules[1].parameters == {"threshold": "50"}  # rule_to_invoke is no parameter to show
    kinds = {(s.kind, s.name): len(s.points) for s in data.system_metrics.series}
    assert kinds == {("cpu", "cpu0"): 40, ("cpu", "cpu1"): 40, ("io", "cpu0"): 40, ("io", "cpu1"): 40,
                     ("memory", "MemoryUsedPercent"): 40, ("job_cpu", "JobCPUPercent"): 40, ("gpu", "gpu0"): 40,
                     ("gpu_memory", "gpu0"): 40}
    assert data.system_metrics.of("cpu")[0].points[:2] == [(0.0, 20.0), (0.5, 21.0)]
    assert data.system_metrics.source == "system_metrics.json in the job's directory"
    # ProfilerReport's own list, then the triggered rules' reports (GPUMemoryIncrease did not trigger)
    assert data.recommendations == [*ADVICE, "CPUBottleneck: consider a larger instance"]


def test_local_recommendations_from_the_status_detail_and_metrics_from_the_profiler_path(
        local_runs: LocalRuns) -> None:
    """Without profiler-report.json the advice comes from ProfilerReport's detail; without the job's
    system_metrics.json the timeline comes from the profiler output path (Debugger's layout)."""
    local_runs.add_succeeded()
    job = "trainmodel-goodrun00001"
    local_runs.workspace.path_for(f"{BUCKET}/models/{job}/rule-output/ProfilerReport/profiler-output/"
                                  "profiler-report.json").unlink()
    (local_runs.workspace.jobs_root / "goodrun00001/TrainModel" / job / "system_metrics.json").unlink()
    prefix = f"{BUCKET}/profiler-output/{job}/profiler-output/system"
    local_runs.write(f"{prefix}/incremental/2026112008/1790000000.algo-1.json", system_metric_lines(6))
    data = local_runs.target().report_data("goodrun00001")

    assert data.recommendations == [*ADVICE, "CPUBottleneck: consider a larger instance"]
    assert (data.system_metrics.source, len(data.system_metrics.of("cpu")[1].points)) == (prefix, 6)


def test_local_evaluation_model_and_endpoint(local_runs: LocalRuns) -> None:
    local_runs.add_succeeded()
    target = local_runs.target()
    ModelRegistry(local_runs.store).update_approval(
        "arn:aws:sagemaker:us-east-1:000000000000:model-package/image-classifier/1", "Approved")
    data = target.report_data("goodrun00001")

    evaluation = data.evaluation
    assert (evaluation.accuracy, evaluation.macro_f1, evaluation.weighted_f1, evaluation.num_images) == \
        (0.95, 0.87, 0.88, 30)
    assert (evaluation.threshold, evaluation.gate_passed) == (0.9, True)
    assert evaluation.class_names == CLASSES and evaluation.matrix == [[9, 1, 0], [0, 10, 0], [2, 0, 8]]
    assert evaluation.matrix_png == png_bytes()
    assert [c.name for c in evaluation.per_class] == CLASSES
    assert data.model.approval == "Approved"  # as it is now, not as it was registered
    assert (data.model.version, data.model.accuracy) == (1, 0.95)
    assert data.endpoint.status == "Deleted" and "no longer exists" in data.endpoint.note
    assert data.endpoint.instance_type == "ml.m5.large"


def test_local_live_endpoint_has_its_url_and_says_when_it_serves_a_later_deployment(local_runs: LocalRuns) -> None:
    local_runs.add_succeeded()
    target = local_runs.target()
    EndpointManager(target.workspace, target.store)  # its table
    with local_runs.store.transaction() as db:  # as a later execution's deployment leaves it (server not started)
        db.execute("INSERT INTO endpoints (name, arn, config_name, model_dir, entry_point, environment, port, status, "
                   "url, created, updated) VALUES ('image-classifier', 'arn:e', 'image-classifier-later', '/m', "
                   "'code/inference.py', '{}', 8123, 'InService', 'http://127.0.0.1:8123', 'now', 'now')")
    endpoint = target.report_data("goodrun00001").endpoint

    assert (endpoint.status, endpoint.url) == ("InService", "http://127.0.0.1:8123")
    assert "now serves image-classifier-later" in endpoint.note


def test_latest_execution_is_the_default_and_an_arn_selects_too(local_runs: LocalRuns) -> None:
    local_runs.add_succeeded()
    local_runs.add_failed_at_prepare()  # started a day later
    assert local_runs.target().report_data(None).execution_id == "badrun000001"
    assert local_runs.target().report_data(f"{PIPELINE_ARN}/execution/goodrun00001").status == "Succeeded"


def test_unknown_execution_is_a_clear_error(local_runs: LocalRuns) -> None:
    local_runs.add_succeeded()
    with pytest.raises(TargetError, match="no local execution 'nope'.*latest: goodrun00001"):
        local_runs.target().report_data("nope")


def test_failed_execution_says_why_each_section_is_empty(local_runs: LocalRuns) -> None:
    local_runs.add_failed_at_prepare()
    data = local_runs.target().report_data("badrun000001")

    assert data.failure_reason.startswith("Step PrepareData failed")
    assert data.steps[0].status == "Failed" and "No S3 objects" in data.steps[0].failure_reason
    assert all(s.status == "NotRun" for s in data.steps[1:])
    assert data.missing["tuning"] == "TuneHyperparameters did not run: the execution failed before it"
    assert data.missing["debugger"] == "TrainModel did not run: the execution failed before it"
    assert data.missing["evaluation"] == "EvaluateModel did not run: the execution failed before it"
    assert data.missing["endpoint"] == "Endpoint did not run: the execution failed before it"
    assert (data.tuning, data.training, data.evaluation, data.model, data.endpoint) == (None,) * 5


def test_gate_that_failed_leaves_no_model_and_says_which_way_it_went(local_runs: LocalRuns) -> None:
    local_runs.add_succeeded(accuracy=0.5)
    local_runs.add_step("goodrun00001", "AccuracyTooLow", "Failed", 5,
                        failure_reason="Test accuracy 0.5 is below the AccuracyThreshold of 0.9")
    data = local_runs.target().report_data("goodrun00001")

    assert data.evaluation.gate_passed is False
    assert data.missing["model"] == "ImageClassifier-RegisterModel did not run: CheckAccuracy was false"
    assert {s.name: s.status for s in data.steps}["AccuracyTooLow"] == "Failed"


def test_rules_without_results_are_not_evaluated(local_runs: LocalRuns) -> None:
    local_runs.add_succeeded(with_rule_results=False)
    data = local_runs.target().report_data("goodrun00001")

    assert [r.name for r in data.debugger_rules] == DEBUG_RULES
    assert {r.status for r in data.debugger_rules + data.profiler_rules} == {"not evaluated"}
    assert data.debugger_rules[0].detail == "no evaluation status was recorded for this training job"
    assert data.recommendations == ADVICE + ["CPUBottleneck: consider a larger instance"]  # the report files


def test_curves_come_from_output_tar_gz_then_from_the_logged_metrics(local_runs: LocalRuns) -> None:
    local_runs.add_succeeded()
    job_dir = local_runs.workspace.jobs_root / "goodrun00001/TrainModel/trainmodel-goodrun00001"
    (job_dir / "opt_ml/output/data/history.json").unlink()
    archive = f"{BUCKET}/models/trainmodel-goodrun00001/output/output.tar.gz"
    local_runs.write(archive, tar_gz({"data/history.json": json.dumps(history(2))}))
    curves = local_runs.target().report_data("goodrun00001").training.curves
    assert curves.epochs == [1, 2] and curves.source == f"history.json in {archive}"

    local_runs.workspace.path_for(archive).unlink()
    (job_dir / "metrics.json").write_text(json.dumps({"Metrics": {
        "train:loss": [{"Value": 2.0}, {"Value": 1.0}, {"Value": 0.5}], "validation:loss": [{"Value": 2.2}]}}))
    curves = local_runs.target().report_data("goodrun00001").training.curves
    assert curves.series == {"train_loss": [2.0, 1.0, 0.5], "validation_loss": [2.2, None, None]}

    (job_dir / "metrics.json").unlink()
    training = local_runs.target().report_data("goodrun00001").training
    assert training.curves is None and f"history.json in {archive}" in training.curves_missing


def test_evaluation_falls_back_to_the_property_file(local_runs: LocalRuns) -> None:
    local_runs.add_succeeded()
    folder = local_runs.workspace.path_for(f"{BUCKET}/goodrun00001/EvaluateModel/output/evaluation")
    for name in ("evaluation.json", "confusion_matrix.json", "confusion_matrix.png"):
        (folder / name).unlink()
    evaluation = local_runs.target().report_data("goodrun00001").evaluation

    assert (evaluation.source, evaluation.accuracy) == ("property file", 0.95)
    assert evaluation.matrix == [[9, 0, 0], [0, 9, 0], [0, 0, 9]]  # evaluation.json's {actual: {predicted: n}}
    assert evaluation.matrix_png is None


def test_system_metrics_in_debuggers_format_and_the_local_engines() -> None:
    lines = system_metric_lines(2).encode()
    assert len(parse_system_metrics(lines)) == 10
    assert len(parse_system_metrics(lines + b'{"Type": "cpu", "Na')) == 10  # a line being written right now
    as_list = json.dumps([json.loads(line) for line in lines.decode().splitlines()]).encode()
    assert parse_system_metrics(as_list) == parse_system_metrics(lines)
    assert parse_system_metrics(json.dumps(timeline_document(3)).encode())[:3] == [
        ("cpu", "cpu0", T0, 20.0), ("cpu", "cpu1", T0, 90.0), ("io", "cpu0", T0, 1.0)]
    assert parse_system_metrics(b"") == [] and parse_system_metrics(None) == []


def test_system_metrics_the_local_profiler_writes_are_read_in_both_layouts(tmp_path) -> None:
    from pipelines.local.profiling import timeline
    sample = timeline.Sample(Timestamp=T0, CPUUtilization={"cpu0": 50.0}, MemoryUsedPercent=40.0, JobCPUPercent=99.0)
    recorded = timeline.Timeline(cores=[0], interval_ms=500, samples=[sample])
    from_job_dir = parse_system_metrics(json.dumps(recorded.to_json()).encode())
    assert sorted(from_job_dir) == [("cpu", "cpu0", T0, 50.0), ("job_cpu", "JobCPUPercent", T0, 99.0),
                                    ("memory", "MemoryUsedPercent", T0, 40.0)]
    written = recorded.write_sagemaker_layout(tmp_path)
    from_profiler_path = [point for path in written for point in parse_system_metrics(path.read_bytes())]
    assert sorted(from_profiler_path) == [("cpu", "cpu0", T0, 50.0), ("memory", "MemoryUsedPercent", T0, 40.0)]


# ---------------------------------------------------------------------------------------------- sagemaker target
@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def test_sagemaker_report_from_describe_responses_and_s3_outputs(aws: None) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    put_s3_outputs(s3)
    client = boto3.client("sagemaker", region_name=REGION)
    with Stubber(client) as stubber:
        stub_sagemaker(stubber)
        data = SageMakerCollector(client, s3, PIPELINE, REGION).collect(EXECUTION)
        stubber.assert_no_pending_responses()

    assert (data.target, data.execution_id, data.parameters) == ("sagemaker", "cloudrun0001",
                                                                 {"AccuracyThreshold": "0.9"})
    assert data.ended == "2026-11-20T08:30:00+00:00"
    assert "steps" not in data.missing and "tuning" not in data.missing
    steps = {s.name: s for s in data.steps}
    assert (steps["TrainModel"].status, steps["TrainModel"].duration_s) == ("Succeeded", 40.0)
    assert steps["PrepareData"].status == "NotRun"  # not listed: cached or never run, as the service says
    assert steps["AccuracyTooLow"].detail == "CheckAccuracy was true"
    assert [t.best for t in data.tuning.trials] == [True, False, False]
    assert data.training.hyperparameters == {"lr": "0.001", "batch_size": "64"}
    assert data.training.duration_s == 120.0 and data.training.curves.epochs == [1, 2, 3, 4]
    assert [(r.name, r.status) for r in data.debugger_rules] == [
        ("LossNotDecreasing", "not evaluated"), ("ExplodingTensor", "not evaluated"), ("Overfit", "IssuesFound")]
    assert data.profiler_rules[0].status == "NoIssuesFound"
    assert len(data.system_metrics.of("cpu")[0].points) == 10
    assert data.recommendations == ["CPUBottleneck: Consider increasing the number of data loaders"]
    assert (data.evaluation.accuracy, data.evaluation.gate_passed, data.evaluation.matrix_png) == (0.96, True, None)
    assert (data.model.version, data.model.approval, data.model.accuracy) == (4, "Approved", 0.96)
    assert data.endpoint.url == "https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/image-classifier/" \
                                "invocations"
    assert (data.endpoint.status, data.endpoint.instance_type, data.endpoint.note) == ("InService", "ml.m5.large",
                                                                                      None)
    # ExplainModel's reports from its own output URIs in S3; the top-loss overlay was not uploaded
    assert data.explanation.verdict.startswith("class 2-two has 4.8% of the training images")
    assert [s.overlay is not None for s in data.explanation.samples] == [True] * 6
    assert [t.overlay for t in data.explanation.top_loss] == [None]


def test_sagemaker_step_that_cannot_be_described_says_so(aws: None) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    client = boto3.client("sagemaker", region_name=REGION)
    execution = {"PipelineExecutionArn": EXECUTION}
    with Stubber(client) as stubber:
        stubber.add_response("describe_pipeline_execution", {"PipelineExecutionStatus": "Failed",
                                                             "FailureReason": "Step TrainModel failed"}, execution)
        stubber.add_response("list_pipeline_parameters_for_execution", {"PipelineParameters": []}, execution)
        stubber.add_client_error("describe_pipeline_definition_for_execution", "AccessDeniedException")
        stubber.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": [
            listed_step("TrainModel", "TrainingJob", {"Arn": arn("training-job", JOB)}, 10, status="Failed")]},
            execution)
        stubber.add_client_error("describe_training_job", "AccessDeniedException", "not allowed")
        data = SageMakerCollector(client, s3, PIPELINE, REGION).collect(EXECUTION)

    assert [(s.name, s.type, s.status) for s in data.steps] == [("TrainModel", "Training", "Failed")]
    assert data.missing["training"] == "TrainModel failed, but its training job could not be described"
    assert data.missing["evaluation"] == "no evaluation (a Processing step with a PropertyFile) step ran, and the " \
                                         "execution's definition could not be read"


def test_sagemaker_latest_and_id_references(aws: None) -> None:
    client = boto3.client("sagemaker", region_name=REGION)
    collector = SageMakerCollector(client, boto3.client("s3", region_name=REGION), PIPELINE, REGION)
    with Stubber(client) as stubber:
        stubber.add_response("list_pipeline_executions", {"PipelineExecutionSummaries": []}, {
            "PipelineName": PIPELINE, "SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 1})
        with pytest.raises(TargetError, match="has no executions yet"):
            collector.resolve(None)
        stubber.add_response("describe_pipeline", {"PipelineArn": arn("pipeline", PIPELINE)},
                             {"PipelineName": PIPELINE})
        assert collector.resolve("cloudrun0001") == EXECUTION
    assert collector.resolve(EXECUTION) == EXECUTION


def test_the_batch_transform_section_counts_the_out_files_and_their_predicted_classes(local_runs) -> None:
    local_runs.add_succeeded()
    batch = local_runs.target().report_data("goodrun00001").batch
    assert batch is not None
    assert (batch.job_name, batch.status, batch.outputs, batch.unreadable) == (
        "batchtransform-goodrun00001", "Completed", 6, 1)
    assert batch.predictions == {"0-zero": 3, "1-one": 1, "2-two": 1}
    assert batch.folder_agreement == 4 / 5  # test/<class>/<image>: the folder is the true class
    assert batch.output_uri == "s3://local-pipeline/image-classifier/goodrun00001/batch-output"


def test_a_run_that_stopped_early_says_why_the_batch_section_is_empty(local_runs) -> None:
    local_runs.add_failed_at_prepare()
    data = local_runs.target().report_data("badrun000001")
    assert data.batch is None
    assert data.missing["batch"] == "BatchTransform did not run: the execution failed before it"


def test_a_cache_hit_reads_the_jobs_of_the_execution_it_reused_and_says_so(local_runs: LocalRuns) -> None:
    local_runs.add_succeeded("goodrun00001")
    store = local_runs.store
    local_runs.add_execution("cachedrun001", "Succeeded", "2026-11-21")
    source = f"{PIPELINE_ARN}/execution/goodrun00001"
    for step in store.list_steps("goodrun00001"):
        local_runs.add_step("cachedrun001", step.name, step.status, 0, step.properties,
                            property_files=step.property_files)
        if step.name in ("PrepareData", "TuneHyperparameters", "TrainModel", "EvaluateModel"):
            with store.transaction() as db:
                db.execute("UPDATE steps SET cache = ? WHERE execution_id = 'cachedrun001' AND name = ?",
                           (json.dumps({"Key": "k", "CacheHitResult": {"SourcePipelineExecutionArn": source}}),
                            step.name))
    data = local_runs.target().report_data("cachedrun001")
    steps = {s.name: s for s in data.steps}
    assert steps["TrainModel"].detail == "cache hit: trainmodel-goodrun00001 of execution goodrun00001"
    assert steps["CheckAccuracy"].detail == "outcome: true"  # not reused: evaluated again
    assert data.training.curves.epochs == [1, 2, 3]  # the history.json of goodrun00001's job
