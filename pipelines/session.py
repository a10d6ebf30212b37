"""The SageMaker SDK session the definition is built with: quiet, offline-capable, no telemetry.

Importing this module before `sagemaker` matters: the SDK logs "Not applying SDK defaults" at import time and
prints a v3 migration banner unless told otherwise.
"""

from __future__ import annotations

import logging
import os
from enum import Enum
from pathlib import Path

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
logging.getLogger("sagemaker.config").setLevel(logging.WARNING)

import boto3  # noqa: E402
from sagemaker.workflow.pipeline_context import PipelineSession  # noqa: E402

from pipelines.config import PipelineConfig  # noqa: E402
from pipelines.s3_bridge import S3Bridge  # noqa: E402

# The local target's identity: the local engine checks requests against botocore's shapes, which need an ARN there.
LOCAL_ROLE_ARN = "arn:aws:iam::000000000000:role/LocalPipelineExecution"
LOCAL_BUCKET = "local-pipeline"
# Telemetry opt-out is read from the SDK "config"; passing it as a dict avoids a config file on disk.
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


class Uploads(Enum):
    """Where the code the SDK uploads while building step arguments goes."""

    AWS = "aws"  # real S3 (upsert on the sagemaker target)
    DISCARD = "discard"  # nowhere: `definition`/`validate` need only the URIs
    WORKSPACE = "workspace"  # the local target's folder-backed S3


def bucket_and_role(config: PipelineConfig) -> tuple[str, str]:
    """The bucket and role the definition uses; the local target has its own."""
    if config.project.target == "local":
        return config.project.bucket or LOCAL_BUCKET, config.project.role_arn or LOCAL_ROLE_ARN
    return config.project.bucket, config.project.role_arn


def build_pipeline_session(
    config: PipelineConfig,
    uploads: Uploads,
    workspace_s3: Path | None = None,
    boto_session: boto3.Session | None = None,
) -> PipelineSession:
    """A PipelineSession whose S3 uploads go where `uploads` says; nothing else calls AWS while building."""
    boto_session = boto_session or boto3.Session(region_name=config.project.region)
    if uploads is Uploads.DISCARD:
        S3Bridge(None).attach(boto_session)
    elif uploads is Uploads.WORKSPACE:
        if workspace_s3 is None:
            raise ValueError("Uploads.WORKSPACE needs workspace_s3")
        S3Bridge(workspace_s3).attach(boto_session)
    bucket, _ = bucket_and_role(config)
    return PipelineSession(boto_session=boto_session, default_bucket=bucket, sagemaker_config=SDK_CONFIG)
