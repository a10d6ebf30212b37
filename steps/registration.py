"""RegisterModel: a new version in the Model Registry group, with the evaluation report as its ModelQuality metrics
and, when ExplainModel runs, its bias and explainability reports as ModelMetrics.Bias and .Explainability."""

from __future__ import annotations

from sagemaker.model import Model
from sagemaker.model_metrics import MetricsSource, ModelMetrics
from sagemaker.workflow.model_step import ModelStep
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.steps import ProcessingStep, TrainingStep

from pipelines.config import PipelineConfig
from pipelines.parameters import PipelineParameters
from pipelines.session import bucket_and_role
from steps.containers import pytorch_image_uri
from steps.evaluation import report_uri
from steps.explain import BIAS_FILE, BIAS_OUTPUT, EXPLAINABILITY_FILE, EXPLAINABILITY_OUTPUT
from steps.explain import report_uri as explain_report_uri

# ModelStep names its inner steps "<name>-RegisterModel" and "<name>-CreateModel".
REGISTER_MODEL_STEP = "ImageClassifier"
CREATE_MODEL_STEP = "ServingModel"
# model.tar.gz carries code/inference.py (train.py writes it), so the serving container needs only to be told
# where; a PyTorchModel with entry_point would add a hidden RepackModel training job to every execution.
SERVING_ENV = {
    "SAGEMAKER_PROGRAM": "inference.py",
    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
}


def build_serving_model(
    config: PipelineConfig, params: PipelineParameters, session: PipelineSession, train: TrainingStep
) -> Model:
    _, role = bucket_and_role(config)
    return Model(
        image_uri=pytorch_image_uri(config, config.instances.inference_type, "inference"),
        model_data=train.properties.ModelArtifacts.S3ModelArtifacts,
        env={**SERVING_ENV, "SAGEMAKER_REGION": config.project.region},
        role=role,
        sagemaker_session=session,
    )


def build_register_step(
    config: PipelineConfig,
    params: PipelineParameters,
    model: Model,
    evaluation: ProcessingStep,
    explain: ProcessingStep | None = None,
) -> ModelStep:
    statistics = MetricsSource(content_type="application/json", s3_uri=report_uri(evaluation))
    if explain is None:
        metrics = ModelMetrics(model_statistics=statistics)
    else:
        metrics = ModelMetrics(
            model_statistics=statistics,
            bias=MetricsSource(content_type="application/json",
                               s3_uri=explain_report_uri(explain, BIAS_OUTPUT, BIAS_FILE)),
            explainability=MetricsSource(content_type="application/json",
                                         s3_uri=explain_report_uri(explain, EXPLAINABILITY_OUTPUT,
                                                                   EXPLAINABILITY_FILE)))
    step_args = model.register(
        content_types=list(config.registry.content_types),
        response_types=list(config.registry.response_types),
        inference_instances=[params["InferenceInstanceType"]],
        model_package_group_name=config.project.model_package_group,
        approval_status=params["ModelApprovalStatus"],
        model_metrics=metrics,
        description=f"{config.project.pipeline_name}: image classifier trained and gated by the pipeline",
    )
    return ModelStep(name=REGISTER_MODEL_STEP, display_name="Register model", step_args=step_args)
