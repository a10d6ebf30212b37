"""The local target's state: one SQLite database (`<workspace>/state.db`, WAL mode) for pipelines, executions, steps.

Every status change is one transaction, so a crash leaves either the old or the new state, never half of one. The
store is shared by the executor's step threads (one connection behind a re-entrant lock) and by other processes
(the CLI reading while a detached worker writes: WAL lets readers and one writer work at once; writers wait up to
`BUSY_TIMEOUT_S` for each other).

Other modules keep their own tables in the same database:

    SCHEMA = "CREATE TABLE IF NOT EXISTS model_packages (arn TEXT PRIMARY KEY, ...);"
    store.execute_script(SCHEMA)                # idempotent; call it once when the module's object is created
    with store.transaction() as db:             # BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception)
        db.execute("INSERT INTO model_packages VALUES (?, ...)", (...))
    rows = store.query("SELECT * FROM model_packages WHERE ...", (...,))   # sqlite3.Row objects

`transaction()` nests (an inner one joins the outer), so a module may call the store's own methods inside its
transaction. Table names `pipelines`, `executions` and `steps` belong to this module.

Crash safety: an execution records the pid and process start time of the engine running it. `recover_interrupted()`
(run at the start of every local command) fails `Executing` executions whose engine is gone; `retry` resumes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

BUSY_TIMEOUT_S = 30.0
ENGINE_STOPPED = "the local engine stopped while this execution ran; `pipeline.py retry` resumes it"
# A pid is taken to be the same process only if it started within this many seconds of the recorded start time.
START_TIME_TOLERANCE_S = 1.0
RUNNING_STATUSES = ("Starting", "Executing", "Stopping")

SCHEMA = """
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY,
    arn TEXT NOT NULL,
    definition TEXT NOT NULL,
    description TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    arn TEXT NOT NULL UNIQUE,
    pipeline TEXT NOT NULL,
    pipeline_arn TEXT NOT NULL,
    definition TEXT NOT NULL,          -- the definition as it was at start: a retry runs the same one
    status TEXT NOT NULL,
    failure_reason TEXT,
    parameters TEXT NOT NULL,          -- every parameter's value, defaults applied
    started TEXT NOT NULL,
    ended TEXT,
    engine_pid INTEGER,
    engine_started REAL,               -- psutil create_time of engine_pid: tells a reused pid apart
    attempt INTEGER NOT NULL DEFAULT 1,
    use_cache INTEGER NOT NULL DEFAULT 1  -- 0: `start --no-cache`, every step runs whatever its CacheConfig says
);
CREATE INDEX IF NOT EXISTS executions_by_pipeline ON executions (pipeline, started);
CREATE TABLE IF NOT EXISTS steps (
    execution_id TEXT NOT NULL REFERENCES executions (id),
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    attempt INTEGER NOT NULL,          -- the execution attempt that ran it; a retry adds rows, keeps old ones
    status TEXT NOT NULL,
    failure_reason TEXT,
    started TEXT,
    ended TEXT,
    properties TEXT,                   -- Describe*-shaped; while Executing, the step's live progress
    property_files TEXT,               -- {PropertyFileName: parsed JSON}, for JsonGet after a retry
    cache TEXT,                        -- step caching: {"Key": ...}, and {"CacheHitResult": ...} when it was reused
    retries TEXT,                      -- JSON list: each failure its RetryPolicies retried (AttemptCount = 1 + len)
    PRIMARY KEY (execution_id, name, attempt)
);
"""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


@dataclass(frozen=True)
class PipelineRecord:
    name: str
    arn: str
    definition: str
    description: str | None
    created: str
    updated: str


@dataclass(frozen=True)
class ExecutionRecord:
    id: str
    arn: str
    pipeline: str
    pipeline_arn: str
    definition: str
    status: str
    failure_reason: str | None
    parameters: dict[str, Any]
    started: str
    ended: str | None
    engine_pid: int | None
    engine_started: float | None
    attempt: int
    use_cache: bool = True

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ExecutionRecord:
        values = dict(row)
        values["parameters"] = _loads(values["parameters"]) or {}
        values["use_cache"] = bool(values.get("use_cache", 1))
        return cls(**values)


@dataclass(frozen=True)
class StepRecord:
    execution_id: str
    name: str
    type: str
    attempt: int
    status: str
    failure_reason: str | None
    started: str | None
    ended: str | None
    properties: dict[str, Any] | None
    property_files: dict[str, Any] | None
    cache: dict[str, Any] | None
    retries: list[dict[str, Any]] | None = None

    @property
    def attempt_count(self) -> int:
        """Runs of the step in this execution attempt: the first, plus one per retry (ListPipelineExecutionSteps'
        AttemptCount)."""
        return 1 + len(self.retries or [])

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> StepRecord:
        values = dict(row)
        for key in ("properties", "property_files", "cache", "retries"):
            values[key] = _loads(values.get(key))
        return cls(**values)


def process_identity(pid: int | None = None) -> tuple[int, float]:
    """(pid, start time) of a process, this one by default: what `engine_alive` later checks."""
    process = psutil.Process(pid or os.getpid())
    return process.pid, process.create_time()


def engine_alive(pid: int | None, started: float | None) -> bool:
    """Whether the process that ran an execution still runs (not a dead one whose pid was given to another)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists but belongs to someone else: psutil decides below
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) <= START_TIME_TOLERANCE_S
    except psutil.NoSuchProcess:
        return False


