"""The executor with fake handlers: the real definition, hand-written ones, failures, retry, stop, kill -9."""

from __future__ import annotations

import _thread
import json
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from executor_fakes import Behaviour, fake_handlers, make_fake_handlers

from pipelines.config import load_config
from pipelines.local.executor import Executor, RetryError
from pipelines.local.state import ENGINE_STOPPED, StateStore
from pipelines.local.target import LocalTarget
from pipelines.local.workspace import Workspace
from pipelines.targets import TargetError

ROLE = "arn:aws:iam::000000000000:role/LocalPipelineExecution"
IF_BRANCH = ["ImageClassifier-RegisterModel", "ServingModel-CreateModel", "EndpointConfig", "Endpoint",
             "BatchTransform"]


# Steps that run beside others, and the step each waits for: BatchTransform beside EndpointConfig and Endpoint (all
# three wait for CreateModel only), ExplainModel beside CheckAccuracy (both wait for EvaluateModel).
RUN_BESIDE = {"BatchTransform": "ServingModel-CreateModel", "ExplainModel": "EvaluateModel"}


def in_dependency_order(order: list[str], expected: list[str]) -> bool:
    """`order` is `expected` but for the RUN_BESIDE steps, which need only come after what they wait for."""
    def fixed(steps: list[str]) -> list[str]:
        return [step for step in steps if step not in RUN_BESIDE]

    return fixed(order) == fixed(expected) and sorted(order) == sorted(expected) and all(
        order.index(step) > order.index(after) for step, after in RUN_BESIDE.items() if step in order)


@pytest.fixture(scope="module")
def real_definition() -> dict:
    """The definition get_pipeline builds for the local target."""
    from pipelines.assembly import get_pipeline
    from pipelines.session import Uploads, build_pipeline_session

    config = load_config(overrides={"project.target": "local"})
    return json.loads(get_pipeline(config, build_pipeline_session(config, Uploads.DISCARD)).definition())


class Harness:
    """A workspace, a store and one pipeline; runs executions of it with fake handlers."""

    def __init__(self, root: Path, definition: dict, behaviour: Behaviour, cpu_budget: int = 2) -> None:
        self.workspace = Workspace.open(root)
        self.store = StateStore(self.workspace.state_db)
        self.behaviour = behaviour
        self.executor = Executor(self.workspace, self.store, fake_handlers(behaviour), cpu_budget)
        self.store.upsert_pipeline("p", "arn:aws:sagemaker:us-east-1:000000000000:pipeline/p", json.dumps(definition),
                                   None)

    def run(self, parameters: dict | None = None, execution_id: str = "exec00000001", use_cache: bool = True):
        pipeline = self.store.get_pipeline("p")
        self.store.create_execution(execution_id, f"{pipeline.arn}/execution/{execution_id}", pipeline,
                                    parameters or {}, use_cache)
        self.executor.run(execution_id)
        return self.execution(execution_id)

    def execution(self, execution_id: str = "exec00000001"):
        return self.store.get_execution(execution_id)

    def steps(self, execution_id: str = "exec00000001") -> dict:
        return {step.name: step for step in self.store.list_steps(execution_id)}


def processing(name: str, depends_on: list[str] | None = None, **arguments) -> dict:
    request = {
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                                  "VolumeSizeInGB": 30}},
        "AppSpecification": {"ImageUri": "image"},
        "RoleArn": ROLE,
        **arguments,
    }
    step = {"Name": name, "Type": "Processing", "Arguments": request}
    return {**step, "DependsOn": depends_on} if depends_on else step


def condition(conditions: list[dict], if_steps: list[dict], else_steps: list[dict]) -> dict:
    return {"Name": "Check", "Type": "Condition",
            "Arguments": {"Conditions": conditions, "IfSteps": if_steps, "ElseSteps": else_steps}}


def definition(*steps: dict, parameters: list[dict] | None = None) -> dict:
    return {"Version": "2020-12-01", "Parameters": parameters or [], "Steps": list(steps)}


