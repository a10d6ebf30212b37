"""`python -m pipelines.local.worker`: runs one recorded execution to its end and says how it went; an engine that
cannot start fails the execution instead of leaving it Executing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from executor_fakes import Behaviour, fake_handlers

from pipelines.config import load_config
from pipelines.local.state import StateStore
from pipelines.local.target import LocalTarget
from pipelines.local.worker import main

DEFINITION = {"Version": "2020-12-01", "Parameters": [], "Steps": [{"Name": "A", "Type": "Processing", "Arguments": {
    "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                              "VolumeSizeInGB": 30}},
    "AppSpecification": {"ImageUri": "image"}, "RoleArn": "arn:aws:iam::000000000000:role/r"}}]}
FACTORY_REGIONS: list[str] = []


def recording_factory(workspace, store, region):
    FACTORY_REGIONS.append(region)
    return fake_handlers(Behaviour())


def broken_factory(workspace, store, region):
    raise RuntimeError("no handlers today")


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, str]:
    """An execution recorded but not run: what `start --no-wait` leaves for the worker."""
    target = LocalTarget(load_config(), tmp_path)
    target.upsert(json.dumps(DEFINITION), "worker test")
    pipeline = target.store.get_pipeline(target.pipeline_name)
    assert pipeline is not None
    target.store.create_execution("exec00000001", f"{pipeline.arn}/execution/exec00000001", pipeline, {})
    return tmp_path, "exec00000001"


def test_the_worker_runs_the_execution_with_handlers_for_the_given_region(recorded, capsys) -> None:
    workspace, execution_id = recorded
    assert main([str(workspace), execution_id, "--handlers", f"{__name__}:recording_factory",
                 "--region", "eu-west-1", "--endpoint-memory-mb", "64"]) == 0
    assert FACTORY_REGIONS[-1] == "eu-west-1"
    execution = StateStore(workspace / "state.db").get_execution(execution_id)
    assert execution is not None and (execution.status, execution.failure_reason) == ("Succeeded", None)
    assert capsys.readouterr().out.strip().endswith(f"execution {execution_id}: Succeeded")


def test_an_engine_that_cannot_start_fails_the_execution_saying_why(recorded, capsys) -> None:
    workspace, execution_id = recorded
    assert main([str(workspace), execution_id, "--handlers", f"{__name__}:broken_factory",
                 "--endpoint-memory-mb", "64"]) == 1
    execution = StateStore(workspace / "state.db").get_execution(execution_id)
    assert execution is not None
    assert (execution.status, execution.failure_reason) == (
        "Failed", "the local engine failed: RuntimeError: no handlers today")
