"""What the CLI needs from a target (SageMaker, or the local engine): one small interface, two implementations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol


class TargetError(Exception):
    """A user-facing failure of a target operation: the CLI prints the message, no traceback."""


@dataclass
class StepSummary:
    name: str
    type: str
    status: str  # Starting | Executing | Succeeded | Failed | Stopped | Skipped? (not run: absent)
    failure_reason: str | None = None
    started: str | None = None  # ISO 8601
    ended: str | None = None
    # Extra facts worth showing: rule evaluation statuses, endpoint URL, model package ARN, cache hit...
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExecutionSummary:
    arn: str
    status: str  # Executing | Succeeded | Failed | Stopping | Stopped
    failure_reason: str | None = None
    started: str | None = None
    ended: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    steps: list[StepSummary] | None = None  # None when the target cannot list them

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[ExecutionSummary], None]


def files_to_upload(source: Path) -> list[tuple[Path, str]]:
    """(file, key relative to the destination) for a dataset folder (every file, paths kept) or one archive."""
    if source.is_file():
        return [(source, source.name)]
    files = sorted(path for path in source.rglob("*") if path.is_file())
    if not files:
        raise TargetError(f"{source} holds no files: nothing to upload (pass a folder of class folders of images, "
                          "or an archive of one)")
    return [(path, path.relative_to(source).as_posix()) for path in files]


class Target(Protocol):
    name: str

    def upsert(self, definition: str, description: str) -> str:
        """Creates or updates the pipeline; returns its ARN."""
        ...

    def start(self, parameters: dict[str, Any], wait: bool, on_progress: ProgressCallback | None) -> ExecutionSummary:
        ...

    def describe_execution(self, arn: str | None) -> ExecutionSummary:
        """The execution `arn`, or the latest one when None."""
        ...

    def list_executions(self) -> list[ExecutionSummary]:
        ...

    def approve(self, model_package_arn: str, status: str) -> None:
        ...

    def invoke(self, endpoint_name: str, files: Sequence[Path]) -> list[dict[str, Any]]:
        """One response (parsed JSON) per file."""
        ...

    def upload_data(self, source: Path, url: str, progress: Callable[[str], None] = print) -> str:
        """Copies a dataset folder or archive under the S3 prefix `url` (exactly there); returns the URL."""
        ...