# ---------------------------------------------------------------------------------------------- the real definition
def test_real_definition_runs_every_step_in_order(tmp_path, real_definition):
    harness = Harness(tmp_path, real_definition, Behaviour(accuracy=0.95))
    execution = harness.run()
    assert (execution.status, execution.failure_reason) == ("Succeeded", None)
    ran = harness.behaviour.order()
    assert in_dependency_order(ran, ["PrepareData", "TuneHyperparameters", "TrainModel", "EvaluateModel",
                                     "ExplainModel", *IF_BRANCH])
    assert ran.index("ExplainModel") < ran.index("ImageClassifier-RegisterModel")  # it registers ExplainModel's files
    steps = harness.steps()
    assert in_dependency_order(list(steps), ["PrepareData", "TuneHyperparameters", "TrainModel", "EvaluateModel",
                                             "ExplainModel", "CheckAccuracy", *IF_BRANCH])
    assert {s.status for s in steps.values()} == {"Succeeded"} and steps["CheckAccuracy"].properties == {
        "Outcome": True}
    calls = {call.step: call.arguments for call in harness.behaviour.calls}
    assert {k: calls["TrainModel"]["HyperParameters"][k] for k in ("lr", "batch_size", "epochs", "image_size")} == {
        "lr": "0.001", "batch_size": '"64"', "epochs": "3", "image_size": "0"}  # 0: follow the images
    train_uri = calls["TrainModel"]["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert train_uri == "s3://local-pipeline/image-classifier/exec00000001/PrepareData/output/train"
    model = calls["EvaluateModel"]["ProcessingInputs"][0]["S3Input"]["S3Uri"]
    assert model == "s3://local-pipeline/image-classifier/models/trainmodel-exec00000001/output/model.tar.gz"
    assert calls["ServingModel-CreateModel"]["PrimaryContainer"]["ModelDataUrl"] == model
    assert calls["EndpointConfig"]["EndpointConfigName"] == "image-classifier-exec00000001"
    assert calls["EndpointConfig"]["ProductionVariants"][0]["ModelName"] == "model-exec00000001"
    assert calls["Endpoint"]["EndpointConfigName"] == "image-classifier-exec00000001"
    assert steps["EvaluateModel"].property_files == {
        "EvaluationReport": {"multiclass_classification_metrics": {"accuracy": {"value": 0.95}}}}


def test_real_definition_else_branch_fails_with_the_fail_steps_message(tmp_path, real_definition):
    harness = Harness(tmp_path, real_definition, Behaviour(accuracy=0.5))
    execution = harness.run()
    message = "Test accuracy 0.5 is below the AccuracyThreshold of 0.9 - the model was not registered or deployed."
    assert (execution.status, execution.failure_reason) == ("Failed", message)
    steps = harness.steps()
    assert in_dependency_order(list(steps), ["PrepareData", "TuneHyperparameters", "TrainModel", "EvaluateModel",
                                             "ExplainModel", "CheckAccuracy", "AccuracyTooLow"])
    assert list(steps).index("ExplainModel") < list(steps).index("AccuracyTooLow")  # a failed model is explained
    assert steps["ExplainModel"].status == "Succeeded"
    assert (steps["AccuracyTooLow"].status, steps["AccuracyTooLow"].failure_reason) == ("Failed", message)
    assert not set(IF_BRANCH) & {call.step for call in harness.behaviour.calls}


def test_parameters_given_at_start_are_used(tmp_path, real_definition):
    harness = Harness(tmp_path, real_definition, Behaviour(accuracy=0.5))
    assert harness.run({"AccuracyThreshold": 0.4, "EndpointName": "other"}).status == "Succeeded"
    assert harness.steps()["Endpoint"].properties["EndpointName"] == "other"


# ---------------------------------------------------------------------------------------------- conditions
def binary(kind: str, left, right) -> dict:
    return {"Type": kind, "LeftValue": left, "RightValue": right}


THRESHOLD = {"Get": "Parameters.Threshold"}


@pytest.mark.parametrize(("check", "branch"), [
    (binary("Equals", THRESHOLD, 0.5), "Yes"),
    (binary("GreaterThan", THRESHOLD, 0.5), "No"),
    (binary("GreaterThanOrEqualTo", THRESHOLD, 0.5), "Yes"),
    (binary("LessThan", THRESHOLD, "0.75"), "Yes"),
    (binary("LessThanOrEqualTo", THRESHOLD, 0.25), "No"),
    ({"Type": "In", "QueryValue": THRESHOLD, "Values": [0.1, 0.5]}, "Yes"),
    ({"Type": "Not", "Condition": binary("Equals", THRESHOLD, 0.5)}, "No"),
    ({"Type": "Or", "Conditions": [binary("Equals", THRESHOLD, 1), binary("LessThan", THRESHOLD, 1)]}, "Yes"),
])
def test_every_condition_type_picks_one_branch(tmp_path, check, branch):
    parameters = [{"Name": "Threshold", "Type": "Float", "DefaultValue": 0.5}]
    steps = [condition([check], [processing("Yes")], [processing("No"), processing("AfterNo", ["No"])])]
    harness = Harness(tmp_path, definition(*steps, parameters=parameters), Behaviour())
    assert harness.run().status == "Succeeded"
    ran = {"Yes"} if branch == "Yes" else {"No", "AfterNo"}
    assert {call.step for call in harness.behaviour.calls} == ran
    assert set(harness.steps()) == {"Check", *ran}
    assert harness.steps()["Check"].properties == {"Outcome": branch == "Yes"}


def test_a_condition_that_cannot_be_evaluated_fails_its_step(tmp_path):
    steps = [condition([binary("GreaterThan", "abc", 1)], [processing("Yes")], [])]
    execution = Harness(tmp_path, definition(*steps), Behaviour()).run()
    assert execution.status == "Failed"
    assert execution.failure_reason == ("Step failure: One or multiple steps failed. Step Check (Condition) failed: "
                                        "GreaterThan cannot compare 'abc' (str) with 1 (int)")


# ---------------------------------------------------------------------------------------------- scheduling
def test_depends_on_orders_steps_without_data_references(tmp_path):
    behaviour = Behaviour(sleeps={"A": 0.3})
    harness = Harness(tmp_path, definition(processing("B", ["A"]), processing("A")), behaviour)
    assert harness.run().status == "Succeeded"
    calls = {call.step: call for call in behaviour.calls}
    assert calls["B"].started >= calls["A"].ended


def test_independent_job_steps_share_the_cpu_budget_and_overlap(tmp_path):
    behaviour = Behaviour(sleeps={"A": 0.4, "B": 0.4})
    harness = Harness(tmp_path, definition(processing("A"), processing("B")), behaviour, cpu_budget=4)
    assert harness.run().status == "Succeeded"
    a, b = sorted(behaviour.calls, key=lambda c: c.step)
    assert a.started < b.ended and b.started < a.ended
    assert (a.cpu_budget, b.cpu_budget) == (2, 2)


def test_job_steps_wait_for_cores_but_metadata_steps_do_not(tmp_path):
    behaviour = Behaviour(sleeps={"A": 0.3, "B": 0.3, "M": 0.3})
    model = {"Name": "M", "Type": "Model", "Arguments": {"ExecutionRoleArn": ROLE,
                                                        "PrimaryContainer": {"Image": "image"}}}
    harness = Harness(tmp_path, definition(processing("A"), processing("B"), model), behaviour, cpu_budget=1)
    assert harness.run().status == "Succeeded"
    calls = {call.step: call for call in behaviour.calls}
    first, second = sorted([calls["A"], calls["B"]], key=lambda c: c.started)
    assert second.started >= first.ended and first.cpu_budget == second.cpu_budget == 1
    assert calls["M"].started < first.ended  # no core needed: it ran alongside


# ---------------------------------------------------------------------------------------------- failures
def test_unknown_step_type_fails_the_execution_at_start(tmp_path):
    emr = {"Name": "Crunch", "Type": "EMR", "Arguments": {}}
    harness = Harness(tmp_path, definition(processing("A"), emr), Behaviour())
    execution = harness.run()
    assert execution.status == "Failed"
    assert execution.failure_reason.startswith("step Crunch has type 'EMR', which the local engine does not run")
    assert harness.behaviour.calls == [] and harness.steps() == {}


def test_definition_errors_name_the_step(tmp_path):
    cases = {
        "step B depends on steps that do not exist: Nope": [processing("B", ["Nope"])],
        "steps A, B depend on each other": [processing("A", ["B"]), processing("B", ["A"])],
    }
    for index, (message, steps) in enumerate(cases.items()):
        execution = Harness(tmp_path / str(index), definition(*steps), Behaviour()).run()
        assert execution.status == "Failed" and message in execution.failure_reason


def test_a_request_botocore_rejects_fails_with_botocores_words(tmp_path):
    step = processing("A")
    del step["Arguments"]["RoleArn"]
    harness = Harness(tmp_path, definition(step, processing("B", ["A"])), Behaviour())
    execution = harness.run()
    reason = 'ValidationException: Missing required parameter in input: "RoleArn"'
    assert harness.steps()["A"].failure_reason == reason
    assert execution.failure_reason == f"Step failure: One or multiple steps failed. Step A (Processing) failed: " \
                                       f"{reason}"
    assert harness.behaviour.calls == []


def test_first_failure_stops_new_steps_while_running_ones_finish(tmp_path):
    behaviour = Behaviour(sleeps={"Slow": 0.4}, failures={"Bad": "AlgorithmError: boom"})
    steps = [processing("Slow"), processing("Bad"), processing("After", ["Bad"]), processing("AfterSlow", ["Slow"])]
    harness = Harness(tmp_path, definition(*steps), behaviour, cpu_budget=2)
    execution = harness.run()
    assert execution.failure_reason == ("Step failure: One or multiple steps failed. Step Bad (Processing) failed: "
                                        "AlgorithmError: boom")
    statuses = {name: step.status for name, step in harness.steps().items()}
    assert statuses == {"Slow": "Succeeded", "Bad": "Failed"}


def test_an_injected_capacity_error_is_retried_by_the_real_definitions_policy_and_the_execution_succeeds(
        tmp_path, real_definition):
    capacity = ("SageMaker.CAPACITY_ERROR", "CapacityError: Unable to provision requested ML compute capacity.")
    harness = Harness(tmp_path, real_definition, Behaviour(typed_failures={"TrainModel": [capacity]}))
    lines: list[tuple[str, str]] = []
    harness.executor.on_log = lambda step, line: lines.append((step, line))
    execution = harness.run()
    assert (execution.status, execution.failure_reason) == ("Succeeded", None)
    train = harness.steps()["TrainModel"]
    assert train.status == "Succeeded" and train.attempt_count == 2
    [retry] = train.retries
    local_interval = load_config(environ={}).retry.interval_seconds
    assert retry == {"Attempt": 1, "ExceptionType": "SageMaker.CAPACITY_ERROR", "FailureReason": capacity[1],
                     "RetryAfterSeconds": local_interval}
    assert [call.step for call in harness.behaviour.calls].count("TrainModel") == 2
    assert ("TrainModel", f"attempt 1 failed with SageMaker.CAPACITY_ERROR: {capacity[1]}; retrying in "
            f"{local_interval:g} s (RetryPolicies: SageMaker.RESOURCE_LIMIT, SageMaker.CAPACITY_ERROR, "
            "SageMaker.JOB_INTERNAL_ERROR, up to 3 retries)") in lines


def test_a_second_identical_run_reuses_every_cacheable_step_of_the_real_definition(tmp_path, real_definition):
    harness = Harness(tmp_path, real_definition, Behaviour(accuracy=0.95))
    assert harness.run().status == "Succeeded"
    first = harness.steps()
    calls = len(harness.behaviour.calls)
    second = harness.run(execution_id="exec00000002")
    assert (second.status, second.failure_reason) == ("Succeeded", None)
    ran_again = [call.step for call in harness.behaviour.calls[calls:]]
    cacheable = ["PrepareData", "TuneHyperparameters", "TrainModel", "EvaluateModel"]
    assert not set(ran_again) & set(cacheable)  # no job of theirs ran: the gate read the reused evaluation.json
    assert set(ran_again) == set(IF_BRANCH)  # RegisterModel, CreateModel, the endpoint take no CacheConfig;
    steps = harness.steps("exec00000002")    # BatchTransform's model is new each run
    for name in cacheable:
        assert steps[name].cache["CacheHitResult"] == {"SourcePipelineExecutionArn": harness.execution().arn}
        assert steps[name].cache["Key"] == first[name].cache["Key"]
        assert steps[name].properties == first[name].properties
    assert steps["EvaluateModel"].property_files == first["EvaluateModel"].property_files
    assert steps["CheckAccuracy"].properties == {"Outcome": True}

    third = harness.run(execution_id="exec00000003", use_cache=False)  # start --no-cache
    assert third.status == "Succeeded"
    assert all(harness.steps("exec00000003")[name].cache.get("CacheHitResult") is None for name in cacheable)
    fourth = harness.run(execution_id="exec00000004")  # a hit on a hit names the run whose job made the result
    assert fourth.status == "Succeeded"
    assert harness.steps("exec00000004")["TrainModel"].cache["CacheHitResult"]["SourcePipelineExecutionArn"] == \
        harness.execution("exec00000003").arn


def cached_processing(name: str, expire_after: str = "P30D", **arguments) -> dict:
    return {**processing(name, **arguments), "CacheConfig": {"Enabled": True, "ExpireAfter": expire_after}}


def test_a_changed_input_an_expired_result_or_a_failed_run_is_not_reused(tmp_path):
    data = {"Name": "Data", "Type": "String", "DefaultValue": "s3://b/one"}
    inputs = [{"InputName": "in", "S3Input": {"S3Uri": {"Get": "Parameters.Data"}, "LocalPath": "/opt/ml/processing/in",
                                              "S3DataType": "S3Prefix", "S3InputMode": "File"}}]
    harness = Harness(tmp_path, definition(cached_processing("A", ProcessingInputs=inputs), parameters=[data]),
                      Behaviour())
    harness.run(execution_id="exec00000001")
    harness.run(execution_id="exec00000002")
    harness.run({"Data": "s3://b/two"}, execution_id="exec00000003")
    assert [call.step for call in harness.behaviour.calls] == ["A", "A"]  # the second run reused the first
    assert harness.steps("exec00000003")["A"].cache.get("CacheHitResult") is None

    expired = Harness(tmp_path / "expired", definition(cached_processing("A", expire_after="PT0S")), Behaviour())
    expired.run(execution_id="exec00000001")
    expired.run(execution_id="exec00000002")
    assert len(expired.behaviour.calls) == 2

    failing = Harness(tmp_path / "failed", definition(cached_processing("A")),
                      Behaviour(failures={"A": "AlgorithmError: boom"}))
    failing.run(execution_id="exec00000001")
    failing.behaviour.failures.clear()
    assert failing.run(execution_id="exec00000002").status == "Succeeded" and len(failing.behaviour.calls) == 2


def retried_processing(name: str, policies: list[dict]) -> dict:
    return {**processing(name), "RetryPolicies": policies}


FAST_CAPACITY = {"ExceptionType": ["SageMaker.CAPACITY_ERROR", "SageMaker.JOB_INTERNAL_ERROR"],
                 "IntervalSeconds": 0.01, "BackoffRate": 2.0, "MaxAttempts": 2}


def test_retries_stop_at_max_attempts_and_the_step_fails_with_the_last_reason(tmp_path):
    failures = [("SageMaker.CAPACITY_ERROR", f"CapacityError {n}") for n in (1, 2, 3)]
    harness = Harness(tmp_path, definition(retried_processing("A", [FAST_CAPACITY])),
                      Behaviour(typed_failures={"A": failures}))
    execution = harness.run()
    assert execution.status == "Failed" and execution.failure_reason.endswith("failed: CapacityError 3")
    step = harness.steps()["A"]
    assert (step.attempt_count, [r["RetryAfterSeconds"] for r in step.retries]) == (3, [0.01, 0.02])


def test_a_failure_no_policy_names_is_not_retried(tmp_path):
    for kind, reason in (("SageMaker.RESOURCE_LIMIT", "ResourceLimitExceeded"), (None, "AlgorithmError: boom")):
        harness = Harness(tmp_path / str(kind), definition(retried_processing("A", [FAST_CAPACITY])),
                          Behaviour(typed_failures={"A": [(kind, reason)]}))
        execution = harness.run()
        assert execution.status == "Failed" and execution.failure_reason.endswith(f"failed: {reason}")
        assert harness.steps()["A"].attempt_count == 1 and harness.steps()["A"].retries is None


def test_a_step_without_policies_fails_at_its_first_typed_failure(tmp_path):
    harness = Harness(tmp_path, definition(processing("A")),
                      Behaviour(typed_failures={"A": [("SageMaker.CAPACITY_ERROR", "CapacityError")]}))
    assert harness.run().status == "Failed" and harness.steps()["A"].attempt_count == 1


def test_handler_bugs_and_unresolvable_references_fail_the_step(tmp_path):
    class Broken:
        def run(self, run):
            raise ZeroDivisionError("division by zero")

    harness = Harness(tmp_path, definition(processing("A")), Behaviour())
    harness.executor.handlers["Processing"] = Broken()
    assert "InternalError: ZeroDivisionError: division by zero" in harness.run().failure_reason
    bad_reference = processing("B", AppSpecification={"ImageUri": {"Get": "Steps.A.Nope"}})
    harness = Harness(tmp_path / "2", definition(processing("A"), bad_reference), Behaviour())
    assert "Get Steps.A.Nope: the step's properties have no 'Nope'" in harness.run().failure_reason


def test_a_missing_property_file_fails_the_processing_step(tmp_path):
    output = {"OutputName": "evaluation", "S3Output": {"S3Uri": "s3://b/eval", "LocalPath": "/opt/ml/processing/e",
                                                       "S3UploadMode": "EndOfJob"}}
    step = processing("Eval", ProcessingOutputConfig={"Outputs": [output]})
    step["PropertyFiles"] = [{"PropertyFileName": "Report", "OutputName": "evaluation", "FilePath": "report.json"}]
    execution = Harness(tmp_path, definition(step), Behaviour()).run()
    assert "PropertyFile Report: the job wrote no report.json to output evaluation (s3://b/eval/report.json)" in \
        execution.failure_reason


# ---------------------------------------------------------------------------------------------- retry and stop
def test_retry_reruns_only_what_did_not_succeed(tmp_path, real_definition):
    harness = Harness(tmp_path, real_definition, Behaviour(failures={"TrainModel": "AlgorithmError: out of memory"}))
    assert harness.run().status == "Failed"
    retried = Behaviour()
    harness.executor.handlers = fake_handlers(retried)
    assert harness.executor.retry("exec00000001") == "Succeeded"
    assert in_dependency_order(retried.order(), ["TrainModel", "EvaluateModel", "ExplainModel", *IF_BRANCH])
    calls = {call.step: call.arguments for call in retried.calls}
    assert calls["TrainModel"]["HyperParameters"]["lr"] == "0.001"  # from the first attempt's tuning step
    execution, steps = harness.execution(), harness.steps()
    assert (execution.status, execution.failure_reason, execution.attempt) == ("Succeeded", None, 2)
    assert (steps["PrepareData"].attempt, steps["TrainModel"].attempt) == (1, 2)
    with pytest.raises(RetryError, match="is Succeeded; only a Failed or Stopped one can be retried"):
        harness.executor.retry("exec00000001")


@pytest.fixture()
def python_sigint_handler():
    """Python's own SIGINT handler, whatever an earlier test in this process left: interrupt_main() does nothing
    when the handler is not Python's and calls any other one instead of raising KeyboardInterrupt (once, in CI on a
    loaded machine, the interrupt was lost and the step slept its 30 s)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_cancels_running_steps_and_stops_the_execution(tmp_path, python_sigint_handler):
    behaviour = Behaviour(sleeps={"A": 30})
    harness = Harness(tmp_path, definition(processing("A"), processing("B", ["A"])), behaviour)

    def interrupt_once_a_running() -> None:
        wait_for(lambda: behaviour.calls)
        _thread.interrupt_main()  # what Ctrl-C does to the main thread

    threading.Thread(target=interrupt_once_a_running, daemon=True).start()
    started = time.monotonic()
    execution = harness.run()
    assert time.monotonic() - started < 15  # A would sleep 30 s: it was cancelled, not waited for
    assert execution.status == "Stopped"
    assert {name: step.status for name, step in harness.steps().items()} == {"A": "Stopped"}


# ---------------------------------------------------------------------------------------------- kill -9
SLOW_DEFINITION = definition(processing("A"), processing("B", ["A"]), processing("C", ["B"]))


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def detached_env(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))  # the worker imports executor_fakes
    monkeypatch.setenv("FAKE_SLEEP_STEP", "B")
    monkeypatch.setenv("FAKE_SLEEP_S", "60")


def test_kill_9_leaves_a_consistent_state_that_retry_finishes(tmp_path, detached_env, monkeypatch):
    target = LocalTarget(load_config(), tmp_path, handlers_factory=make_fake_handlers, cpu_budget=1)
    target.upsert(json.dumps(SLOW_DEFINITION), "slow")
    execution_id = target.start({}, wait=False, on_progress=None).arn.rsplit("/", 1)[-1]
    wait_for(lambda: any(s.name == "B" and s.status == "Executing" for s in target.store.list_steps(execution_id)))
    engine = psutil.Process(target.store.get_execution(execution_id).engine_pid)
    assert engine.pid != os.getpid() and "pipelines.local.worker" in " ".join(engine.cmdline())
    os.kill(engine.pid, signal.SIGKILL)
    engine.wait(timeout=10)

    assert StateStore(target.workspace.state_db).recover_interrupted() == [execution_id]
    summary = target.describe_execution(execution_id)
    assert (summary.status, summary.failure_reason) == ("Failed", ENGINE_STOPPED)
    assert [(s.name, s.status, s.failure_reason) for s in summary.steps] == [
        ("A", "Succeeded", None), ("B", "Failed", ENGINE_STOPPED)]

    monkeypatch.setenv("FAKE_SLEEP_S", "0")
    assert target.retry(execution_id, wait=False, on_progress=None).status == "Executing"  # in a new worker
    with pytest.raises(TargetError, match="is still Executing"):
        target.retry(execution_id, wait=True, on_progress=None)
    summary = wait_for(lambda: (s := target.describe_execution(execution_id)).status != "Executing" and s)
    assert (summary.status, summary.failure_reason) == ("Succeeded", None)
    steps = {step.name: step for step in target.store.list_steps(execution_id)}
    assert {name: (step.status, step.attempt) for name, step in steps.items()} == {
        "A": ("Succeeded", 1), "B": ("Succeeded", 2), "C": ("Succeeded", 2)}  # A was not run again


def test_a_detached_execution_runs_to_the_end_in_the_worker(tmp_path, detached_env, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP_S", "0.2")
    target = LocalTarget(load_config(), tmp_path, handlers_factory=make_fake_handlers, cpu_budget=1)
    target.upsert(json.dumps(SLOW_DEFINITION), "slow")
    started = target.start({}, wait=False, on_progress=None)
    assert started.status == "Executing"
    summary = wait_for(lambda: (s := target.describe_execution(started.arn)).status != "Executing" and s)
    assert summary.status == "Succeeded" and [s.name for s in summary.steps] == ["A", "B", "C"]
    assert (tmp_path / "jobs" / summary.arn.rsplit("/", 1)[-1] / "engine.log").read_text().strip().endswith(
        "Succeeded")
