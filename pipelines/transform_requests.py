"""The CreateTransformJob request of a batch transform outside the pipeline (`pipeline.py batch`), with the same
settings as the pipeline's BatchTransform step (steps/batch.py), so both score a folder the same way."""

from __future__ import annotations

from typing import Any

from pipelines.config import BatchConfig

# Each S3 object is one request (SplitType None), sent as an image of the type its bytes say (the handler sniffs).
CONTENT_TYPE = "application/x-image"
ACCEPT = "application/json"
BATCH_STRATEGY = "SingleRecord"


def transform_job_request(job_name: str, model_name: str, input_url: str, output_url: str, batch: BatchConfig,
                          instance_type: str) -> dict[str, Any]:
    return {
        "TransformJobName": job_name,
        "ModelName": model_name,
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_url}},
                           "ContentType": CONTENT_TYPE},  # SplitType None: each file is one record
        "TransformOutput": {"S3OutputPath": output_url, "Accept": ACCEPT},
        "TransformResources": {"InstanceCount": 1, "InstanceType": instance_type},
        "BatchStrategy": BATCH_STRATEGY,
        "MaxPayloadInMB": batch.max_payload_mb,
        "MaxConcurrentTransforms": batch.max_concurrent_transforms,
    }