class StateStore:
    """Thread-safe access to the state database; the one place that writes the pipelines/executions/steps tables."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the threads of this process; the lock serialises its use.
        self._db = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable on process crash
            self._db.execute("PRAGMA foreign_keys=ON")
        self.execute_script(SCHEMA)
        self.add_missing_columns("steps", {"retries": "TEXT"})
        self.add_missing_columns("executions", {"use_cache": "INTEGER NOT NULL DEFAULT 1"})

    def add_missing_columns(self, table: str, columns: dict[str, str]) -> None:
        """Adds each of `columns` (name -> SQL type) that `table` lacks: a workspace from an older version keeps its
        rows and gets the columns added since (CREATE TABLE IF NOT EXISTS leaves an existing table as it was)."""
        with self._lock:
            present = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, sql_type in columns.items():
                if name not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------------------------------ generic access
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE): committed on exit, rolled back on an exception."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._depth = 0

    def execute_script(self, sql: str) -> None:
        """Runs DDL (CREATE TABLE IF NOT EXISTS ...); not inside a transaction, which executescript would commit."""
        with self._lock:
            if self._depth:
                raise RuntimeError("execute_script cannot run inside a transaction")
            self._db.executescript(sql)

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    # ------------------------------------------------------------------------------------------ pipelines
    def upsert_pipeline(self, name: str, arn: str, definition: str, description: str | None) -> None:
        now = utc_now()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO pipelines (name, arn, definition, description, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "arn = excluded.arn, definition = excluded.definition, description = excluded.description, "
                "updated = excluded.updated",
                (name, arn, definition, description, now, now),
            )

    def get_pipeline(self, name: str) -> PipelineRecord | None:
        rows = self.query("SELECT * FROM pipelines WHERE name = ?", (name,))
        return PipelineRecord(**dict(rows[0])) if rows else None

    # ------------------------------------------------------------------------------------------ executions
    def create_execution(self, execution_id: str, arn: str, pipeline: PipelineRecord,
                         parameters: dict[str, Any], use_cache: bool = True) -> ExecutionRecord:
        """A new execution, Executing, owned by this process until an engine claims it."""
        pid, started = process_identity()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO executions (id, arn, pipeline, pipeline_arn, definition, status, parameters, started, "
                "engine_pid, engine_started, attempt, use_cache) VALUES (?, ?, ?, ?, ?, 'Executing', ?, ?, ?, ?, 1, ?)",
                (execution_id, arn, pipeline.name, pipeline.arn, pipeline.definition, json.dumps(parameters),
                 utc_now(), pid, started, int(use_cache)),
            )
        return self.get_execution(execution_id)  # type: ignore[return-value]

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        rows = self.query("SELECT * FROM executions WHERE id = ? OR arn = ?", (execution_id, execution_id))
        return ExecutionRecord.from_row(rows[0]) if rows else None

    def list_executions(self, pipeline: str) -> list[ExecutionRecord]:
        """Newest first."""
        rows = self.query("SELECT * FROM executions WHERE pipeline = ? ORDER BY started DESC, rowid DESC",
                          (pipeline,))
        return [ExecutionRecord.from_row(row) for row in rows]

    def claim_execution(self, execution_id: str, pid: int, pid_started: float) -> None:
        """Records which process runs the execution now: Executing."""
        with self.transaction() as db:
            db.execute("UPDATE executions SET status = 'Executing', failure_reason = NULL, ended = NULL, "
                       "engine_pid = ?, engine_started = ? WHERE id = ?", (pid, pid_started, execution_id))

    def begin_retry(self, execution_id: str, pid: int, pid_started: float) -> int | None:
        """Makes a Failed or Stopped execution Executing again as its next attempt, atomically (two `retry`s at once
        cannot both win); returns that attempt, or None when the execution is in no state to be retried."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE executions SET status = 'Executing', failure_reason = NULL, ended = NULL, engine_pid = ?, "
                "engine_started = ?, attempt = attempt + 1 WHERE id = ? AND status IN ('Failed', 'Stopped')",
                (pid, pid_started, execution_id))
            if cursor.rowcount == 0:
                return None
            return db.execute("SELECT attempt FROM executions WHERE id = ?", (execution_id,)).fetchone()[0]

    def hand_over(self, execution_id: str, from_pid: int, to_pid: int, to_started: float) -> None:
        """A running execution's engine becomes another process (the CLI handing it to a detached worker)."""
        with self.transaction() as db:
            db.execute("UPDATE executions SET engine_pid = ?, engine_started = ? WHERE id = ? AND engine_pid = ? "
                       "AND status = 'Executing'", (to_pid, to_started, execution_id, from_pid))

    def finish_execution(self, execution_id: str, status: str, failure_reason: str | None = None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE executions SET status = ?, failure_reason = ?, ended = ? WHERE id = ?",
                       (status, failure_reason, utc_now(), execution_id))

    # ------------------------------------------------------------------------------------------ steps
    def start_step(self, execution_id: str, name: str, step_type: str, attempt: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO steps (execution_id, name, type, attempt, status, started) "
                "VALUES (?, ?, ?, ?, 'Executing', ?)",
                (execution_id, name, step_type, attempt, utc_now()),
            )

    def step_progress(self, execution_id: str, name: str, attempt: int, progress: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("UPDATE steps SET properties = ? WHERE execution_id = ? AND name = ? AND attempt = ?",
                       (json.dumps(progress, default=str), execution_id, name, attempt))

    def record_retry(self, execution_id: str, name: str, attempt: int, retry: dict[str, Any]) -> None:
        """Appends one retried failure to the step's record."""
        with self.transaction() as db:
            row = db.execute("SELECT retries FROM steps WHERE execution_id = ? AND name = ? AND attempt = ?",
                             (execution_id, name, attempt)).fetchone()
            retries = [*(_loads(row["retries"]) or []), retry] if row is not None else [retry]
            db.execute("UPDATE steps SET retries = ? WHERE execution_id = ? AND name = ? AND attempt = ?",
                       (json.dumps(retries, default=str), execution_id, name, attempt))

    def finish_step(self, execution_id: str, name: str, attempt: int, status: str, *,
                    failure_reason: str | None = None, properties: dict[str, Any] | None = None,
                    property_files: dict[str, Any] | None = None, cache: dict[str, Any] | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE steps SET status = ?, failure_reason = ?, ended = ?, properties = COALESCE(?, properties), "
                "property_files = ?, cache = ? WHERE execution_id = ? AND name = ? AND attempt = ?",
                (status, failure_reason, utc_now(), json.dumps(properties, default=str) if properties else None,
                 json.dumps(property_files) if property_files else None, json.dumps(cache) if cache else None,
                 execution_id, name, attempt),
            )

    def find_cached_step(self, pipeline: str, name: str, key: str, ended_after: str) -> tuple[StepRecord, str] | None:
        """The newest Succeeded run of step `name` of `pipeline` with cache key `key` that ended after `ended_after`
        (ISO 8601), with the ARN of the execution whose job made its result (a reused run points at its source)."""
        rows = self.query(
            "SELECT s.*, e.arn AS execution_arn FROM steps s JOIN executions e ON e.id = s.execution_id "
            "WHERE e.pipeline = ? AND s.name = ? AND s.status = 'Succeeded' AND json_extract(s.cache, '$.Key') = ? "
            "AND s.ended > ? ORDER BY s.ended DESC LIMIT 1", (pipeline, name, key, ended_after))
        if not rows:
            return None
        values = dict(rows[0])
        arn = values.pop("execution_arn")
        step = StepRecord.from_row(values)  # type: ignore[arg-type]
        source = ((step.cache or {}).get("CacheHitResult") or {}).get("SourcePipelineExecutionArn")
        return step, source or arn

    def list_steps(self, execution_id: str) -> list[StepRecord]:
        """The latest attempt of each step that ran, in the order they started."""
        rows = self.query(
            "SELECT * FROM steps s WHERE execution_id = ? AND attempt = (SELECT MAX(attempt) FROM steps "
            "WHERE execution_id = s.execution_id AND name = s.name) ORDER BY started, rowid",
            (execution_id,),
        )
        return [StepRecord.from_row(row) for row in rows]

    # ------------------------------------------------------------------------------------------ recovery
    def recover_interrupted(self) -> list[str]:
        """Fails every running execution whose engine process is gone, and its running steps; returns their ids."""
        placeholders = ", ".join("?" for _ in RUNNING_STATUSES)
        recovered = []
        with self.transaction() as db:
            rows = db.execute(f"SELECT id, engine_pid, engine_started FROM executions WHERE status IN "
                              f"({placeholders})", RUNNING_STATUSES).fetchall()
            for row in rows:
                if not engine_alive(row["engine_pid"], row["engine_started"]):
                    self.fail_execution(row["id"], ENGINE_STOPPED)
                    recovered.append(row["id"])
        return recovered

    def fail_execution(self, execution_id: str, reason: str) -> None:
        """Fails an execution and whatever of it was still running, with one reason (the engine could not go on)."""
        placeholders = ", ".join("?" for _ in RUNNING_STATUSES)
        now = utc_now()
        with self.transaction() as db:
            db.execute("UPDATE executions SET status = 'Failed', failure_reason = ?, ended = ? WHERE id = ?",
                       (reason, now, execution_id))
            db.execute(f"UPDATE steps SET status = 'Failed', failure_reason = ?, ended = ? "
                       f"WHERE execution_id = ? AND status IN ({placeholders})",
                       (reason, now, execution_id, *RUNNING_STATUSES))
