"""A step's RetryPolicies, as SageMaker Pipelines applies them: which failures are retried, after how long, how often.

A policy matches a failure whose exception type it lists (`Step.SERVICE_FAULT`, `Step.THROTTLING`,
`SageMaker.JOB_INTERNAL_ERROR`, `SageMaker.CAPACITY_ERROR`, `SageMaker.RESOURCE_LIMIT`). The first retry waits
`IntervalSeconds`, each next one `BackoffRate` times longer; a policy stops after `MaxAttempts` retries, or once
`ExpireAfterMin` minutes have passed since the step first started. A failure no policy lists fails the step at once.

Which local failures carry a type: the local engine's jobs cannot run short of EC2 capacity or hit a service quota,
so its own handlers raise untyped failures (a script's error is the step's failure, as on SageMaker). Typed failures
come from a handler that knows one (`StepFailed(reason, exception_type=...)`), which is how tests inject each kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.local.step_api import StepFailed, StepHandler, StepRun

EXCEPTION_TYPES = ("Step.SERVICE_FAULT", "Step.THROTTLING", "SageMaker.JOB_INTERNAL_ERROR",
                   "SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT")
DEFAULT_INTERVAL_S = 1
DEFAULT_BACKOFF = 2.0


@dataclass(frozen=True)
class RetryPolicy:
    exception_types: tuple[str, ...]
    interval_s: float
    backoff_rate: float
    max_attempts: int | None
    expire_after_min: float | None

    @classmethod
    def from_definition(cls, entry: Mapping[str, Any]) -> RetryPolicy:
        return cls(tuple(entry.get("ExceptionType") or ()), float(entry.get("IntervalSeconds", DEFAULT_INTERVAL_S)),
                   float(entry.get("BackoffRate", DEFAULT_BACKOFF)), entry.get("MaxAttempts"),
                   entry.get("ExpireAfterMin"))

    def delay(self, retries_so_far: int, elapsed_s: float) -> float | None:
        """Seconds to wait before the next retry, or None when this policy allows no more."""
        if self.max_attempts is not None and retries_so_far >= self.max_attempts:
            return None
        wait = self.interval_s * self.backoff_rate ** retries_so_far
        if self.expire_after_min is not None and elapsed_s + wait > self.expire_after_min * 60:
            return None
        return wait


def step_policies(step: Mapping[str, Any]) -> list[RetryPolicy]:
    """The step's RetryPolicies from its definition entry."""
    return [RetryPolicy.from_definition(entry) for entry in step.get("RetryPolicies") or []]


def next_retry(policies: Sequence[RetryPolicy], exception_type: str | None, retries: Mapping[str, int],
               elapsed_s: float) -> tuple[float, RetryPolicy] | None:
    """(delay, policy) for a failure of `exception_type` when a policy retries it; `retries` counts the retries each
    exception type has had so far (a policy's MaxAttempts counts the failures it matches)."""
    if exception_type is None:
        return None
    for policy in policies:
        if exception_type in policy.exception_types:
            matched = sum(count for kind, count in retries.items() if kind in policy.exception_types)
            wait = policy.delay(matched, elapsed_s)
            return None if wait is None else (wait, policy)
    return None


def run_with_retries(handler: StepHandler, run: StepRun, policies: Sequence[RetryPolicy],
                     on_retry: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """`handler.run(run)`, run again after each failure a policy retries, as long as the policies allow; the last
    failure is raised. `on_retry` gets each retried failure (attempt, type, reason, wait) before the wait."""
    started, retries = time.monotonic(), dict[str, int]()
    while True:
        try:
            return handler.run(run)
        except StepFailed as failure:
            retry = next_retry(policies, failure.exception_type, retries, time.monotonic() - started)
            if retry is None or run.cancelled.is_set():
                raise
            wait, policy = retry
            kind = failure.exception_type or ""
            retries[kind] = retries.get(kind, 0) + 1
            attempt = sum(retries.values())
            limit = f"{policy.max_attempts} retries" if policy.max_attempts is not None else \
                f"{policy.expire_after_min} min"
            run.log(f"attempt {attempt} failed with {kind}: {failure.reason}; retrying in {wait:g} s "
                    f"(RetryPolicies: {', '.join(policy.exception_types)}, up to {limit})")
            on_retry({"Attempt": attempt, "ExceptionType": kind, "FailureReason": failure.reason,
                      "RetryAfterSeconds": wait})
            if run.cancelled.wait(wait):
                raise
