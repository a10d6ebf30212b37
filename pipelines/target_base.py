"""What both targets share: the error they raise for a user mistake, the execution summaries they return, and how
a dataset is listed for upload and a file typed for an endpoint. `pipelines.targets` holds the interface itself."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


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


# The model's handler accepts images and JSON; anything else is sent as an image of unknown format.
_CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".json": "application/json"}


def content_type_of(path: Path) -> str:
    """The ContentType a file is sent to an endpoint with: its image type, application/json, or
    application/x-image (an image of a format the extension does not say)."""
    guessed = _CONTENT_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or ""
    return guessed if guessed.startswith("image/") or guessed == "application/json" else "application/x-image"
