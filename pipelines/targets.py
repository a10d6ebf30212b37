"""What the CLI needs from a target (SageMaker, or the local engine): one interface, two implementations.

The CLI talks to a target only through `Target` and gets one from `open_target`: no CLI module imports
`pipelines.local` or `pipelines.cloud`. The implementations import what they share from `pipelines.target_base`,
never this module, so the factory here makes no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipelines.target_base import ExecutionSummary, ProgressCallback, StepSummary, TargetError

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig
    from pipelines.report.model import ReportData
    from pipelines.s3_bridge import S3Bridge

__all__ = ["ExecutionSummary", "ProgressCallback", "StepSummary", "Target", "TargetError", "open_target"]


class Target(Protocol):
    name: str

    def code_uploads(self) -> S3Bridge:
        """Where the code the SDK uploads while building the definition goes: recorded, to be stored by `upsert`
        once the definition has passed validation (nothing is stored for a definition that is refused)."""
        ...

    def upsert(self, definition: str, description: str, code: S3Bridge | None = None) -> str:
        """Stores the recorded code, then creates or updates the pipeline; returns its ARN."""
        ...

    def start(self, parameters: dict[str, Any], wait: bool, on_progress: ProgressCallback | None,
              use_cache: bool = True) -> ExecutionSummary:
        """Starts an execution; `use_cache=False` runs every step even where its CacheConfig would reuse one."""
        ...

    def describe_execution(self, arn: str | None) -> ExecutionSummary:
        """The execution `arn`, or the latest one when None."""
        ...

    def list_executions(self) -> list[ExecutionSummary]:
        ...

    def approve(self, model_package_arn: str, status: str) -> None:
        ...

    def invoke(self, endpoint_name: str, files: Sequence[Path], target_model: str | None = None
               ) -> list[dict[str, Any]]:
        """One response (parsed JSON) per file; `target_model` picks the model of a multi-model endpoint."""
        ...

    def attribution_overlay(self, endpoint_name: str, image: bytes) -> bytes:
        """A PNG of where the endpoint's model looked for the class it predicts (`[explain] method`, as ExplainModel
        draws them); a target that cannot reach the served model's weights raises TargetError saying so."""
        ...

    def upload_data(self, source: Path, url: str, progress: Callable[[str], None] = print) -> str:
        """Copies a dataset folder or archive under the S3 prefix `url` (exactly there); returns the URL."""
        ...

    def retry(self, execution: str | None, wait: bool, on_progress: ProgressCallback | None) -> ExecutionSummary:
        """Re-runs a failed execution (id or ARN; the latest when None) from its failed steps."""
        ...

    def logs(self, execution: str | None, step: str | None, host: str | None = None) -> list[tuple[str, Path]]:
        """(job name, log file) of the execution's jobs, oldest first, one per host of a multi-instance job
        (`host`: that host's only); a target that keeps no log files here raises TargetError saying where."""
        ...

    def list_models(self) -> list[dict[str, Any]]:
        """The model package group's versions: arn, approval, created, accuracy (None when unknown)."""
        ...

    def list_endpoints(self) -> list[dict[str, Any]]:
        """name, status, url (and model, where the target knows it) of each endpoint."""
        ...

    def delete_endpoint(self, name: str) -> None:
        ...

    def autoscale(self, endpoint_name: str, remove: bool) -> dict[str, Any]:
        """Applies (or with `remove`, takes off) [deployment]'s autoscaling policy on the endpoint's variants;
        returns endpoint, applicable, and what was applied or removed (or, where it does not apply, why)."""
        ...

    def batch_transform(self, model_package_arn: str | None, input_url: str, output_url: str | None,
                        wait: bool, progress: Callable[[str], None] = print) -> dict[str, Any]:
        """Scores every file under `input_url` with a registered model version (the newest when None), as the
        pipeline's BatchTransform does; returns job, status, model_package, input, output (and, when it ran
        here, outputs: the number of .out files, and log)."""
        ...

    def report_data(self, execution: str | None) -> ReportData:
        """What the HTML report shows of an execution (id or ARN; the latest when None)."""
        ...

    def put_schedule(self, name: str, cron: str | None, rate: tuple[int, str] | None, enabled: bool) -> list[str]:
        """Creates or updates a schedule that starts the pipeline; returns the schedule ARNs."""
        ...

    def describe_schedule(self, name: str) -> dict[str, Any]:
        ...

    def delete_schedule(self, name: str) -> None:
        ...


def open_target(config: PipelineConfig) -> Target:
    """The configured target: the local engine (workspace `[local] workspace`) or the SageMaker service."""
    if config.project.target == "local":
        from pipelines.local.target import LocalTarget

        return LocalTarget(config)
    from pipelines.cloud import SageMakerTarget

    return SageMakerTarget(config)
