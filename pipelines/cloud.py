"""The sagemaker target: the real service, through boto3 and the SDK. Errors become one clear sentence each."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from pipelines import autoscaling
from pipelines.config import PipelineConfig
from pipelines.model_quality import accuracy_of, bias_summary_of, sagemaker_endpoint_url
from pipelines.parameters import ParameterError, coerce_parameters, to_service_text
from pipelines.s3_bridge import S3Bridge
from pipelines.s3_urls import parse_s3_url
from pipelines.target_base import (
    ExecutionSummary,
    ProgressCallback,
    StepSummary,
    TargetError,
    content_type_of,
    files_to_upload,
)
from pipelines.transform_requests import transform_job_request

if TYPE_CHECKING:
    from pipelines.report.model import ReportData

CREDENTIAL_ERRORS = (
    "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException",
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "AccessDeniedException",
)
TERMINAL_STATUSES = ("Succeeded", "Failed", "Stopped")
POLL_SECONDS = 15.0


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turns botocore's exceptions into a TargetError that says what to do."""
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise TargetError(
            f"{action}: no AWS credentials found. Configure them (aws configure, AWS_PROFILE, or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or use --target local"
        ) from None
    except NoRegionError:
        raise TargetError(f"{action}: no AWS region: pass --region or set PIPELINE_REGION") from None
    except EndpointConnectionError as err:
        raise TargetError(f"{action}: cannot reach AWS ({err}). Check the network and the region") from None
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        message = err.response.get("Error", {}).get("Message", str(err))
        if code in CREDENTIAL_ERRORS:
            raise TargetError(f"{action}: AWS refused the credentials or the permission ({code}: {message})") from None
        raise TargetError(f"{action}: {code}: {message}") from None
    except BotoCoreError as err:
        raise TargetError(f"{action}: {err}") from None


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _failure(step: dict[str, Any]) -> str | None:
    return step.get("FailureReason") or None


