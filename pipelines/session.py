"""The SageMaker SDK session the definition is built with: quiet (see pipelines/__init__.py), offline-capable,
no telemetry."""

from __future__ import annotations

import functools
from enum import Enum
from pathlib import Path

import boto3
import sagemaker.telemetry.telemetry_logging as sdk_telemetry
import sagemaker.utils as sdk_utils
from sagemaker.workflow.pipeline_context import PipelineSession

from pipelines.config import LOCAL_BUCKET, LOCAL_ROLE_ARN, PipelineConfig, bucket_and_role  # noqa: F401
from pipelines.s3_bridge import S3Bridge


def _no_telemetry(*args: object, **kwargs: object) -> None:
    """Telemetry off. Each SDK call would otherwise ask STS for the account id and GET an AWS URL (with no real
    timeout), which hangs offline. The documented opt-out (TelemetryOptOut in the SDK config) makes the SDK
    re-validate its config JSON schema on every lookup: 840 lookups, +10 s per definition measured here."""


sdk_telemetry._send_telemetry_request = _no_telemetry
# image_uris.retrieve re-parses botocore's endpoints.json on every call: a definition makes ~21 (five container images,
# one per Debugger/Profiler rule), ~70% of a build's CPU measured here. The data is static for the installed botocore.
sdk_utils._botocore_resolver = functools.cache(sdk_utils._botocore_resolver)


class Uploads(Enum):
    """Where the code the SDK uploads while building step arguments goes."""

    DISCARD = "discard"  # nowhere: `definition`/`validate` need only the URIs
    WORKSPACE = "workspace"  # the local target's folder-backed S3


def build_pipeline_session(
    config: PipelineConfig,
    uploads: Uploads,
    workspace_s3: Path | None = None,
    boto_session: boto3.Session | None = None,
    bridge: S3Bridge | None = None,
) -> PipelineSession:
    """A PipelineSession whose S3 uploads go where `uploads` says; nothing else calls AWS while building.

    `bridge` overrides `uploads` with a bridge of the caller's (e.g. one recording uploads to replay later).
    """
    boto_session = boto_session or boto3.Session(region_name=config.project.region)
    if bridge is not None:
        bridge.attach(boto_session)
    elif uploads is Uploads.DISCARD:
        S3Bridge(None).attach(boto_session)
    elif uploads is Uploads.WORKSPACE:
        if workspace_s3 is None:
            raise ValueError("Uploads.WORKSPACE needs workspace_s3")
        S3Bridge(workspace_s3).attach(boto_session)
    bucket, _ = bucket_and_role(config)
    return PipelineSession(boto_session=boto_session, default_bucket=bucket)
