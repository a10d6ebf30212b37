"""RetryPolicies as SageMaker applies them (pipelines.local.retry_policies): which failures, how long between tries,
when to give up; and the status line and state record of a retried step."""

from __future__ import annotations

import threading

import pytest

from pipelines.local.retry_policies import RetryPolicy, next_retry, run_with_retries, step_policies
from pipelines.local.state import StateStore
from pipelines.local.step_api import StepFailed, StepRun
from pipelines.local.workspace import Workspace
from pipelines.progress import _retry_text

CAPACITY = {"ExceptionType": ["SageMaker.CAPACITY_ERROR", "SageMaker.JOB_INTERNAL_ERROR"], "IntervalSeconds": 30,
            "BackoffRate": 2.0, "MaxAttempts": 3}
THROTTLING = {"ExceptionType": ["Step.THROTTLING"], "IntervalSeconds": 1, "BackoffRate": 1.5, "ExpireAfterMin": 1}


def test_the_wait_grows_by_the_backoff_rate_until_max_attempts() -> None:
    [policy] = step_policies({"RetryPolicies": [CAPACITY]})
    waits = [next_retry([policy], "SageMaker.CAPACITY_ERROR", {"SageMaker.CAPACITY_ERROR": n}, 0) for n in range(4)]
    assert [w[0] if w else None for w in waits] == [30, 60, 120, None]


def test_max_attempts_counts_every_failure_the_policy_matches() -> None:
    [policy] = step_policies({"RetryPolicies": [CAPACITY]})
    retries = {"SageMaker.CAPACITY_ERROR": 2, "SageMaker.JOB_INTERNAL_ERROR": 1}
    assert next_retry([policy], "SageMaker.JOB_INTERNAL_ERROR", retries, 0) is None


def test_expire_after_min_bounds_the_total_time_and_the_first_matching_policy_decides() -> None:
    policies = step_policies({"RetryPolicies": [THROTTLING, CAPACITY]})
    assert next_retry(policies, "Step.THROTTLING", {}, elapsed_s=10)[0] == 1
    assert next_retry(policies, "Step.THROTTLING", {"Step.THROTTLING": 3}, elapsed_s=10)[0] == pytest.approx(3.375)
    assert next_retry(policies, "Step.THROTTLING", {}, elapsed_s=59.5) is None  # 1 s more would pass the minute
    assert next_retry(policies, "SageMaker.CAPACITY_ERROR", {}, 0)[1] == RetryPolicy.from_definition(CAPACITY)
    assert next_retry(policies, "SageMaker.RESOURCE_LIMIT", {}, 0) is None and next_retry(policies, None, {}, 0) is None


class Flaky:
    def __init__(self, failures: list[StepFailed]) -> None:
        self.failures, self.calls = failures, 0

    def run(self, run: StepRun) -> dict:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return {"ok": self.calls}


def step_run(tmp_path, lines: list[str]) -> StepRun:
    return StepRun("e1", "p", "A", "Processing", {}, Workspace.open(tmp_path), 1, log=lines.append)


def test_run_with_retries_runs_again_after_each_retried_failure_and_reports_each(tmp_path) -> None:
    fast = RetryPolicy(("SageMaker.CAPACITY_ERROR",), 0.01, 2.0, 3, None)
    lines: list[str] = []
    retried: list[dict] = []
    handler = Flaky([StepFailed("no capacity", "SageMaker.CAPACITY_ERROR")] * 2)
    assert run_with_retries(handler, step_run(tmp_path, lines), [fast], retried.append) == {"ok": 3}
    assert [(r["Attempt"], r["RetryAfterSeconds"]) for r in retried] == [(1, 0.01), (2, 0.02)]
    assert lines[0] == ("attempt 1 failed with SageMaker.CAPACITY_ERROR: no capacity; retrying in 0.01 s "
                        "(RetryPolicies: SageMaker.CAPACITY_ERROR, up to 3 retries)")


def test_a_stopped_execution_does_not_wait_out_the_backoff(tmp_path) -> None:
    slow = RetryPolicy(("SageMaker.CAPACITY_ERROR",), 600, 2.0, 3, None)
    run = step_run(tmp_path, [])
    threading.Timer(0.1, run.cancelled.set).start()
    with pytest.raises(StepFailed, match="no capacity"):
        run_with_retries(Flaky([StepFailed("no capacity", "SageMaker.CAPACITY_ERROR")]), run, [slow], lambda r: None)


def test_the_status_line_and_the_state_record_carry_the_attempts(tmp_path) -> None:
    retries = [{"Attempt": 1, "ExceptionType": "SageMaker.CAPACITY_ERROR"},
               {"Attempt": 2, "ExceptionType": "Step.THROTTLING"}]
    assert _retry_text({"AttemptCount": 3, "Retries": retries}) == (
        "attempt 3 (retried after SageMaker.CAPACITY_ERROR, Step.THROTTLING)")
    assert _retry_text({}) == ""
    store = StateStore(tmp_path / "state.db")
    store.execute_script("INSERT INTO pipelines VALUES ('p', 'arn', '{}', NULL, 't', 't')")
    store.execute_script("INSERT INTO executions (id, arn, pipeline, pipeline_arn, definition, status, parameters, "
                         "started) VALUES ('e1', 'a', 'p', 'arn', '{}', 'Executing', '{}', 't')")
    store.start_step("e1", "A", "Processing", 1)
    for retry in retries:
        store.record_retry("e1", "A", 1, retry)
    [step] = store.list_steps("e1")
    assert (step.attempt_count, step.retries) == (3, retries)


def test_a_workspace_from_before_retries_gets_the_column(tmp_path) -> None:
    import sqlite3

    from pipelines.local.state import SCHEMA

    old = SCHEMA.replace("    retries TEXT,                      -- JSON list: each failure its RetryPolicies retried "
                         "(AttemptCount = 1 + len)\n", "")
    assert "retries" not in old
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.executescript(old)
    StateStore(tmp_path / "state.db")
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert "retries" in {row[1] for row in db.execute("PRAGMA table_info(steps)")}
