"""The SageMaker SDK sessions we build: quiet, offline-capable, no telemetry.

The SDK is patched (`prepare_sdk`) where a session is built, never on import: importing this module changes nothing.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import boto3

from pipelines.config import LOCAL_BUCKET, LOCAL_ROLE_ARN, PipelineConfig, bucket_and_role  # noqa: F401
from pipelines.s3_bridge import S3Bridge

if TYPE_CHECKING:
    from sagemaker.session import Session
    from sagemaker.workflow.pipeline_context import PipelineSession


def quiet_sdk_logging() -> None:
    """Before anything imports the SageMaker SDK: no v3 migration banner, no "Running within a PipelineSession"
    noise, no "Not applying SDK defaults" lines. `--verbose` undoes the log levels (pipelines/cli_app.py)."""
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    warnings.filterwarnings("ignore", message="Running within a PipelineSession")
    for name in ("sagemaker", "sagemaker.config"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _no_telemetry(*args: object, **kwargs: object) -> None:
    """Telemetry off. Each SDK call would otherwise ask STS for the account id and GET an AWS URL (with no real
    timeout), which hangs offline. The documented opt-out (TelemetryOptOut in the SDK config) makes the SDK
    re-validate its config JSON schema on every lookup: 840 lookups, +10 s per definition measured here."""


@functools.cache
def prepare_sdk() -> None:
    """Applies, once per process, what every session we build needs from the SDK."""
    quiet_sdk_logging()
    import sagemaker.telemetry.telemetry_logging as sdk_telemetry
    import sagemaker.utils as sdk_utils

    sdk_telemetry._send_telemetry_request = _no_telemetry
    # image_uris.retrieve re-parses botocore's endpoints.json on every call: a definition makes ~21 (five container
    # images, one per Debugger/Profiler rule), ~70% of a build's CPU measured here. The data is static per botocore.
    sdk_utils._botocore_resolver = functools.cache(sdk_utils._botocore_resolver)


def build_sdk_session(config: PipelineConfig, boto_session: boto3.Session) -> Session:
    """A plain SDK session (schedules): our bucket, so the SDK never asks STS for the account to name one."""
    prepare_sdk()
    from sagemaker.session import Session

    bucket, _ = bucket_and_role(config)
    return Session(boto_session=boto_session, default_bucket=bucket)


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
    prepare_sdk()
    from sagemaker.workflow.pipeline_context import PipelineSession

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
