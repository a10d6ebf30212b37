"""A model's own serving code, called the way SageMaker's PyTorch serving container calls it.

The entry point is imported from the model directory (its folder on sys.path, for its own helper modules) and its
`model_fn`, `input_fn`, `predict_fn`, `output_fn` (or `transform_fn`) are called by position; the toolkit's
defaults stand in for the ones it does not define. The local endpoint (`pipelines.local.serving`) and the local
batch transform both serve through `InferenceHandlers`.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

JSON_TYPE = "application/json"
DEFAULT_ENTRY_POINT = "code/inference.py"
ENTRY_MODULE_PREFIX = "sagemaker_entry_point_"  # + a unique hex: each import is its own module


class HandlerError(Exception):
    """An error with the HTTP status it answers (the default handlers', a multi-model endpoint's), shaped like the
    model's own `InferenceError`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ModelLoadError(Exception):
    """The entry point is missing, does not import, or its `model_fn` failed."""


def import_entry_point(path: Path) -> ModuleType:
    """Imports `path` under a unique module name, its folder on sys.path (for its own helper modules)."""
    if not path.is_file():
        raise ModelLoadError(f"entry point {path} not found")
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    name = f"{ENTRY_MODULE_PREFIX}{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    # dataclasses and pickle look a class's module up in sys.modules while the module runs.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def default_input_fn(body: bytes, content_type: str) -> Any:
    if (content_type or "").split(";")[0].strip().lower() != JSON_TYPE:
        raise HandlerError(415, f"unsupported content type {content_type!r}: the model defines no input_fn")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise HandlerError(400, f"body is not valid JSON: {exc}") from exc


def default_predict_fn(data: Any, model: Any) -> Any:
    return model(data)


def default_output_fn(prediction: Any, accept: str) -> bytes:
    if hasattr(prediction, "tolist"):
        prediction = prediction.tolist()
    return json.dumps(prediction).encode("utf-8")


@dataclass
class InferenceHandlers:
    """The loaded model and the entry point's handler functions (the container toolkit's defaults where absent)."""

    module: ModuleType
    model: Any
    model_dir: Path

    @classmethod
    def load(cls, model_dir: str | Path, entry_point: str = DEFAULT_ENTRY_POINT) -> InferenceHandlers:
        model_dir = Path(model_dir).resolve()
        module = import_entry_point(model_dir / entry_point)
        model_fn = getattr(module, "model_fn", None)
        if not callable(model_fn):
            raise ModelLoadError(f"{entry_point} defines no model_fn(model_dir)")
        return cls(module=module, model=model_fn(str(model_dir)), model_dir=model_dir)

    def _handler(self, name: str, default: Callable[..., Any]) -> Callable[..., Any]:
        found = getattr(self.module, name, None)
        return found if callable(found) else default

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """Runs one request through the handlers; returns (response body, its content type)."""
        transform_fn = getattr(self.module, "transform_fn", None)
        if callable(transform_fn):
            return finish(transform_fn(self.model, body, content_type, accept), accept)
        data = self._handler("input_fn", default_input_fn)(body, content_type)
        prediction = self._handler("predict_fn", default_predict_fn)(data, self.model)
        return finish(self._handler("output_fn", default_output_fn)(prediction, accept), accept)

    def invoke_many(self, requests: list[tuple[bytes, str, str]]) -> list[tuple[bytes, str] | BaseException]:
        """Several (body, content type, accept) requests; one forward pass for all when the entry point has a
        `predict_batch_fn` (see pipelines.local.inference_thread). Each gets its own result or exception, the same
        as `invoke` would give it alone."""
        batch_fn = getattr(self.module, "predict_batch_fn", None)
        if len(requests) == 1 or not callable(batch_fn) or callable(getattr(self.module, "transform_fn", None)):
            return [outcome(self.invoke, *request) for request in requests]
        input_fn = self._handler("input_fn", default_input_fn)
        outcomes: list[Any] = [outcome(input_fn, body, content_type) for body, content_type, _ in requests]
        ready = [i for i, data in enumerate(outcomes) if not isinstance(data, BaseException)]
        try:
            predictions = list(batch_fn([outcomes[i] for i in ready], self.model))
            if len(predictions) != len(ready):
                raise ValueError(f"predict_batch_fn gave {len(predictions)} predictions for {len(ready)} inputs")
        except Exception:  # whichever request broke the batch gets its own error, the others their answers
            for i in ready:
                outcomes[i] = outcome(self.invoke, *requests[i])
            return outcomes
        output_fn = self._handler("output_fn", default_output_fn)
        for i, prediction in zip(ready, predictions, strict=True):
            accept = requests[i][2]
            outcomes[i] = outcome(lambda p, a: finish(output_fn(p, a), a), prediction, accept)
        return outcomes


def finish(result: Any, accept: str) -> tuple[bytes, str]:
    """A handler's result as (body bytes, content type)."""
    if isinstance(result, tuple):  # (body, content type), as the serving toolkit allows
        result, accept = result
    if isinstance(result, str):
        result = result.encode("utf-8")
    return bytes(result), response_type(accept)


def outcome(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)`, or the exception it raised (one request's failure must not fail its batch)."""
    try:
        return fn(*args)
    except Exception as exc:
        return exc


def response_type(accept: str) -> str:
    """The one concrete media type in Accept, else JSON (the container's default accept)."""
    if accept and "," not in accept and "*" not in accept:
        return accept
    return JSON_TYPE


def error_status(exc: BaseException) -> int | None:
    """The HTTP status an `InferenceError` (or the toolkit's `BaseInferenceToolkitError`) carries, if any."""
    for attribute in ("status", "status_code"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
            return value
    return None
