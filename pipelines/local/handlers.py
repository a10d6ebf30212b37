"""The step handlers the local engine runs, by step type: the one place that knows which module handles what.

Each handler class takes `(workspace, store, region)` and has `run(StepRun) -> properties` (see `step_api`). The
modules are imported when the handlers are made, so commands that run no step do not pay for them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from pipelines.local.state import StateStore
from pipelines.local.step_api import StepHandler
from pipelines.local.workspace import Workspace

HandlersFactory = Callable[[Workspace, StateStore, str], Mapping[str, StepHandler]]
# step type -> (module, class)
HANDLER_CLASSES: dict[str, tuple[str, str]] = {
    "Processing": ("pipelines.local.processing", "ProcessingJobHandler"),
    "Training": ("pipelines.local.training", "TrainingJobHandler"),
    "Tuning": ("pipelines.local.tuning", "TuningJobHandler"),
    "RegisterModel": ("pipelines.local.registry", "RegisterModelHandler"),
    "Model": ("pipelines.local.deployment", "CreateModelHandler"),
    "EndpointConfig": ("pipelines.local.deployment", "EndpointConfigHandler"),
    "Endpoint": ("pipelines.local.deployment", "EndpointHandler"),
    "Transform": ("pipelines.local.transform", "TransformJobHandler"),
}


def default_handlers(workspace: Workspace, store: StateStore, region: str, *,
                     endpoint_memory_mb: int | None = None) -> dict[str, StepHandler]:
    """One handler per step type, for jobs and resources named in `region` (their ARNs say it); a multi-model
    endpoint may fill `endpoint_memory_mb` with loaded models ([local] endpoint_memory_mb)."""
    handlers = {}
    for step_type, (module, name) in HANDLER_CLASSES.items():
        handler_class = getattr(importlib.import_module(module), name)
        settings = {"endpoint_memory_mb": endpoint_memory_mb} if step_type == "Endpoint" else {}
        handlers[step_type] = handler_class(workspace, store, region, **settings)
    return handlers


def make_handlers(factory: HandlersFactory, workspace: Workspace, store: StateStore, region: str,
                  endpoint_memory_mb: int) -> Mapping[str, StepHandler]:
    """The handlers `factory` makes; the engine's settings go to the real ones (a test's factory makes its own)."""
    if factory is default_handlers:
        return default_handlers(workspace, store, region, endpoint_memory_mb=endpoint_memory_mb)
    return factory(workspace, store, region)


def factory_reference(factory: HandlersFactory) -> str | None:
    """`module:function` for a factory a worker process can import; None for the default or a local one."""
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if factory is default_handlers or not module or "<" in qualname or module == "__main__":
        return None
    return f"{module}:{qualname}"


def load_factory(reference: str) -> HandlersFactory:
    module, _, qualname = reference.partition(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target
