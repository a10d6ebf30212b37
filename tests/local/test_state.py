"""The state database: records, transactions, threads, other modules' tables, crash recovery."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import psutil
import pytest

from pipelines.local.state import ENGINE_STOPPED, StateStore, engine_alive, process_identity


@pytest.fixture
def store(tmp_path) -> StateStore:
    store = StateStore(tmp_path / "state.db")
    yield store
    store.close()


def make_execution(store: StateStore, execution_id: str = "exec00000001"):
    store.upsert_pipeline("p", "arn:p", '{"Steps": []}', "first")
    return store.create_execution(execution_id, f"arn:p/execution/{execution_id}", store.get_pipeline("p"), {"A": 1})


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_database_is_in_wal_mode(store):
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"


def test_upsert_pipeline_keeps_created_and_updates_the_rest(store):
    store.upsert_pipeline("p", "arn:p", '{"v": 1}', "first")
    created = store.get_pipeline("p").created
    store.upsert_pipeline("p", "arn:p", '{"v": 2}', "second")
    pipeline = store.get_pipeline("p")
    assert (pipeline.definition, pipeline.description, pipeline.created) == ('{"v": 2}', "second", created)
    assert store.get_pipeline("other") is None


def test_executions_by_id_or_arn_newest_first(store):
    first = make_execution(store, "exec00000001")
    second = store.create_execution("exec00000002", "arn:p/execution/exec00000002", store.get_pipeline("p"), {})
    assert first.status == "Executing" and first.parameters == {"A": 1} and first.engine_pid == os.getpid()
    assert first.definition == '{"Steps": []}' and first.attempt == 1
    assert store.get_execution("arn:p/execution/exec00000001").id == "exec00000001"
    assert [e.id for e in store.list_executions("p")] == [second.id, first.id]
    store.finish_execution(first.id, "Failed", "why")
    assert store.get_execution(first.id).failure_reason == "why" and store.get_execution(first.id).ended


def test_steps_keep_every_attempt_and_list_the_latest(store):
    execution = make_execution(store)
    store.start_step(execution.id, "A", "Processing", 1)
    store.step_progress(execution.id, "A", 1, {"Phase": "Running"})
    assert store.list_steps(execution.id)[0].properties == {"Phase": "Running"}
    store.finish_step(execution.id, "A", 1, "Succeeded", properties={"X": 1}, property_files={"R": {"a": 1}})
    store.start_step(execution.id, "B", "Training", 1)
    store.finish_step(execution.id, "B", 1, "Failed", failure_reason="boom")
    store.start_step(execution.id, "B", "Training", 2)
    store.finish_step(execution.id, "B", 2, "Succeeded", properties={"Y": 2})
    steps = {s.name: s for s in store.list_steps(execution.id)}
    assert steps["A"].properties == {"X": 1} and steps["A"].property_files == {"R": {"a": 1}}
    assert (steps["B"].attempt, steps["B"].status, steps["B"].failure_reason) == (2, "Succeeded", None)
    assert len(store.query("SELECT * FROM steps WHERE name = 'B'")) == 2


def test_transaction_rolls_back_on_error_and_nests(store):
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.execute("INSERT INTO pipelines VALUES ('p', 'arn', '{}', NULL, 'now', 'now')")
        raise RuntimeError("boom")
    assert store.get_pipeline("p") is None
    with store.transaction() as db:
        db.execute("INSERT INTO pipelines VALUES ('p', 'arn', '{}', NULL, 'now', 'now')")
        store.upsert_pipeline("q", "arn:q", "{}", None)  # joins the outer transaction
    assert store.get_pipeline("p") and store.get_pipeline("q")


def test_other_modules_add_their_own_tables(store):
    store.execute_script("CREATE TABLE IF NOT EXISTS widgets (name TEXT PRIMARY KEY, size INTEGER);")
    store.execute_script("CREATE TABLE IF NOT EXISTS widgets (name TEXT PRIMARY KEY, size INTEGER);")
    with store.transaction() as db:
        db.execute("INSERT INTO widgets VALUES (?, ?)", ("w", 3))
    assert [tuple(row) for row in store.query("SELECT * FROM widgets")] == [("w", 3)]
    with pytest.raises(RuntimeError, match="inside a transaction"), store.transaction():
        store.execute_script("CREATE TABLE t (x);")


def test_threads_and_a_second_connection_share_the_database(store, tmp_path):
    execution = make_execution(store)

    def write(index: int) -> None:
        for attempt in range(1, 6):
            store.start_step(execution.id, f"S{index}", "Processing", attempt)
            store.finish_step(execution.id, f"S{index}", attempt, "Succeeded", properties={"i": index})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other = StateStore(tmp_path / "state.db")  # as another process would open it
    assert len(other.list_steps(execution.id)) == 8
    assert other.query("SELECT COUNT(*) FROM steps")[0][0] == 40
    other.close()


def test_engine_alive_tells_dead_and_reused_pids_apart():
    pid, started = process_identity()
    assert engine_alive(pid, started)
    assert not engine_alive(pid, started - 3600)  # same pid, another process's start time: a reused pid
    assert not engine_alive(dead_pid(), None)
    assert not engine_alive(None, None)


def test_a_zombie_engine_is_dead():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    psutil.Process(process.pid)  # exists until it is reaped
    for _ in range(100):
        if psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE:
            break
        threading.Event().wait(0.02)
    assert not engine_alive(process.pid, None)
    process.wait()


def test_recover_interrupted_fails_executions_whose_engine_is_gone(store):
    dead = make_execution(store, "exec00000001")
    alive = store.create_execution("exec00000002", "arn:p/execution/exec00000002", store.get_pipeline("p"), {})
    store.claim_execution(dead.id, dead_pid(), 0.0)
    for execution_id in (dead.id, alive.id):
        store.start_step(execution_id, "Done", "Processing", 1)
        store.finish_step(execution_id, "Done", 1, "Succeeded", properties={"x": 1})
        store.start_step(execution_id, "Running", "Training", 1)
    assert store.recover_interrupted() == [dead.id]
    recovered = store.get_execution(dead.id)
    assert (recovered.status, recovered.failure_reason) == ("Failed", ENGINE_STOPPED)
    assert "pipeline.py retry" in ENGINE_STOPPED
    steps = {s.name: s for s in store.list_steps(dead.id)}
    assert (steps["Running"].status, steps["Running"].failure_reason) == ("Failed", ENGINE_STOPPED)
    assert steps["Done"].status == "Succeeded"
    assert store.get_execution(alive.id).status == "Executing"
    assert {s.status for s in store.list_steps(alive.id)} == {"Succeeded", "Executing"}
    assert store.recover_interrupted() == []


def test_begin_retry_is_atomic_and_only_for_failed_or_stopped(store):
    execution = make_execution(store)
    pid, started = process_identity()
    assert store.begin_retry(execution.id, pid, started) is None  # still Executing
    store.finish_execution(execution.id, "Failed", "boom")
    assert store.begin_retry(execution.id, pid, started) == 2
    assert store.begin_retry(execution.id, pid, started) is None  # the first retry won
    retried = store.get_execution(execution.id)
    assert (retried.status, retried.failure_reason, retried.ended, retried.attempt) == ("Executing", None, None, 2)
