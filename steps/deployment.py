"""Deploy: model -> endpoint config (one per execution) -> endpoint, created or updated by the service.

Multi-model mode ([deployment] mode = "multi-model"): PublishModel copies the registered model.tar.gz under one S3
prefix as `v<version>.tar.gz`, and the endpoint's model is that prefix in `Mode: MultiModel`: every version
published there is served by the one endpoint, picked per request with `TargetModel`.
"""

from __future__ import annotations

from sagemaker.model import Model
from sagemaker.multidatamodel import MultiDataModel
from sagemaker.processing import ProcessingInput, ProcessingOutput
from sagemaker.workflow.endpoint_step import EndpointConfigStep, EndpointStep
from sagemaker.workflow.execution_variables import ExecutionVariables
from sagemaker.workflow.functions import Join
from sagemaker.workflow.model_step import ModelStep
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.steps import ProcessingStep, TrainingStep

from pipelines.config import PipelineConfig
from pipelines.parameters import PipelineParameters
from steps.containers import PROCESSING_ROOT, SCRIPTS_DIR, script_processor
from steps.registration import CREATE_MODEL_STEP

ENDPOINT_CONFIG_STEP_NAME = "EndpointConfig"
ENDPOINT_STEP_NAME = "Endpoint"
PUBLISH_STEP_NAME = "PublishModel"
MULTI_MODEL_STEP = "MultiModel"  # ModelStep names its inner step "MultiModel-CreateModel"
PUBLISHED_OUTPUT = "published"


def multi_model_prefix(bucket: str, pipeline_name: str) -> str:
    """s3://<bucket>/<pipeline>/multi-model/: the endpoint's model data, one `v<version>.tar.gz` per version."""
    return f"s3://{bucket}/{pipeline_name}/multi-model/"


def build_publish_step(
    config: PipelineConfig, params: PipelineParameters, session: PipelineSession, train: TrainingStep,
    register: ModelStep, prefix: str,
) -> ProcessingStep:
    processor = script_processor(config, params, session, "publish")
    step_args = processor.run(
        code=str(SCRIPTS_DIR / "publish_model.py"),
        inputs=[ProcessingInput(source=train.properties.ModelArtifacts.S3ModelArtifacts,
                                destination=f"{PROCESSING_ROOT}/model")],
        outputs=[ProcessingOutput(output_name=PUBLISHED_OUTPUT, source=f"{PROCESSING_ROOT}/{PUBLISHED_OUTPUT}",
                                  destination=prefix)],
        arguments=["--model-package-arn", register.properties.ModelPackageArn],
    )
    return ProcessingStep(
        name=PUBLISH_STEP_NAME,
        display_name="Publish model",
        description="Copies the registered model.tar.gz under the multi-model prefix as v<version>.tar.gz",
        step_args=step_args,
    )


def build_multi_model_step(params: PipelineParameters, session: PipelineSession, model: Model, prefix: str,
                           publish: ProcessingStep) -> ModelStep:
    """The endpoint's model in multi-model mode: the serving image over every artifact under `prefix`."""
    multi_model = MultiDataModel(
        name=MULTI_MODEL_STEP,  # ModelStep leaves ModelName out of the request: the service names each one
        model_data_prefix=prefix,
        image_uri=model.image_uri,
        env=model.env,
        role=model.role,
        sagemaker_session=session,
    )
    return ModelStep(
        name=MULTI_MODEL_STEP,
        display_name="Create multi-model",
        step_args=multi_model.create(instance_type=params["InferenceInstanceType"]),
        depends_on=[publish],
    )


def build_create_model_step(params: PipelineParameters, model: Model, register: ModelStep) -> ModelStep:
    """The SageMaker Model the endpoint and the batch transform both serve."""
    return ModelStep(
        name=CREATE_MODEL_STEP,
        display_name="Create model",
        step_args=model.create(instance_type=params["InferenceInstanceType"]),
        depends_on=[register],
    )


def build_endpoint_steps(params: PipelineParameters, session: PipelineSession, create_model: ModelStep) -> list:
    """EndpointConfig and Endpoint over `create_model` (the single model, or the multi-model one)."""
    endpoint_config = EndpointConfigStep(
        name=ENDPOINT_CONFIG_STEP_NAME,
        display_name="Endpoint config",
        description="A new config per execution, so an update never collides with the live one",
        step_args=session.create_endpoint_config(
            # EndpointName-<execution id>: unique per execution, within the 63-character limit.
            name=Join(on="-", values=[params["EndpointName"], ExecutionVariables.PIPELINE_EXECUTION_ID]),
            model_name=create_model.properties.ModelName,
            initial_instance_count=params["InferenceInstanceCount"],
            instance_type=params["InferenceInstanceType"],
        ),
    )
    endpoint = EndpointStep(
        name=ENDPOINT_STEP_NAME,
        display_name="Endpoint",
        description="Creates the endpoint, or updates it in place when it exists",
        step_args=session.create_endpoint(
            endpoint_name=params["EndpointName"], config_name=endpoint_config.properties.EndpointConfigName
        ),
    )
    return [endpoint_config, endpoint]
