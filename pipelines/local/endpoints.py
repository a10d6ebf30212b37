"""Local endpoints: one detached serving process per endpoint on 127.0.0.1, recorded in the state database.

A first deploy picks a free port. A re-deploy to a live endpoint starts the new model's server on the *same* port
(SO_REUSEPORT), waits for its `/ping` on a private health port that only it listens on, then stops the old server
with SIGTERM. The new server steers new connections to itself as soon as it accepts them (see
`serving.steer_new_connections_here`), so nothing is left queued at the old one when it closes; the old one answers
`Connection: close` for a moment (`serving.DRAIN_S`), so busy keep-alive clients reconnect to the new one, and uvicorn
finishes the requests in flight before it exits. Clients see no refused or reset connection.

Each server's pid is recorded with its start time, so a pid the OS has since given to another process is never taken
for (or signalled as) ours.
"""

from __future__ import annotations

import builtins
import json
import shutil
import threading
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from pipelines.local.container import DEFAULT_REGION, job_arn
from pipelines.local.inference_handlers import DEFAULT_ENTRY_POINT
from pipelines.local.model_cache import TARGET_MODEL_HEADER
from pipelines.local.ports import LOOPBACK, free_port
from pipelines.local.server_process import (
    DEFAULT_READY_TIMEOUT_S,
    PING_TIMEOUT_S,
    MultiModelServing,
    ServerProcess,
    serving_environment,
)
from pipelines.local.state import StateStore, utc_now
from pipelines.local.step_api import StepFailed
from pipelines.local.workspace import Workspace
from pipelines.target_base import TargetError

