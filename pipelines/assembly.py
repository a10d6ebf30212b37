r"""`get_pipeline`: the whole pipeline, top to bottom, made only of SageMaker SDK constructs.

PrepareData -> TuneHyperparameters -> TrainModel -> EvaluateModel -> CheckAccuracy
                                                            \-> ExplainModel ([explain] enabled; beside the gate)
    if  -> RegisterModel -> CreateModel -> EndpointConfig -> Endpoint
                                      \-> BatchTransform (the test split; [batch] enabled)
        ([deployment] mode = "multi-model": RegisterModel -> PublishModel -> MultiModel -> EndpointConfig -> Endpoint)
    else-> AccuracyTooLow (after ExplainModel: a failed model is explained too)
Both targets run this one definition: SageMaker, and the local engine.
"""

from __future__ import annotations

from sagemaker.workflow.pipeline import Pipeline
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.step_collections import StepCollection
from sagemaker.workflow.steps import CacheConfig, Step

from pipelines.config import PipelineConfig, bucket_and_role
from pipelines.parameters import build_parameters
from steps.batch import batch_output_uri, build_batch_transform_step
from steps.deployment import (
    build_create_model_step,
    build_endpoint_steps,
    build_multi_model_step,
    build_publish_step,
    multi_model_prefix,
)
from steps.evaluation import build_evaluation_step
from steps.explain import build_explain_step
from steps.gate import build_condition_step, build_fail_step
from steps.prepare_data import build_prepare_data_step
from steps.registration import build_register_step, build_serving_model
from steps.retry_policies import apply_retry_policies
from steps.training import build_training_step
from steps.tuning import build_tuning_step

# An unchanged step re-run within this window reuses the earlier result instead of paying for the job again.
CACHE_EXPIRY = "P30D"


def get_pipeline(config: PipelineConfig, session: PipelineSession) -> Pipeline:
    params = build_parameters(config)
    cache = CacheConfig(enable_caching=True, expire_after=CACHE_EXPIRY)

    prepare = build_prepare_data_step(config, params, session, cache)
    tune = build_tuning_step(config, params, session, prepare, cache)
    train = build_training_step(config, params, session, prepare, tune, cache)
    evaluate, report = build_evaluation_step(config, params, session, prepare, train, cache)
    explain = build_explain_step(config, params, session, prepare, train, evaluate, cache) \
        if config.explain.enabled else None

    model = build_serving_model(config, params, session, train)
    register = build_register_step(config, params, model, evaluate, explain)
    bucket, _ = bucket_and_role(config)
    deploy: list[Step | StepCollection] = []
    if config.deployment.mode == "single" or config.batch.enabled:  # a Transform job takes no multi-model model
        create_model = build_create_model_step(params, model, register)
        deploy.append(create_model)
    if config.deployment.mode == "multi-model":
        prefix = multi_model_prefix(bucket, config.project.pipeline_name)
        publish = build_publish_step(config, params, session, train, register, prefix)
        served = build_multi_model_step(params, session, model, prefix, publish)
        deploy += [publish, served]
    else:
        served = create_model
    deploy += build_endpoint_steps(params, session, served)
    if config.batch.enabled:
        output = batch_output_uri(bucket, config.project.pipeline_name)
        deploy.append(build_batch_transform_step(config.batch, params, session, output, prepare, create_model))
    explained = [explain] if explain else []
    apply_retry_policies([prepare, tune, train, evaluate, *explained, register, *deploy], config.retry)
    accuracy_too_low = build_fail_step(evaluate, report, params["AccuracyThreshold"], depends_on=explained)
    gate = build_condition_step(
        evaluate, report, params["AccuracyThreshold"], if_steps=[register, *deploy], else_steps=[accuracy_too_low]
    )

    return Pipeline(
        name=config.project.pipeline_name,
        parameters=params.as_list(),
        steps=[prepare, tune, train, evaluate, *explained, gate],
        sagemaker_session=session,
    )
