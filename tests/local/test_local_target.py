"""LocalTarget: the Target interface over the state database, user mistakes as TargetError, delegation."""

from __future__ import annotations

import json
import types

import pytest
from executor_fakes import Behaviour, fake_handlers

from pipelines.config import load_config
from pipelines.local.target import LocalTarget
from pipelines.target_base import content_type_of
from pipelines.targets import TargetError

ROLE = "arn:aws:iam::000000000000:role/R"
PARAMETERS = [{"Name": "Count", "Type": "Integer", "DefaultValue": 1},
              {"Name": "Threshold", "Type": "Float", "DefaultValue": 0.5}]


def processing(name: str, depends_on: list[str] | None = None) -> dict:
    arguments = {"ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                                           "VolumeSizeInGB": 30}},
                 "AppSpecification": {"ImageUri": "image"}, "RoleArn": ROLE}
    return {"Name": name, "Type": "Processing", "Arguments": arguments, "DependsOn": depends_on or []}


DEFINITION = json.dumps({"Version": "2020-12-01", "Parameters": PARAMETERS,
                         "Steps": [processing("A"), processing("B", ["A"])]})


@pytest.fixture
def behaviour() -> Behaviour:
    return Behaviour()


@pytest.fixture
def target(tmp_path, behaviour) -> LocalTarget:
    target = LocalTarget(load_config(), tmp_path / "ws", cpu_budget=1,
                         handlers_factory=lambda workspace, store, region: fake_handlers(behaviour))
    return target


def test_upsert_returns_the_local_arn_and_refuses_bad_json(target):
    assert target.upsert(DEFINITION, "d") == "arn:aws:sagemaker:us-east-1:000000000000:pipeline/image-classifier"
    with pytest.raises(TargetError, match="not valid JSON"):
        target.upsert("{", "d")
    with pytest.raises(TargetError, match="list of Steps"):
        target.upsert("[]", "d")


def test_upsert_stores_the_recorded_code_in_the_workspace_only_for_a_definition_it_takes(target):
    code = target.code_uploads()
    code.recorded[("sagemaker-local", "image-classifier/code/sourcedir.tar.gz")] = b"tarball"
    stored = target.workspace.s3_root / "sagemaker-local" / "image-classifier" / "code" / "sourcedir.tar.gz"
    with pytest.raises(TargetError, match="not valid JSON"):
        target.upsert("{", "d", code)
    assert not stored.exists()
    target.upsert(DEFINITION, "d", code)
    assert stored.read_bytes() == b"tarball"


def test_start_before_upsert_says_what_to_do(target):
    with pytest.raises(TargetError, match="run `pipeline.py upsert` first"):
        target.start({}, True, None)


def test_start_waits_reports_progress_and_records_parameters(target):
    target.upsert(DEFINITION, "d")
    seen = []
    summary = target.start({"Count": "4"}, True, seen.append)
    assert summary.status == "Succeeded" and summary.parameters == {"Count": 4, "Threshold": 0.5}
    assert summary.arn.startswith(f"{target.pipeline_arn}/execution/")
    assert [(s.name, s.status) for s in summary.steps] == [("A", "Succeeded"), ("B", "Succeeded")]
    assert summary.steps[0].details == {"ProcessingJobName": f"a-{summary.arn.rsplit('/', 1)[-1]}"}
    assert seen[-1].status == "Succeeded"
    assert any(s.status == "Executing" and s.details == {"Phase": "Running"} for summ in seen for s in summ.steps)


@pytest.mark.parametrize(("parameters", "message"), [
    ({"Nope": 1}, "unknown parameter 'Nope'; the pipeline's parameters are: Count, Threshold"),
    ({"Count": "many"}, "parameter Count takes a whole number, got 'many'"),
    ({"Threshold": True}, "parameter Threshold takes a number, got True"),
])
def test_start_refuses_wrong_parameters(target, parameters, message):
    target.upsert(DEFINITION, "d")
    with pytest.raises(TargetError) as err:
        target.start(parameters, True, None)
    assert str(err.value) == message
    assert target.list_executions() == []


def test_describe_and_list_executions(target):
    with pytest.raises(TargetError, match="no executions yet"):
        target.describe_execution(None)
    target.upsert(DEFINITION, "d")
    first = target.start({}, True, None)
    second = target.start({}, True, None)
    assert target.describe_execution(None).arn == second.arn
    assert target.describe_execution(first.arn).arn == first.arn
    assert target.describe_execution(first.arn.rsplit("/", 1)[-1]).arn == first.arn
    assert [e.arn for e in target.list_executions()] == [second.arn, first.arn]
    with pytest.raises(TargetError, match="no local execution 'nope'"):
        target.describe_execution("nope")