REDEPLOY_HINT = "run the pipeline again (`python pipeline.py start`): its Endpoint step deploys it"
MODELS_TIMEOUT_S = 2.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (
    name TEXT PRIMARY KEY,
    arn TEXT NOT NULL,
    config_name TEXT NOT NULL,
    model_name TEXT,
    model_dir TEXT NOT NULL,
    entry_point TEXT NOT NULL,
    environment TEXT NOT NULL,         -- the container Environment (JSON), for a redeploy
    multi_model_url TEXT,              -- a Mode: MultiModel model's S3 prefix (model_dir is its folder); else NULL
    port INTEGER NOT NULL,
    pid INTEGER,                       -- the live server; NULL while Creating and once Failed or Deleted
    pid_started REAL,                  -- psutil create_time of pid: tells a reused pid apart
    status TEXT NOT NULL,              -- as recorded: Creating | InService | Failed | Deleted (list() checks liveness)
    failure_reason TEXT,
    url TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
"""


class EndpointManager:
    """Deploys, lists, invokes and deletes the serving processes of local endpoints."""

    _locks: dict[str, threading.Lock] = defaultdict(threading.Lock)  # one deploy per endpoint at a time, per process

    def __init__(self, workspace: Workspace, store: StateStore, region: str = DEFAULT_REGION,
                 ready_timeout: float = DEFAULT_READY_TIMEOUT_S, memory_budget_mb: int | None = None) -> None:
        """`memory_budget_mb`: what each multi-model endpoint may fill with loaded models ([local]
        endpoint_memory_mb); needed only to deploy one."""
        self.workspace = workspace
        self.store = store
        self.region = region
        self.ready_timeout = ready_timeout
        self.memory_budget_mb = memory_budget_mb
        store.execute_script(SCHEMA)
        store.add_missing_columns("endpoints", {"multi_model_url": "TEXT"})  # from before multi-model endpoints

    def endpoint_dir(self, name: str, config_name: str) -> Path:
        return self.workspace.endpoints_root / name / config_name

    # ------------------------------------------------------------------------------------------ deploy
    def deploy(self, name: str, config_name: str, model_dir: str | Path, *, model_name: str = "",
               entry_point: str = DEFAULT_ENTRY_POINT, environment: Mapping[str, str] | None = None,
               cancelled: threading.Event | None = None, multi_model_url: str | None = None) -> dict[str, Any]:
        """Serves `model_dir` as endpoint `name` (created, or switched over without downtime when it is live).
        With `multi_model_url` (a `Mode: MultiModel` model's S3 prefix), `model_dir` is that prefix's folder and
        every archive in it is served by key."""
        model_dir, environment = Path(model_dir).resolve(), dict(environment or {})
        with self._locks[name]:
            old = self._server(self._row(name))
            live = old is not None and old.alive()
            port = old.port if old is not None and live else free_port(self._recorded_port(name))
            if not live:
                self._mark_creating(name, config_name, model_name, model_dir, entry_point, environment, port,
                                    multi_model_url)
            log_path = self.endpoint_dir(name, config_name) / "server.log"
            try:
                server = ServerProcess.start(model_dir, port, entry_point, log_path,
                                             serving_environment(model_dir, environment),
                                             self._multi_model(name, config_name, multi_model_url))
                server.wait_ready(self.ready_timeout, cancelled)
            except (StepFailed, OSError) as exc:
                reason = exc.reason if isinstance(exc, StepFailed) else f"cannot start the serving process: {exc}"
                self._mark_failed(name, reason, still_serving=live)
                raise StepFailed(reason) from exc
            previous = self._record_live(name, server, config_name, model_name, model_dir, entry_point, environment,
                                         multi_model_url)
        if previous is not None and previous[0].pid != server.pid:
            previous[0].stop()
            self._remove_model_dir(previous[1], keep=model_dir)
            self._remove_model_dir(str(self.endpoint_dir(name, previous[2]) / "models"),
                                   keep=self.endpoint_dir(name, config_name) / "models")
        return self._summary(self._row(name))

    def _multi_model(self, name: str, config_name: str, prefix_url: str | None) -> MultiModelServing | None:
        if prefix_url is None:
            return None
        if self.memory_budget_mb is None:
            raise ValueError("EndpointManager needs memory_budget_mb to deploy a multi-model endpoint")
        return MultiModelServing(prefix_url, self.endpoint_dir(name, config_name) / "models", self.memory_budget_mb)

    def redeploy(self, name: str) -> dict[str, Any]:
        """Starts an endpoint's recorded model again (after a reboot, or a crash of its server)."""
        row = self._require(name)
        if not Path(row["model_dir"]).is_dir():
            raise TargetError(f"endpoint {name!r}: its model dir {row['model_dir']} is gone; {REDEPLOY_HINT}")
        try:
            return self.deploy(name, row["config_name"], row["model_dir"], model_name=row["model_name"] or "",
                               entry_point=row["entry_point"], environment=json.loads(row["environment"]),
                               multi_model_url=row["multi_model_url"])
        except StepFailed as exc:
            raise TargetError(f"endpoint {name!r} did not start: {exc.reason}") from exc

    def _remove_model_dir(self, path: str, keep: Path) -> None:
        # Only an extracted artifact under our endpoints folder, never what the new server serves.
        model_dir = Path(path)
        if model_dir != keep and model_dir.is_relative_to(self.workspace.endpoints_root):
            shutil.rmtree(model_dir, ignore_errors=True)

    # ------------------------------------------------------------------------------------------ operate
    def list(self) -> list[dict[str, Any]]:
        """Every endpoint not deleted: name, status (checked now), model, config, port, url, pid, log, times."""
        return [self._summary(row) for row in self.store.query(
            "SELECT * FROM endpoints WHERE status != 'Deleted' ORDER BY name")]

    def describe(self, name: str) -> dict[str, Any]:
        return self._summary(self._require(name))

    def invoke(self, name: str, body: bytes, content_type: str, accept: str = "application/json",
               timeout: float = 60.0, target_model: str | None = None) -> tuple[int, bytes]:
        """POSTs to the endpoint's /invocations (naming `target_model` on a multi-model endpoint, as InvokeEndpoint's
        TargetModel does); returns (HTTP status, response body)."""
        row = self._require(name)
        server = self._server(row)
        if server is None or not server.alive():
            raise TargetError(f"endpoint {name!r} is not running (status {self._status(row)}; server log: "
                              f"{self._log_path(row)}). To start it again, {REDEPLOY_HINT}")
        headers = {"Content-Type": content_type, "Accept": accept}
        if target_model is not None:
            headers[TARGET_MODEL_HEADER] = target_model
        try:
            response = httpx.post(f"{row['url']}/invocations", content=body, headers=headers, timeout=timeout,
                                  trust_env=False)
        except httpx.TransportError as exc:
            raise TargetError(f"endpoint {name!r} at {row['url']} did not answer: {exc}") from exc
        return response.status_code, response.content

    def delete(self, name: str) -> None:
        """Stops the endpoint's server and marks it deleted (its logs stay in the workspace)."""
        with self._locks[name]:
            row = self._require(name)
            server = self._server(row)
            if server is not None:
                server.stop()
            self._remove_model_dir(row["model_dir"], keep=Path())
            with self.store.transaction() as db:
                db.execute("UPDATE endpoints SET status = 'Deleted', pid = NULL, pid_started = NULL, updated = ? "
                           "WHERE name = ?", (utc_now(), name))

    # ------------------------------------------------------------------------------------------ records
    def _row(self, name: str) -> Any:
        rows = self.store.query("SELECT * FROM endpoints WHERE name = ? AND status != 'Deleted'", (name,))
        return rows[0] if rows else None

    def _require(self, name: str) -> Any:
        row = self._row(name)
        if row is None:
            known = [r["name"] for r in self.store.query("SELECT name FROM endpoints WHERE status != 'Deleted' "
                                                         "ORDER BY name")]
            raise TargetError(f"no local endpoint {name!r}; known endpoints: {', '.join(known) or 'none'}")
        return row

    def _recorded_port(self, name: str) -> int | None:
        # A stopped endpoint comes back on its old port when it is still free: its URL stays the same.
        rows = self.store.query("SELECT port FROM endpoints WHERE name = ?", (name,))
        return rows[0]["port"] if rows else None

    def _log_path(self, row: Any) -> Path:
        return self.endpoint_dir(row["name"], row["config_name"]) / "server.log"

    def _server(self, row: Any) -> ServerProcess | None:
        if row is None or row["pid"] is None:
            return None
        return ServerProcess(row["pid"], row["pid_started"], row["port"], self._log_path(row))

    def _status(self, row: Any) -> str:
        server = self._server(row)
        if server is None:
            return row["status"]  # Creating, or Failed
        if not server.alive():
            return "OutOfService"
        try:
            answered = httpx.get(f"{row['url']}/ping", timeout=PING_TIMEOUT_S, trust_env=False).status_code == 200
        except httpx.TransportError:
            answered = False
        return "InService" if answered else "OutOfService"

    def _summary(self, row: Any) -> dict[str, Any]:
        status = self._status(row)
        summary = {"name": row["name"], "arn": row["arn"], "status": status, "model": row["model_name"],
                   "config": row["config_name"], "port": row["port"], "url": row["url"], "pid": row["pid"],
                   "failure_reason": row["failure_reason"], "log": str(self._log_path(row)),
                   "created": row["created"], "updated": row["updated"],
                   "mode": "MultiModel" if row["multi_model_url"] else "SingleModel"}
        if not row["multi_model_url"]:
            summary["model_dir"] = row["model_dir"]  # the model it serves, extracted (the try-it page's overlays)
        else:
            summary["model_data_prefix"] = row["multi_model_url"]
            summary["loaded_models"] = self._loaded_models(row) if status == "InService" else []
        return summary

    def _loaded_models(self, row: Any) -> builtins.list[dict[str, Any]] | None:
        """What a live multi-model server has loaded (its /models); None when it does not say."""
        try:
            response = httpx.get(f"{row['url']}/models", timeout=MODELS_TIMEOUT_S, trust_env=False)
            return list(response.json()["loaded"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    def _mark_creating(self, name: str, config_name: str, model_name: str, model_dir: Path, entry_point: str,
                       environment: Mapping[str, str], port: int, multi_model_url: str | None) -> None:
        now = utc_now()
        with self.store.transaction() as db:
            # An endpoint that existed (stopped, failed) keeps its creation time unless it had been deleted.
            db.execute(
                "INSERT INTO endpoints (name, arn, config_name, model_name, model_dir, entry_point, environment, "
                "multi_model_url, port, status, url, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'Creating', ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET config_name = excluded.config_name, "
                "multi_model_url = excluded.multi_model_url, "
                "model_name = excluded.model_name, model_dir = excluded.model_dir, "
                "entry_point = excluded.entry_point, environment = excluded.environment, port = excluded.port, "
                "status = 'Creating', pid = NULL, pid_started = NULL, failure_reason = NULL, url = excluded.url, "
                "updated = excluded.updated, "
                "created = CASE WHEN endpoints.status = 'Deleted' THEN excluded.created ELSE endpoints.created END",
                (name, job_arn("endpoint", name.lower(), self.region), config_name, model_name, str(model_dir),
                 entry_point, json.dumps(environment), multi_model_url, port, f"http://{LOOPBACK}:{port}", now, now))

    def _mark_failed(self, name: str, reason: str, still_serving: bool) -> None:
        # A failed update leaves the old model serving: only the reason is recorded.
        status_sql = "" if still_serving else ", status = 'Failed', pid = NULL, pid_started = NULL"
        with self.store.transaction() as db:
            db.execute(f"UPDATE endpoints SET failure_reason = ?, updated = ?{status_sql} WHERE name = ?",
                       (reason, utc_now(), name))

    def _record_live(self, name: str, server: ServerProcess, config_name: str, model_name: str, model_dir: Path,
                     entry_point: str, environment: Mapping[str, str],
                     multi_model_url: str | None) -> tuple[ServerProcess, str, str] | None:
        """Records `server` as the endpoint's; returns the server it replaces, to be stopped, with its model dir and
        config name.

        Read and written in one transaction: when two deploys race, each stops the one recorded before its own.
        """
        with self.store.transaction() as db:
            previous = db.execute("SELECT * FROM endpoints WHERE name = ? AND status != 'Deleted'",
                                  (name,)).fetchone()
            db.execute(
                "UPDATE endpoints SET config_name = ?, model_name = ?, model_dir = ?, entry_point = ?, "
                "environment = ?, multi_model_url = ?, port = ?, pid = ?, pid_started = ?, status = 'InService', "
                "failure_reason = NULL, url = ?, updated = ? WHERE name = ?",
                (config_name, model_name, str(model_dir), entry_point, json.dumps(environment), multi_model_url,
                 server.port, server.pid, server.started, f"http://{LOOPBACK}:{server.port}", utc_now(), name))
        old = self._server(previous)
        return (old, previous["model_dir"], previous["config_name"]) if old is not None else None
