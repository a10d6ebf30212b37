"""What the executor hands a step handler, and what it gets back.

A handler turns one step's *resolved* arguments (no pipeline expressions left: the SageMaker API request) into the
step's properties, shaped like the Describe* response of what it made, or raises StepFailed with the reason the
service would show.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipelines.local.workspace import Workspace


class StepFailed(Exception):
    """The step failed; `reason` is what `status` shows as FailureReason. `exception_type` is the SageMaker type of
    a failure a RetryPolicy can name (`SageMaker.CAPACITY_ERROR`, `Step.THROTTLING`, ...; see retry_policies)."""

    def __init__(self, reason: str, exception_type: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exception_type = exception_type


@dataclass
class StepRun:
    execution_id: str
    pipeline_name: str
    step_name: str
    step_type: str
    arguments: dict[str, Any]
    workspace: Workspace
    # Cores this step may use; the executor never hands out more than the machine has in total.
    cpu_budget: int
    log: Callable[[str], None] = print
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Live properties a long step publishes while running (e.g. tuning job progress), for the progress view.
    on_progress: Callable[[dict[str, Any]], None] = lambda progress: None

    def job_dir(self, job_name: str):
        return self.workspace.job_dir(self.execution_id, self.step_name, job_name)


class StepHandler(Protocol):
    def run(self, run: StepRun) -> dict[str, Any]:
        """Runs the step; returns its properties (Describe*-shaped) or raises StepFailed."""
        ...
