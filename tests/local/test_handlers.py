"""`pipelines.local.handlers`: one handler per step type, made for a region; factories a worker can import."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.local.handlers import HANDLER_CLASSES, default_handlers, factory_reference, load_factory
from pipelines.local.state import StateStore
from pipelines.local.workspace import Workspace


def test_default_handlers_cover_every_step_type_the_engine_runs(tmp_path: Path) -> None:
    workspace = Workspace.open(tmp_path)
    handlers = default_handlers(workspace, StateStore(workspace.state_db), "eu-west-1")
    assert set(handlers) == set(HANDLER_CLASSES) == {"Processing", "Training", "Tuning", "RegisterModel", "Model",
                                                     "EndpointConfig", "Endpoint", "Transform"}
    assert all(callable(getattr(handler, "run", None)) for handler in handlers.values())
    # The region is what the jobs' and packages' ARNs name.
    assert handlers["Processing"].region == handlers["Training"].region == handlers["Tuning"].region == "eu-west-1"
    assert handlers["RegisterModel"].registry.region == "eu-west-1"


def module_level_factory(workspace, store, region):  # a factory a worker process can import by name
    return {}


def test_factory_reference_names_only_what_another_process_can_import() -> None:
    assert factory_reference(default_handlers) is None  # the worker's default anyway
    assert factory_reference(lambda workspace, store, region: {}) is None
    reference = factory_reference(module_level_factory)
    assert reference == f"{__name__}:module_level_factory"
    assert load_factory(reference) is module_level_factory


def test_load_factory_of_a_missing_function_says_what_is_missing() -> None:
    with pytest.raises(AttributeError, match="nope"):
        load_factory("pipelines.local.handlers:nope")