def test_retry_refuses_a_succeeded_execution_and_reruns_a_failed_one(target, behaviour):
    target.upsert(DEFINITION, "d")
    with pytest.raises(TargetError, match="succeeded: there is nothing to retry"):
        target.retry(target.start({}, True, None).arn, True, None)
    behaviour.failures["B"] = "AlgorithmError: boom"
    failed = target.start({}, True, None)
    assert failed.status == "Failed" and "Step B (Processing) failed: AlgorithmError: boom" in failed.failure_reason
    del behaviour.failures["B"]
    behaviour.calls.clear()
    assert target.retry(None, True, None).status == "Succeeded"
    assert behaviour.order() == ["B"]


def test_logs_lists_job_logs_by_step(target):
    target.upsert(DEFINITION, "d")
    execution_id = target.start({}, True, None).arn.rsplit("/", 1)[-1]
    for step, job in (("A", "a-job"), ("B", "b-job")):
        log = target.workspace.job_dir(execution_id, step, job) / "job.log"
        log.write_text(f"{job} output\n")
    assert [job for job, _ in target.logs()] == ["a-job", "b-job"]
    assert [(job, path.read_text()) for job, path in target.logs(execution_id, "B")] == [("b-job", "b-job output\n")]
    with pytest.raises(TargetError, match="has no step 'Z'; its steps: A, B"):
        target.logs(None, "Z")


def test_logs_of_a_multi_instance_job_come_per_host(target):
    target.upsert(DEFINITION, "d")
    execution_id = target.start({}, True, None).arn.rsplit("/", 1)[-1]
    job_dir = target.workspace.job_dir(execution_id, "B", "b-job")
    (job_dir / "job.log").write_text("rank 0\n")  # algo-1 keeps a one-host job's place
    (job_dir / "algo-2").mkdir()
    (job_dir / "algo-2" / "job.log").write_text("rank 1\n")
    assert [(job, path.read_text()) for job, path in target.logs(execution_id, "B")] == [
        ("b-job (algo-1)", "rank 0\n"), ("b-job (algo-2)", "rank 1\n")]
    assert [(job, path.read_text()) for job, path in target.logs(execution_id, "B", "algo-2")] == [
        ("b-job (algo-2)", "rank 1\n")]
    with pytest.raises(TargetError, match=r"no job of step B in execution .* ran on host 'algo-3'; its hosts: "
                                          "algo-1, algo-2"):
        target.logs(execution_id, "B", "algo-3")


def test_registry_and_endpoint_commands_delegate(target, monkeypatch, tmp_path):
    calls = []

    class FakeManager:
        def __init__(self, workspace, store, region, memory_budget_mb):
            assert (workspace, store, region) == (target.workspace, target.store, "us-east-1")
            assert memory_budget_mb == target.config.local.endpoint_memory_mb

        def invoke(self, name, body, content_type, target_model=None):
            calls.append((name, body, content_type, target_model))
            return (200, b'{"label": 3}') if body != b"bad" else (400, b'{"error": "not an image"}')

        def list(self):
            return [{"name": "e"}]

        def describe(self, name):
            return {"name": name}

        def delete(self, name):
            calls.append(("delete", name))

    monkeypatch.setitem(__import__("sys").modules, "pipelines.local.endpoints",
                        types.SimpleNamespace(EndpointManager=FakeManager))
    image, bad = tmp_path / "x.png", tmp_path / "y.jpg"
    image.write_bytes(b"png")
    bad.write_bytes(b"bad")
    assert target.invoke("e", [image]) == [{"file": str(image), "response": json.dumps({"label": 3})}]
    assert calls[-1] == ("e", b"png", "image/png", None)
    target.invoke("e", [image], target_model="v2.tar.gz")
    assert calls[-1] == ("e", b"png", "image/png", "v2.tar.gz")
    with pytest.raises(TargetError, match="endpoint e answered HTTP 400 for .*y.jpg: not an image$"):
        target.invoke("e", [bad])
    with pytest.raises(TargetError, match="is not a file"):
        target.invoke("e", [tmp_path / "missing.png"])
    assert target.list_endpoints() == [{"name": "e"}]
    not_here = target.autoscale("e", remove=False)
    assert (not_here["endpoint"], not_here["applicable"]) == ("e", False)
    assert not_here["reason"].startswith("not applicable on the local target: a local endpoint is one serving process")
    target.delete_endpoint("e")
    assert calls[-1] == ("delete", "e")
    assert target.list_models() == []
    with pytest.raises(TargetError, match="no model package 'arn:x'"):
        target.approve("arn:x", "Approved")


def test_content_types_by_extension(tmp_path):
    assert [content_type_of(tmp_path / n) for n in ("a.PNG", "b.jpeg", "c.json", "d.bin")] == [
        "image/png", "image/jpeg", "application/json", "application/x-image"]


def test_batch_before_any_model_is_registered_says_what_to_do(target, tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(TargetError, match=r"no model is registered in image-classifier yet: run the pipeline "
                                          r"\(`pipeline.py start`\), or pass --model-package ARN"):
        target.batch_transform(None, str(tmp_path / "photos"), None, wait=True)
    with pytest.raises(TargetError, match="does not exist: give a folder of images"):
        target.batch_transform(None, str(tmp_path / "nope"), None, wait=True)
