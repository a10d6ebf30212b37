"""`pipelines.cloud.SageMakerTarget` on its own: the requests it sends (botocore's Stubber checks each against the
service model) and how the service's errors become one sentence. The CLI's view of it: tests/cli/."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from pipelines.cloud import SageMakerTarget, aws_errors
from pipelines.config import load_config
from pipelines.parameters import parameter_declarations
from pipelines.s3_bridge import S3Bridge
from pipelines.target_base import TargetError

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/PipelineExecution"
BUCKET = "cloud-test-bucket"
NAME = "image-classifier"
EXECUTION = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/{NAME}/execution/abc123"
OVERRIDES = {"project.target": "sagemaker", "project.bucket": BUCKET, "project.role_arn": ROLE,
             "project.region": REGION}


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return load_config(None, OVERRIDES)


def stubbed(target: SageMakerTarget) -> Stubber:
    client = target.boto_session.client("sagemaker")
    target.__dict__["client"] = client  # the cached_property, replaced
    return Stubber(client)


def described(status: str) -> dict:
    return {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": status}


def test_retry_of_the_latest_execution_retries_it_and_reports_its_state(config) -> None:
    target = SageMakerTarget(config, boto3.Session(region_name=REGION))
    stubber = stubbed(target)
    latest = {"PipelineName": NAME, "SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 1}
    stubber.add_response("list_pipeline_executions", {"PipelineExecutionSummaries": [
        {"PipelineExecutionArn": EXECUTION}]}, latest)
    for operation, response in (("describe_pipeline_execution", described("Failed")),
                                ("list_pipeline_parameters_for_execution", {"PipelineParameters": []}),
                                ("list_pipeline_execution_steps", {"PipelineExecutionSteps": []})):
        stubber.add_response(operation, response, {"PipelineExecutionArn": EXECUTION})
    stubber.add_response("retry_pipeline_execution", {"PipelineExecutionArn": EXECUTION},
                         {"PipelineExecutionArn": EXECUTION})
    stubber.add_response("describe_pipeline_execution", described("Executing"), {"PipelineExecutionArn": EXECUTION})
    stubber.add_response("list_pipeline_parameters_for_execution", {"PipelineParameters": [
        {"Name": "MaxTuningJobs", "Value": "2"}]}, {"PipelineExecutionArn": EXECUTION})
    stubber.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": [
        {"StepName": "TrainModel", "StepStatus": "Executing", "Metadata": {"TrainingJob": {"Arn": "arn:job"}}}]},
        {"PipelineExecutionArn": EXECUTION})
    with stubber:
        summary = target.retry(None, wait=False, on_progress=None)
    stubber.assert_no_pending_responses()
    assert (summary.arn, summary.status, summary.parameters) == (EXECUTION, "Executing", {"MaxTuningJobs": "2"})
    assert summary.steps is not None and [(s.name, s.type) for s in summary.steps] == [("TrainModel", "TrainingJob")]


@mock_aws
def test_start_checks_values_against_the_stored_definition_and_sends_only_the_given_ones(config) -> None:
    target = SageMakerTarget(config, boto3.Session(region_name=REGION))
    definition = {"Version": "2020-12-01", "Steps": [], "Parameters": parameter_declarations(config)}
    target.client.create_pipeline(PipelineName=NAME, PipelineDefinition=json.dumps(definition), RoleArn=ROLE)
    summary = target.start({"MaxTuningJobs": "3", "AccuracyThreshold": "0.5"}, wait=False, on_progress=None)
    sent = target.client.list_pipeline_parameters_for_execution(PipelineExecutionArn=summary.arn)
    assert sent["PipelineParameters"] == [{"Name": "MaxTuningJobs", "Value": "3"},
                                          {"Name": "AccuracyThreshold", "Value": "0.5"}]
    with pytest.raises(TargetError, match="parameter MaxTuningJobs takes a whole number, got '3.5'"):
        target.start({"MaxTuningJobs": "3.5"}, wait=False, on_progress=None)
    assert len(target.list_executions()) == 1  # the refused one never started


@mock_aws
def test_upsert_stores_the_recorded_code_then_creates_and_then_updates_the_pipeline(config) -> None:
    session = boto3.Session(region_name=REGION)
    session.client("s3").create_bucket(Bucket=BUCKET)
    target = SageMakerTarget(config, session)
    code = target.code_uploads()
    assert isinstance(code, S3Bridge) and code.record and code.root is None  # nothing leaves before validation
    code.recorded[(BUCKET, "image-classifier/code/sourcedir.tar.gz")] = b"tarball"
    definition = json.dumps({"Version": "2020-12-01", "Steps": [], "Parameters": []})
    arn = target.upsert(definition, "first", code)
    assert target.upsert(definition, "second") == arn  # the second one updates
    body = session.client("s3").get_object(Bucket=BUCKET, Key="image-classifier/code/sourcedir.tar.gz")["Body"]
    assert body.read() == b"tarball"
    assert target.client.describe_pipeline(PipelineName=NAME)["PipelineDescription"] == "second"


def test_logs_on_sagemaker_say_where_the_logs_are(config) -> None:
    with pytest.raises(TargetError, match=r"job logs are in CloudWatch Logs \(/aws/sagemaker/TrainingJobs"):
        SageMakerTarget(config, boto3.Session(region_name=REGION)).logs(None, None)


@pytest.mark.parametrize(("error", "message"), [
    (NoCredentialsError(), "upsert: no AWS credentials found. Configure them (aws configure, AWS_PROFILE"),
    (EndpointConnectionError(endpoint_url="https://x"), "upsert: cannot reach AWS"),
    (ClientError({"Error": {"Code": "ExpiredTokenException", "Message": "expired"}}, "CreatePipeline"),
     "upsert: AWS refused the credentials or the permission (ExpiredTokenException: expired)"),
    (ClientError({"Error": {"Code": "ResourceLimitExceeded", "Message": "too many"}}, "CreatePipeline"),
     "upsert: ResourceLimitExceeded: too many"),
])
def test_aws_errors_become_one_sentence_saying_what_to_do(error: Exception, message: str) -> None:
    with pytest.raises(TargetError) as raised, aws_errors("upsert"):
        raise error
    assert str(raised.value).startswith(message)


@mock_aws
def test_a_model_whose_statistics_cannot_be_read_is_listed_without_accuracy(config) -> None:
    session = boto3.Session(region_name=REGION)
    target = SageMakerTarget(config, session)
    target.client.create_model_package_group(ModelPackageGroupName=config.project.model_package_group)
    target.client.create_model_package(
        ModelPackageGroupName=config.project.model_package_group, ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": "image"}], "SupportedContentTypes": ["image/png"],
                                "SupportedResponseMIMETypes": ["application/json"]},
        ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                      "S3Uri": f"s3://{BUCKET}/missing/evaluation.json"}}})
    [row] = target.list_models()
    assert (row["approval"], row["accuracy"]) == ("Approved", None)


def test_content_types_follow_the_file_extension(tmp_path: Path) -> None:
    from pipelines.target_base import content_type_of

    assert [content_type_of(tmp_path / n) for n in ("a.PNG", "b.jpeg", "c.json", "d.bin", "e.webp")] == [
        "image/png", "image/jpeg", "application/json", "application/x-image", "image/webp"]


@mock_aws
def test_batch_transform_serves_the_newest_package_with_the_pipelines_batch_settings(config) -> None:
    session = boto3.Session(region_name=REGION)
    target = SageMakerTarget(config, session)
    group = config.project.model_package_group
    target.client.create_model_package_group(ModelPackageGroupName=group)
    for _ in range(2):
        target.client.create_model_package(
            ModelPackageGroupName=group, ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{"Image": "image"}], "SupportedContentTypes": ["image/png"],
                                    "SupportedResponseMIMETypes": ["application/json"]})
    result = target.batch_transform(None, f"s3://{BUCKET}/photos", None, wait=False, progress=lambda line: None)
    newest = f"arn:aws:sagemaker:{REGION}:123456789012:model-package/{group}/2"
    assert (result["model_package"], result["input"]) == (newest, f"s3://{BUCKET}/photos")
    assert result["output"] == f"s3://{BUCKET}/{NAME}/batch/{result['job']}"
    described = target.client.describe_transform_job(TransformJobName=result["job"])
    assert described["ModelName"] == result["job"]
    assert (described["BatchStrategy"], described["MaxPayloadInMB"], described["MaxConcurrentTransforms"]) == (
        "SingleRecord", config.batch.max_payload_mb, config.batch.max_concurrent_transforms)
    assert described["TransformInput"]["ContentType"] == "application/x-image"
    model = target.client.describe_model(ModelName=result["job"])
    assert model["PrimaryContainer"]["ModelPackageName"] == newest


@mock_aws
def test_batch_transform_with_nothing_registered_says_what_to_do(config) -> None:
    target = SageMakerTarget(config, boto3.Session(region_name=REGION))
    target.client.create_model_package_group(ModelPackageGroupName=config.project.model_package_group)
    with pytest.raises(TargetError, match="no model is registered in image-classifier yet: run the pipeline, or "
                                          "pass --model-package ARN"):
        target.batch_transform(None, f"s3://{BUCKET}/photos", None, wait=False)
    with pytest.raises(ValueError, match="--input 'photos/' is not an S3 URL"):  # the CLI shows it as exit 2
        target.batch_transform("arn:x", "photos/", None, wait=False)


def deployed_endpoint(target: SageMakerTarget, name: str = "image-classifier") -> None:
    target.client.create_model(ModelName="m1", ExecutionRoleArn=ROLE,
                               PrimaryContainer={"Image": "image", "ModelDataUrl": f"s3://{BUCKET}/m/model.tar.gz"})
    target.client.create_endpoint_config(EndpointConfigName="c1", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "m1", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    target.client.create_endpoint(EndpointName=name, EndpointConfigName="c1")


@mock_aws
def test_autoscale_registers_each_variant_with_a_target_tracking_policy_idempotently_and_removes_it(config) -> None:
    deployment = {"autoscaling": True, "min_instances": 2, "max_instances": 5, "target_invocations_per_instance": 250}
    target = SageMakerTarget(config.replace("deployment", **deployment), boto3.Session(region_name=REGION))
    deployed_endpoint(target)
    first = target.autoscale("image-classifier", remove=False)
    again = target.autoscale("image-classifier", remove=False)  # a re-run (after a re-deploy): the same, updated
    assert first["applicable"] and [a["variant"] for a in again["applied"]] == ["AllTraffic"]
    scaling = target.boto_session.client("application-autoscaling")
    resource = "endpoint/image-classifier/variant/AllTraffic"
    [registered] = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (registered["ResourceId"], registered["ScalableDimension"], registered["MinCapacity"],
            registered["MaxCapacity"]) == (resource, "sagemaker:variant:DesiredInstanceCount", 2, 5)
    [policy] = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert (policy["PolicyType"], tracking["TargetValue"], tracking["PredefinedMetricSpecification"]) == (
        "TargetTrackingScaling", 250.0, {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"})
    assert (tracking["ScaleInCooldown"], tracking["ScaleOutCooldown"]) == (
        config.deployment.scale_in_cooldown_s, config.deployment.scale_out_cooldown_s)

    assert target.autoscale("image-classifier", remove=True)["removed"] == ["AllTraffic"]
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
    assert target.autoscale("image-classifier", remove=True)["removed"] == []  # nothing left to remove


@mock_aws
def test_autoscale_refuses_while_switched_off_and_names_an_unknown_endpoint(config) -> None:
    target = SageMakerTarget(config, boto3.Session(region_name=REGION))
    deployed_endpoint(target)
    with pytest.raises(TargetError, match=r"autoscaling is off \(\[deployment\] autoscaling = false\): set "
                                          "autoscaling = true"):
        target.autoscale("image-classifier", remove=False)
    switched_on = SageMakerTarget(config.replace("deployment", autoscaling=True), boto3.Session(region_name=REGION))
    with pytest.raises(TargetError, match="endpoint nope"):
        switched_on.autoscale("nope", remove=False)


def test_invoke_sends_target_model_only_when_one_is_named(config, tmp_path: Path) -> None:
    target = SageMakerTarget(config, boto3.Session(region_name=REGION))
    runtime = boto3.Session(region_name=REGION).client("sagemaker-runtime")
    target.boto_session = type("Session", (), {"client": lambda self, name: runtime})()
    image = tmp_path / "cat.png"
    image.write_bytes(b"png")
    with Stubber(runtime) as stub:
        for picked in ({}, {"TargetModel": "v3.tar.gz"}):
            body = StreamingBody(io.BytesIO(b'{"predictions": []}'), 19)
            stub.add_response("invoke_endpoint", {"Body": body}, {
                "EndpointName": "mm", "ContentType": "image/png", "Accept": "application/json", "Body": b"png",
                **picked})
        assert target.invoke("mm", [image])[0]["response"] == '{"predictions": []}'
        assert target.invoke("mm", [image], target_model="v3.tar.gz")[0]["file"] == str(image)
        stub.assert_no_pending_responses()


def test_start_no_cache_on_sagemaker_says_why_it_cannot(config) -> None:
    target = SageMakerTarget(config, boto3.Session(region_name=REGION))
    with pytest.raises(TargetError, match="--no-cache works on the local target only: StartPipelineExecution has no "
                                          "switch for step caching"):
        target.start({}, wait=False, on_progress=None, use_cache=False)
