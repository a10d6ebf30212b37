"""RetryPolicies: what each step retries on, with the configured attempts and backoff.

Every step that takes policies retries SageMaker's transient service errors (Step.SERVICE_FAULT, Step.THROTTLING);
the job steps (Processing, Training, Tuning, Transform) also retry a job that failed for want of capacity or on an
internal error, and a create that hit a resource limit. A tuning job retries its own trainings' internal errors
(SageMaker ignores SageMaker.JOB_INTERNAL_ERROR on a Tuning step), so its policy leaves that type out. EndpointConfig
and Endpoint steps take no policies.
"""

from __future__ import annotations

from collections.abc import Iterable

from sagemaker.workflow.retry import (
    RetryPolicy,
    SageMakerJobExceptionTypeEnum,
    SageMakerJobStepRetryPolicy,
    StepExceptionTypeEnum,
    StepRetryPolicy,
)
from sagemaker.workflow.step_collections import StepCollection
from sagemaker.workflow.steps import ConfigurableRetryStep, Step, StepTypeEnum

from pipelines.config import RetryConfig

JOB_STEP_TYPES = (StepTypeEnum.PROCESSING, StepTypeEnum.TRAINING, StepTypeEnum.TUNING, StepTypeEnum.TRANSFORM)
# The step types AWS documents RetryPolicies for (the SDK would also put them on an EndpointConfig step).
RETRYABLE_STEP_TYPES = (*JOB_STEP_TYPES, StepTypeEnum.CREATE_MODEL, StepTypeEnum.REGISTER_MODEL)


def service_policy(retry: RetryConfig) -> StepRetryPolicy:
    return StepRetryPolicy(exception_types=[StepExceptionTypeEnum.SERVICE_FAULT, StepExceptionTypeEnum.THROTTLING],
                           interval_seconds=retry.interval_seconds, backoff_rate=retry.backoff_rate,
                           max_attempts=retry.max_attempts)


def job_policy(retry: RetryConfig, tuning: bool) -> SageMakerJobStepRetryPolicy:
    failures = [SageMakerJobExceptionTypeEnum.CAPACITY_ERROR]
    if not tuning:
        failures.append(SageMakerJobExceptionTypeEnum.INTERNAL_ERROR)
    return SageMakerJobStepRetryPolicy(exception_types=[SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT],
                                       failure_reason_types=failures, interval_seconds=retry.interval_seconds,
                                       backoff_rate=retry.backoff_rate, max_attempts=retry.max_attempts)


def policies_for(step: Step, retry: RetryConfig) -> list[RetryPolicy]:
    policies: list[RetryPolicy] = [service_policy(retry)]
    if step.step_type in JOB_STEP_TYPES:
        policies.append(job_policy(retry, tuning=step.step_type == StepTypeEnum.TUNING))
    return policies


def apply_retry_policies(steps: Iterable[Step | StepCollection], retry: RetryConfig) -> None:
    """Gives every step (and every step inside a ModelStep) that takes RetryPolicies the ones that fit it."""
    if not retry.enabled:
        return
    for entry in steps:
        for step in entry.steps if isinstance(entry, StepCollection) else [entry]:
            if isinstance(step, ConfigurableRetryStep) and step.step_type in RETRYABLE_STEP_TYPES:
                step.retry_policies = policies_for(step, retry)
