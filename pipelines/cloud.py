"""The sagemaker target: the real service, through boto3 and the SDK. Errors become one clear sentence each."""

from __future__ import annotations

import functools
import json
import mimetypes
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from pipelines.config import PipelineConfig
from pipelines.model_quality import accuracy_of, sagemaker_endpoint_url
from pipelines.s3_urls import parse_s3_url
from pipelines.targets import ExecutionSummary, ProgressCallback, StepSummary, TargetError, files_to_upload

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

    def upsert(self, definition: str, description: str) -> str:
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

    def start(self, parameters: dict[str, Any], wait: bool, on_progress: ProgressCallback | None) -> ExecutionSummary:
        with aws_errors(f"start of pipeline {self.pipeline_name}"):
            arn = self.client.start_pipeline_execution(
                PipelineName=self.pipeline_name,
                PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in parameters.items()],
            )["PipelineExecutionArn"]
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
                details={"metadata": s.get("Metadata", {})},
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

    def invoke(self, endpoint_name: str, files: Sequence[Path]) -> list[dict[str, Any]]:
        runtime = self.boto_session.client("sagemaker-runtime")
        results = []
        for path in files:
            with aws_errors(f"invoke of endpoint {endpoint_name}"):
                response = runtime.invoke_endpoint(
                    EndpointName=endpoint_name, ContentType=content_type_of(path), Accept="application/json",
                    Body=path.read_bytes(),
                )
            results.append({"file": str(path), "response": response["Body"].read().decode()})
        return results

    # retry / models / endpoints / delete-endpoint: see SageMakerOperations below.
    def retry(self, arn: str | None, wait: bool, on_progress: ProgressCallback | None) -> ExecutionSummary:
        return SageMakerOperations(self).retry(arn, wait, on_progress)

    def list_models(self) -> list[dict[str, Any]]:
        return SageMakerOperations(self).list_models()

    def list_endpoints(self) -> list[dict[str, Any]]:
        return SageMakerOperations(self).list_endpoints()

    def delete_endpoint(self, name: str) -> None:
        SageMakerOperations(self).delete_endpoint(name)

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


def content_type_of(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed == "application/json":
        return guessed
    return guessed if guessed and guessed.startswith("image/") else "application/x-image"


class SageMakerOperations:
    """The service's side of `retry`, `models`, `endpoints` and `delete-endpoint`."""

    def __init__(self, target: SageMakerTarget) -> None:
        self.target = target

    def retry(self, arn: str | None, wait: bool, on_progress: ProgressCallback | None) -> ExecutionSummary:
        arn = arn or self.target.describe_execution(None).arn
        with aws_errors(f"retry of {arn}"):
            self.target.client.retry_pipeline_execution(PipelineExecutionArn=arn)
        summary = self.target.describe_execution(arn)
        while wait and summary.status not in TERMINAL_STATUSES:
            if on_progress:
                on_progress(summary)
            time.sleep(POLL_SECONDS)
            summary = self.target.describe_execution(arn)
        return summary

    def list_models(self) -> list[dict[str, Any]]:
        group = self.target.config.project.model_package_group
        with aws_errors(f"models of group {group}"):
            pages = self.target.client.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group)
            rows = [row for page in pages for row in page.get("ModelPackageSummaryList", [])]
        return [{"arn": r["ModelPackageArn"], "approval": r.get("ModelApprovalStatus", ""),
                 "created": _iso(r.get("CreationTime")), "accuracy": self._accuracy(r["ModelPackageArn"])}
                for r in rows]

    def _accuracy(self, package_arn: str) -> float | None:
        """The test accuracy in the package's ModelMetrics (EvaluateModel's evaluation.json); None when the package
        has none or it cannot be read: one unreadable report must not hide the other versions."""
        try:
            described = self.target.client.describe_model_package(ModelPackageName=package_arn)
            uri = (((described.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}) \
                .get("S3Uri")
            if not uri:
                return None
            location = parse_s3_url(uri, "the model's statistics")
            body = self.target.boto_session.client("s3").get_object(Bucket=location.bucket, Key=location.key)
            return accuracy_of(json.loads(body["Body"].read()))
        except (ClientError, BotoCoreError, ValueError):
            return None

    def list_endpoints(self) -> list[dict[str, Any]]:
        region = self.target.boto_session.region_name or self.target.config.project.region
        with aws_errors("endpoints"):
            pages = self.target.client.get_paginator("list_endpoints").paginate()
            rows = [row for page in pages for row in page.get("Endpoints", [])]
        return [{"name": r["EndpointName"], "status": r.get("EndpointStatus", ""), "arn": r.get("EndpointArn", ""),
                 "url": sagemaker_endpoint_url(region, r["EndpointName"])} for r in rows]

    def delete_endpoint(self, name: str) -> None:
        with aws_errors(f"delete of endpoint {name}"):
            self.target.client.delete_endpoint(EndpointName=name)
