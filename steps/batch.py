"""BatchTransform: the registered model scores every test image, as a SageMaker Batch Transform job would score a
folder users bring: one request per file, one `<file>.out` per image holding the handler's JSON response."""

from __future__ import annotations

from sagemaker.transformer import Transformer
from sagemaker.workflow.execution_variables import ExecutionVariables
from sagemaker.workflow.functions import Join
from sagemaker.workflow.model_step import ModelStep
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.steps import ProcessingStep, TransformStep

from pipelines.config import BatchConfig
from pipelines.parameters import PipelineParameters
from pipelines.transform_requests import ACCEPT, BATCH_STRATEGY, CONTENT_TYPE
from steps.prepare_data import split_uri

STEP_NAME = "BatchTransform"


def batch_output_uri(bucket: str, pipeline_name: str) -> Join:
    """s3://<bucket>/<pipeline>/<execution id>/batch-output: one folder per execution."""
    return Join(on="/", values=[f"s3://{bucket}/{pipeline_name}", ExecutionVariables.PIPELINE_EXECUTION_ID,
                                "batch-output"])


def build_batch_transform_step(
    batch: BatchConfig,
    params: PipelineParameters,
    session: PipelineSession,
    output_uri: Join,
    prepare: ProcessingStep,
    create_model: ModelStep,
) -> TransformStep:
    transformer = Transformer(
        model_name=create_model.properties.ModelName,
        instance_count=1,
        instance_type=params["InferenceInstanceType"],
        strategy=BATCH_STRATEGY,
        assemble_with=None,  # with SplitType None each input file gets its own .out
        output_path=output_uri,
        accept=ACCEPT,
        max_payload=batch.max_payload_mb,
        max_concurrent_transforms=batch.max_concurrent_transforms,
        sagemaker_session=session,
    )
    return TransformStep(
        name=STEP_NAME,
        display_name="Batch transform",
        description="The registered model scores the test split: one .out (the handler's response) per image",
        step_args=transformer.transform(
            data=split_uri(prepare, "test"), data_type="S3Prefix", content_type=CONTENT_TYPE, split_type=None,
        ),
    )