class SageMakerTarget:
    name = "sagemaker"

    def __init__(self, config: PipelineConfig, boto_session: boto3.Session | None = None) -> None:
        self.config = config
        self.boto_session = boto_session or boto3.Session(region_name=config.project.region)
        self.pipeline_name = config.project.pipeline_name

    @functools.cached_property
    def client(self) -> Any:
        return self.boto_session.client("sagemaker")

    def code_uploads(self) -> S3Bridge:
        return S3Bridge(None, record=True)

    def upsert(self, definition: str, description: str, code: S3Bridge | None = None) -> str:
        if code is not None:
            s3 = self.boto_session.client("s3")
            with aws_errors(f"upload of the pipeline's code to s3://{self.config.project.bucket}"):
                code.replay(lambda bucket, key, data: s3.put_object(Bucket=bucket, Key=key, Body=data))
        request = {
            "PipelineName": self.pipeline_name,
            "PipelineDefinition": definition,
            "PipelineDescription": description,
            "RoleArn": self.config.project.role_arn,
        }
        with aws_errors(f"upsert of pipeline {self.pipeline_name}"):
            try:
                return self.client.create_pipeline(**request, PipelineDisplayName=self.pipeline_name)["PipelineArn"]
            except ClientError as err:
                error = err.response.get("Error", {})
                # The service's (and the SDK's) way to say "exists": create, then update on this exact error.
                if not (error.get("Code") == "ValidationException" and "already exists" in error.get("Message", "")):
                    raise
            return self.client.update_pipeline(**request)["PipelineArn"]

    def start(self, parameters: dict[str, Any], wait: bool, on_progress: ProgressCallback | None,
              use_cache: bool = True) -> ExecutionSummary:
        if not use_cache:
            raise TargetError("--no-cache works on the local target only: StartPipelineExecution has no switch for "
                              "step caching, SageMaker reuses a step whenever its CacheConfig allows. Change an "
                              "input (a --param) or the step's code to make it run again")
        with aws_errors(f"start of pipeline {self.pipeline_name}"):
            stored = self.client.describe_pipeline(PipelineName=self.pipeline_name)["PipelineDefinition"]
            # Checked against the definition that will run (the service only says "invalid" of a bad value).
            declared = json.loads(stored).get("Parameters") or []
            try:
                values = coerce_parameters(declared, parameters)
            except ParameterError as err:
                raise TargetError(str(err)) from None
            arn = self.client.start_pipeline_execution(
                PipelineName=self.pipeline_name,
                PipelineParameters=[{"Name": name, "Value": to_service_text(values[name])} for name in parameters],
            )["PipelineExecutionArn"]
        return self._follow(arn, wait, on_progress)

    def retry(self, execution: str | None, wait: bool, on_progress: ProgressCallback | None) -> ExecutionSummary:
        arn = execution or self.describe_execution(None).arn
        with aws_errors(f"retry of {arn}"):
            self.client.retry_pipeline_execution(PipelineExecutionArn=arn)
        return self._follow(arn, wait, on_progress)

    def _follow(self, arn: str, wait: bool, on_progress: ProgressCallback | None) -> ExecutionSummary:
        summary = self.describe_execution(arn)
        while wait and summary.status not in TERMINAL_STATUSES:
            if on_progress:
                on_progress(summary)
            time.sleep(POLL_SECONDS)
            summary = self.describe_execution(arn)
        return summary

    def describe_execution(self, arn: str | None) -> ExecutionSummary:
        with aws_errors("status"):
            if arn is None:
                latest = self.client.list_pipeline_executions(
                    PipelineName=self.pipeline_name, SortBy="CreationTime", SortOrder="Descending", MaxResults=1
                ).get("PipelineExecutionSummaries", [])
                if not latest:
                    raise TargetError(f"pipeline {self.pipeline_name} has no executions yet: run `start` first")
                arn = latest[0]["PipelineExecutionArn"]
            described = self.client.describe_pipeline_execution(PipelineExecutionArn=arn)
            parameters = self.client.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)
        return ExecutionSummary(
            arn=arn,
            status=described["PipelineExecutionStatus"],
            failure_reason=described.get("FailureReason") or None,
            started=_iso(described.get("CreationTime")),
            ended=_iso(described.get("LastModifiedTime")) if described["PipelineExecutionStatus"]
            in TERMINAL_STATUSES else None,
            parameters={p["Name"]: p["Value"] for p in parameters.get("PipelineParameters", [])},
            steps=self._steps(arn),
        )

    def _steps(self, arn: str) -> list[StepSummary] | None:
        try:
            pages = self.client.get_paginator("list_pipeline_execution_steps").paginate(PipelineExecutionArn=arn)
            raw = [step for page in pages for step in page.get("PipelineExecutionSteps", [])]
        except (ClientError, NotImplementedError):
            return None  # moto does not implement it; the real service does
        return [
            StepSummary(
                name=s["StepName"],
                type=self._step_type(s),
                status=s.get("StepStatus", ""),
                failure_reason=_failure(s),
                started=_iso(s.get("StartTime")),
                ended=_iso(s.get("EndTime")),
                details={"metadata": s.get("Metadata", {}),
                         **{key: s[key] for key in ("CacheHitResult", "AttemptCount") if key in s}},
            )
            for s in reversed(raw)
        ]

    @staticmethod
    def _step_type(step: dict[str, Any]) -> str:
        metadata = step.get("Metadata", {})
        return next(iter(metadata), "") if metadata else ""

    def list_executions(self) -> list[ExecutionSummary]:
        with aws_errors("executions"):
            pages = self.client.get_paginator("list_pipeline_executions").paginate(PipelineName=self.pipeline_name)
            rows = [row for page in pages for row in page.get("PipelineExecutionSummaries", [])]
        return [
            ExecutionSummary(
                arn=row["PipelineExecutionArn"],
                status=row.get("PipelineExecutionStatus", ""),
                failure_reason=row.get("PipelineExecutionFailureReason"),
                started=_iso(row.get("StartTime")),
            )
            for row in rows
        ]

    def approve(self, model_package_arn: str, status: str) -> None:
        with aws_errors(f"approval of {model_package_arn}"):
            self.client.update_model_package(ModelPackageArn=model_package_arn, ModelApprovalStatus=status)

    def invoke(self, endpoint_name: str, files: Sequence[Path], target_model: str | None = None
               ) -> list[dict[str, Any]]:
        runtime = self.boto_session.client("sagemaker-runtime")
        picked = {"TargetModel": target_model} if target_model is not None else {}
        results = []
        for path in files:
            with aws_errors(f"invoke of endpoint {endpoint_name}"):
                response = runtime.invoke_endpoint(
                    EndpointName=endpoint_name, ContentType=content_type_of(path), Accept="application/json",
                    Body=path.read_bytes(), **picked,
                )
            results.append({"file": str(path), "response": response["Body"].read().decode()})
        return results

    def attribution_overlay(self, endpoint_name: str, image: bytes) -> bytes:
        raise TargetError(f"no overlay for endpoint {endpoint_name}: a SageMaker endpoint answers labels only and its "
                          "weights stay in its container; the overlays of the registered model are in the report's "
                          "Explainability section (`pipeline.py report`), and the try-it page draws them for a "
                          "local endpoint (`--target local`)")

    def upload_data(self, source: Path, url: str, progress: Callable[[str], None] = print) -> str:
        """Uploads a dataset folder (every file, paths kept) or one archive under the S3 prefix `url`."""
        destination = parse_s3_url(url, "the upload destination")
        files = files_to_upload(source)
        s3 = self.boto_session.client("s3")
        with aws_errors(f"upload to {destination}"):
            for path, relative in files:
                s3.upload_file(str(path), destination.bucket, f"{destination.key}/{relative}")
        progress(f"uploaded {len(files)} file(s) to {destination}")
        return str(destination)

    def list_models(self) -> list[dict[str, Any]]:
        group = self.config.project.model_package_group
        with aws_errors(f"models of group {group}"):
            pages = self.client.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group)
            rows = [row for page in pages for row in page.get("ModelPackageSummaryList", [])]
        return [{"arn": r["ModelPackageArn"], "approval": r.get("ModelApprovalStatus", ""),
                 "created": _iso(r.get("CreationTime")), **self._quality(r["ModelPackageArn"])} for r in rows]

    def _quality(self, package_arn: str) -> dict[str, Any]:
        """The test accuracy (EvaluateModel's evaluation.json) and the bias verdict (ExplainModel's bias.json) the
        package's ModelMetrics point at; None for each the package lacks or that cannot be read: one unreadable
        report must not hide the other versions."""
        try:
            metrics = self.client.describe_model_package(ModelPackageName=package_arn).get("ModelMetrics") or {}
        except (ClientError, BotoCoreError):
            metrics = {}
        return {"accuracy": accuracy_of(self._metrics_document(metrics, "ModelQuality", "Statistics")),
                "bias": bias_summary_of(self._metrics_document(metrics, "Bias", "Report"))}

    def _metrics_document(self, metrics: dict[str, Any], section: str, kind: str) -> Any:
        uri = ((metrics.get(section) or {}).get(kind) or {}).get("S3Uri")
        if not uri:
            return None
        try:
            location = parse_s3_url(uri, f"the model's {section} {kind}")
            body = self.boto_session.client("s3").get_object(Bucket=location.bucket, Key=location.key)
            return json.loads(body["Body"].read())
        except (ClientError, BotoCoreError, ValueError):
            return None

    def list_endpoints(self) -> list[dict[str, Any]]:
        region = self.boto_session.region_name or self.config.project.region
        with aws_errors("endpoints"):
            pages = self.client.get_paginator("list_endpoints").paginate()
            rows = [row for page in pages for row in page.get("Endpoints", [])]
        return [{"name": r["EndpointName"], "status": r.get("EndpointStatus", ""), "arn": r.get("EndpointArn", ""),
                 "url": sagemaker_endpoint_url(region, r["EndpointName"])} for r in rows]

    def delete_endpoint(self, name: str) -> None:
        with aws_errors(f"delete of endpoint {name}"):
            self.client.delete_endpoint(EndpointName=name)

    def autoscale(self, endpoint_name: str, remove: bool) -> dict[str, Any]:
        deployment = self.config.deployment
        if not remove and not deployment.autoscaling:
            raise TargetError("autoscaling is off ([deployment] autoscaling = false): set autoscaling = true in "
                              "your --config file (or PIPELINE_DEPLOYMENT_AUTOSCALING=true) to apply the policy; "
                              "`autoscale --remove` takes an applied one off")
        with aws_errors(f"endpoint {endpoint_name}"):
            described = self.client.describe_endpoint(EndpointName=endpoint_name)
        if not remove and described.get("EndpointStatus") != "InService":
            raise TargetError(f"endpoint {endpoint_name} is {described.get('EndpointStatus')}: autoscaling can be "
                              "applied once it is InService (run `autoscale` again then)")
        variants = [variant["VariantName"] for variant in described.get("ProductionVariants") or []]
        scaling = self.boto_session.client("application-autoscaling")
        with aws_errors(f"autoscaling of endpoint {endpoint_name}"):
            if remove:
                return {"endpoint": endpoint_name, "applicable": True,
                        "removed": autoscaling.remove_policies(scaling, endpoint_name, variants)}
            return {"endpoint": endpoint_name, "applicable": True,
                    "applied": autoscaling.apply_policies(scaling, deployment, endpoint_name, variants)}

    def logs(self, execution: str | None, step: str | None, host: str | None = None) -> list[tuple[str, Path]]:
        raise TargetError("on SageMaker, job logs are in CloudWatch Logs (/aws/sagemaker/TrainingJobs, "
                          "/aws/sagemaker/ProcessingJobs; one log stream per host: <job>/algo-N-<time>); "
                          "`logs` reads the local engine's")

    def batch_transform(self, model_package_arn: str | None, input_url: str, output_url: str | None,
                        wait: bool, progress: Callable[[str], None] = print) -> dict[str, Any]:
        """CreateModel from the package (the service resolves its container), then CreateTransformJob with the
        pipeline's BatchTransform settings; with `wait`, polls DescribeTransformJob to the end."""
        from pipelines.building import require_cloud_settings

        require_cloud_settings(self.config)
        arn = model_package_arn or self._newest_model_package()
        job = f"batch-{int(time.time())}"
        output = (output_url or f"s3://{self.config.project.bucket}/{self.pipeline_name}/batch/{job}").rstrip("/")
        request = transform_job_request(job, job, str(parse_s3_url(input_url, "--input")),
                                        str(parse_s3_url(output, "--output")), self.config.batch,
                                        self.config.instances.inference_type)
        with aws_errors(f"batch transform with {arn}"):
            self.client.create_model(ModelName=job, ExecutionRoleArn=self.config.project.role_arn,
                                     PrimaryContainer={"ModelPackageName": arn})
            self.client.create_transform_job(**request)
            progress(f"transform job {job} started: {input_url} -> {output}")
            status = self.client.describe_transform_job(TransformJobName=job)
            while wait and status["TransformJobStatus"] in ("InProgress", "Stopping"):
                time.sleep(POLL_SECONDS)
                status = self.client.describe_transform_job(TransformJobName=job)
        if status["TransformJobStatus"] == "Failed":
            raise TargetError(f"transform job {job} failed: {status.get('FailureReason', 'no reason given')} "
                              f"(CloudWatch Logs /aws/sagemaker/TransformJobs, stream {job}/...)")
        return {"job": job, "status": status["TransformJobStatus"], "model_package": arn, "input": input_url,
                "output": output}

    def _newest_model_package(self) -> str:
        group = self.config.project.model_package_group
        with aws_errors(f"models of group {group}"):
            newest = self.client.list_model_packages(ModelPackageGroupName=group, SortBy="CreationTime",
                                                     SortOrder="Descending", MaxResults=1)["ModelPackageSummaryList"]
        if not newest:
            raise TargetError(f"no model is registered in {group} yet: run the pipeline, or pass --model-package ARN")
        return str(newest[0]["ModelPackageArn"])

    def report_data(self, execution: str | None) -> ReportData:
        from pipelines.report.sagemaker import SageMakerCollector

        region = self.config.project.region or self.boto_session.region_name
        collector = SageMakerCollector(self.client, self.boto_session.client("s3"), self.pipeline_name, region)
        with aws_errors("report"):
            return collector.collect(execution)

    # ------------------------------------------------------------------------------------------ schedules
    def put_schedule(self, name: str, cron: str | None, rate: tuple[int, str] | None, enabled: bool) -> list[str]:
        pipeline = self._sdk_pipeline()
        from sagemaker.workflow.triggers import PipelineSchedule

        trigger = PipelineSchedule(name=name, cron=cron, rate=rate, enabled=enabled)
        with aws_errors("schedule"):
            try:
                return pipeline.put_triggers([trigger], role_arn=self.config.project.role_arn)
            except RuntimeError as err:  # the SDK's word for "upsert the pipeline first"
                raise TargetError(f"schedule: {err}") from None

    def describe_schedule(self, name: str) -> dict[str, Any]:
        with aws_errors("schedule"):
            return self._sdk_pipeline().describe_trigger(name)

    def delete_schedule(self, name: str) -> None:
        with aws_errors("schedule"):
            self._sdk_pipeline().delete_triggers([name])

    def _sdk_pipeline(self) -> Any:
        """The SDK's Pipeline by name: its trigger methods wrap EventBridge Scheduler with the role and target
        SageMaker expects."""
        from pipelines.building import require_cloud_settings
        from pipelines.session import build_sdk_session

        require_cloud_settings(self.config)
        from sagemaker.workflow.pipeline import Pipeline

        return Pipeline(name=self.pipeline_name, sagemaker_session=build_sdk_session(self.config, self.boto_session))
