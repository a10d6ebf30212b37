"""SageMaker's responses for one execution of the pipeline, shaped as botocore's service model requires (Stubber
checks them), and the S3 objects its jobs leave: what the sagemaker side of the report reads."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import UTC, datetime
from typing import Any

from botocore.stub import Stubber
from report_runs import (
    CLASSES,
    DEFINITION,
    PIPELINE,
    TRAINING_ARGUMENTS,
    bias_document,
    evaluation_document,
    explainability_document,
    history,
    png_bytes,
    system_metric_lines,
    tuning_properties,
)

REGION = "us-east-1"


def tar_gz(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
EXECUTION = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/image-classifier/execution/cloudrun0001"
SM_BUCKET = "sm-bucket"
JOB = "pipelines-cloudrun0001-TrainModel-abc"
TUNING_JOB = "tune-cloudrun0001"


def arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:123456789012:{kind}/{name}"


def listed_step(name: str, kind: str, metadata: dict[str, Any], minute: int, status: str = "Succeeded") -> dict:
    return {"StepName": name, "StepStatus": status, "StartTime": NOW.replace(minute=minute),
            "EndTime": NOW.replace(minute=minute, second=40), "Metadata": {kind: metadata}}


def describe_training_job() -> dict[str, Any]:
    rules = [{k: v for k, v in r.items()} for r in TRAINING_ARGUMENTS["DebugRuleConfigurations"]]
    return {
        "TrainingJobName": JOB, "TrainingJobArn": arn("training-job", JOB), "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed", "ModelArtifacts": {"S3ModelArtifacts": f"s3://{SM_BUCKET}/m/{JOB}/output/"
                                                                                "model.tar.gz"},
        "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "image"},
        "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400}, "CreationTime": NOW,
        "TrainingStartTime": NOW.replace(minute=10), "TrainingEndTime": NOW.replace(minute=12),
        "HyperParameters": {"lr": "0.001", "batch_size": '"64"', "sagemaker_region": '"us-east-1"'},
        "OutputDataConfig": {"S3OutputPath": f"s3://{SM_BUCKET}/m"},
        "FinalMetricDataList": [{"MetricName": "validation:accuracy", "Value": 0.97, "Timestamp": NOW}],
        "DebugRuleConfigurations": rules,
        "DebugRuleEvaluationStatuses": [{"RuleConfigurationName": "Overfit", "RuleEvaluationStatus": "IssuesFound",
                                         "StatusDetails": "validation loss rose 3 times", "LastModifiedTime": NOW}],
        "ProfilerConfig": {"S3OutputPath": f"s3://{SM_BUCKET}/profiler"},
        "ProfilerRuleConfigurations": [{"RuleConfigurationName": "ProfilerReport-1700", "RuleEvaluatorImage": "i",
                                        "RuleParameters": {"rule_to_invoke": "ProfilerReport"}}],
        "ProfilerRuleEvaluationStatuses": [{"RuleConfigurationName": "ProfilerReport-1700",
                                            "RuleEvaluationStatus": "NoIssuesFound"}],
    }


def describe_tuning_job() -> dict[str, Any]:
    local = tuning_properties(TUNING_JOB)
    config = {**local["HyperParameterTuningJobConfig"], "ResourceLimits": {"MaxNumberOfTrainingJobs": 3,
                                                                           "MaxParallelTrainingJobs": 2}}
    return {"HyperParameterTuningJobName": TUNING_JOB, "HyperParameterTuningJobArn": arn("hyper-parameter-tuning-job",
                                                                                         TUNING_JOB),
            "HyperParameterTuningJobConfig": config, "HyperParameterTuningJobStatus": "Completed",
            "CreationTime": NOW, "TrainingJobStatusCounters": {"Completed": 2, "NonRetryableError": 1},
            "ObjectiveStatusCounters": {"Succeeded": 2, "Failed": 1},
            "BestTrainingJob": training_summary(local["BestTrainingJob"])}


def training_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "TrainingJobArn": arn("training-job", row["TrainingJobName"]), "CreationTime": NOW}


def describe_evaluation_job() -> dict[str, Any]:
    return {"ProcessingJobName": "evaluate-1", "ProcessingJobArn": arn("processing-job", "evaluate-1"),
            "ProcessingJobStatus": "Completed", "CreationTime": NOW, "AppSpecification": {"ImageUri": "image"},
            "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                                      "VolumeSizeInGB": 30}},
            "ProcessingOutputConfig": {"Outputs": [{"OutputName": "evaluation", "S3Output": {
                "S3Uri": f"s3://{SM_BUCKET}/eval", "LocalPath": "/opt/ml/processing/evaluation",
                "S3UploadMode": "EndOfJob"}}]}}


def describe_explain_job() -> dict[str, Any]:
    return {**describe_evaluation_job(), "ProcessingJobName": "explain-1",
            "ProcessingJobArn": arn("processing-job", "explain-1"),
            "ProcessingOutputConfig": {"Outputs": [{"OutputName": name, "S3Output": {
                "S3Uri": f"s3://{SM_BUCKET}/explain/{name}", "LocalPath": f"/opt/ml/processing/{name}",
                "S3UploadMode": "EndOfJob"}} for name in ("explainability", "bias")]}}


def describe_model_package(approval: str) -> dict[str, Any]:
    return {"ModelPackageName": PIPELINE, "ModelPackageGroupName": PIPELINE, "ModelPackageVersion": 4,
            "ModelPackageArn": arn("model-package", f"{PIPELINE}/4"), "CreationTime": NOW,
            "ModelPackageStatus": "Completed", "ModelApprovalStatus": approval,
            "ModelPackageStatusDetails": {"ValidationStatuses": []},
            "ModelMetrics": {"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                             "S3Uri": f"s3://{SM_BUCKET}/eval/evaluation.json"}}}}


def describe_endpoint() -> dict[str, Any]:
    return {"EndpointName": "image-classifier", "EndpointArn": arn("endpoint", "image-classifier"),
            "EndpointConfigName": "image-classifier-cloudrun0001", "EndpointStatus": "InService",
            "CreationTime": NOW, "LastModifiedTime": NOW}


def stub_sagemaker(stubber: Stubber) -> None:
    """The calls `collect` makes, in its order: execution, definition, steps (newest first), each step's job."""
    execution = {"PipelineExecutionArn": EXECUTION}
    stubber.add_response("describe_pipeline_execution", {
        "PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": "Succeeded", "CreationTime": NOW,
        "LastModifiedTime": NOW.replace(minute=30)}, execution)
    stubber.add_response("list_pipeline_parameters_for_execution", {"PipelineParameters": [
        {"Name": "AccuracyThreshold", "Value": "0.9"}]}, execution)
    stubber.add_response("describe_pipeline_definition_for_execution", {
        "PipelineDefinition": json.dumps(DEFINITION), "CreationTime": NOW}, execution)
    endpoint_config = "image-classifier-cloudrun0001"
    stubber.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": [
        listed_step("Endpoint", "Endpoint", {"Arn": arn("endpoint", "image-classifier")}, 20),
        listed_step("EndpointConfig", "EndpointConfig", {"Arn": arn("endpoint-config", endpoint_config)}, 19),
        listed_step("ImageClassifier-RegisterModel", "RegisterModel", {"Arn": arn("model-package",
                                                                                  f"{PIPELINE}/4")}, 18),
        listed_step("CheckAccuracy", "Condition", {"Outcome": "True"}, 17),
        listed_step("ExplainModel", "ProcessingJob", {"Arn": arn("processing-job", "explain-1")}, 16),
        listed_step("EvaluateModel", "ProcessingJob", {"Arn": arn("processing-job", "evaluate-1")}, 15),
        listed_step("TrainModel", "TrainingJob", {"Arn": arn("training-job", JOB)}, 10),
        listed_step("TuneHyperparameters", "TuningJob", {"Arn": arn("hyper-parameter-tuning-job", TUNING_JOB)}, 5),
    ]}, execution)
    stubber.add_response("describe_endpoint", describe_endpoint(), {"EndpointName": "image-classifier"})
    stubber.add_response("describe_endpoint_config", {
        "EndpointConfigName": endpoint_config, "EndpointConfigArn": arn("endpoint-config", endpoint_config),
        "CreationTime": NOW, "ProductionVariants": [{"VariantName": "AllTraffic", "InstanceType": "ml.m5.large",
                                                     "ModelName": "m"}]}, {"EndpointConfigName": endpoint_config})
    package = {"ModelPackageName": arn("model-package", f"{PIPELINE}/4")}
    stubber.add_response("describe_model_package", describe_model_package("PendingManualApproval"), package)
    stubber.add_response("describe_processing_job", describe_explain_job(), {"ProcessingJobName": "explain-1"})
    stubber.add_response("describe_processing_job", describe_evaluation_job(), {"ProcessingJobName": "evaluate-1"})
    stubber.add_response("describe_training_job", describe_training_job(), {"TrainingJobName": JOB})
    tuning = {"HyperParameterTuningJobName": TUNING_JOB}
    stubber.add_response("describe_hyper_parameter_tuning_job", describe_tuning_job(), tuning)
    stubber.add_response("list_training_jobs_for_hyper_parameter_tuning_job", {"TrainingJobSummaries": [
        training_summary(row) for row in tuning_properties(TUNING_JOB)["TrainingJobSummaries"]]}, tuning)
    # Asked again at the end: what is true now (approved since, endpoint still there).
    stubber.add_response("describe_model_package", describe_model_package("Approved"), package)
    stubber.add_response("describe_endpoint", describe_endpoint(), {"EndpointName": "image-classifier"})


def put_s3_outputs(s3: Any) -> None:
    s3.create_bucket(Bucket=SM_BUCKET)
    objects = {
        "eval/evaluation.json": json.dumps(evaluation_document(0.96)),
        "eval/confusion_matrix.json": json.dumps({"class_names": CLASSES, "matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}),
        f"m/{JOB}/output/output.tar.gz": tar_gz({"history.json": json.dumps(history(4))}),
        f"profiler/{JOB}/profiler-output/system/incremental/2026112008/1790000000.algo-1.json":
            system_metric_lines(10),
        f"profiler/{JOB}/rule-output/ProfilerReport-1700/profiler-output/profiler-reports/CPUBottleneck.json":
            json.dumps({"RuleTriggered": 2, "Recommendation": "Consider increasing the number of data loaders"}),
    }
    explained = explainability_document()
    objects |= {"explain/explainability/explainability.json": json.dumps(explained),
                "explain/bias/bias.json": json.dumps(bias_document())}
    objects |= {f"explain/explainability/{e['overlay']}": png_bytes() for e in explained["samples"]}
    for key, body in objects.items():
        s3.put_object(Bucket=SM_BUCKET, Key=key, Body=body.encode() if isinstance(body, str) else body)
