"""Deploy: model -> endpoint config (one per execution) -> endpoint, created or updated by the service."""

from __future__ import annotations

from sagemaker.model import Model
from sagemaker.workflow.endpoint_step import EndpointConfigStep, EndpointStep
from sagemaker.workflow.execution_variables import ExecutionVariables
from sagemaker.workflow.functions import Join
from sagemaker.workflow.model_step import ModelStep
from sagemaker.workflow.pipeline_context import PipelineSession

from pipelines.parameters import PipelineParameters
from steps.registration import CREATE_MODEL_STEP

ENDPOINT_CONFIG_STEP_NAME = "EndpointConfig"
ENDPOINT_STEP_NAME = "Endpoint"


def build_create_model_step(params: PipelineParameters, model: Model, register: ModelStep) -> ModelStep:
    """The SageMaker Model the endpoint and the batch transform both serve."""
    return ModelStep(
        name=CREATE_MODEL_STEP,
        display_name="Create model",
        step_args=model.create(instance_type=params["InferenceInstanceType"]),
        depends_on=[register],
    )


def build_endpoint_steps(params: PipelineParameters, session: PipelineSession, create_model: ModelStep) -> list:
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
