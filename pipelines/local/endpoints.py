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

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from pipelines.local.container import DEFAULT_REGION, job_arn, relocate
from pipelines.local.inference_handlers import DEFAULT_ENTRY_POINT
from pipelines.local.serving import DRAIN_S, GRACEFUL_SHUTDOWN_S, LOOPBACK
from pipelines.local.state import StateStore, engine_alive, process_identity, utc_now
from pipelines.local.step_api import StepFailed
from pipelines.local.workspace import Workspace
from pipelines.target_base import TargetError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_READY_TIMEOUT_S = 180.0  # importing torch + torchvision alone takes seconds on a busy laptop
PING_TIMEOUT_S = 2.0
POLL_S = 0.2
LOG_TAIL_LINES = 20
REDEPLOY_HINT = "run the pipeline again (`python pipeline.py start`): its Endpoint step deploys it"

SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (
    name TEXT PRIMARY KEY,
    arn TEXT NOT NULL,
    config_name TEXT NOT NULL,
    model_name TEXT,
    model_dir TEXT NOT NULL,
    entry_point TEXT NOT NULL,
    environment TEXT NOT NULL,         -- the container Environment (JSON), for a redeploy
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


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None) -> int:
    if preferred and port_is_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def log_tail(path: Path, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines written to `path` after byte `offset`."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(offset, os.path.getsize(path) - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:]) or "(the server log is empty)"


def serving_environment(model_dir: Path, environment: Mapping[str, str]) -> dict[str, str]:
    """A serving process's environment: the model's, with the container's /opt/ml relocated to `model_dir`'s
    parent (whose model/ holds the extracted artifact)."""
    base = model_dir.parent
    env = {**os.environ, **{key: relocate(str(value), base) for key, value in environment.items()}}
    env.update(SAGEMAKER_BASE_DIR=str(base), SM_MODEL_DIR=str(model_dir), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    return env


@dataclass
class ServerProcess:
    """One serving process, started by us now or found in the database later."""

    pid: int
    started: float
    port: int
    log_path: Path
    health_port: int = 0
    log_offset: int = 0
    popen: subprocess.Popen | None = None

    @classmethod
    def start(cls, model_dir: Path, port: int, entry_point: str, log_path: Path,
              env: Mapping[str, str]) -> ServerProcess:
        health_port = free_port()
        argv = [sys.executable, "-m", "pipelines.local.serving", "--model-dir", str(model_dir), "--port", str(port),
                "--host", LOOPBACK, "--health-port", str(health_port), "--entry-point", entry_point]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            offset = log_file.tell()
            # A new session: the server outlives the CLI and ignores the terminal's Ctrl-C and hang-up.
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                     cwd=log_path.parent, env=dict(env), start_new_session=True)
        try:
            _, started = process_identity(popen.pid)
        except psutil.NoSuchProcess:  # already gone: alive() asks popen, the log says why
            started = time.time()
        return cls(popen.pid, started, port, log_path, health_port, offset, popen)

    def alive(self) -> bool:
        if self.popen is not None and self.popen.poll() is not None:
            return False
        return engine_alive(self.pid, self.started)

    def wait_ready(self, timeout: float, cancelled: threading.Event | None = None) -> None:
        """Returns once this server's own /ping is 200; otherwise kills it and raises StepFailed with its log."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=PING_TIMEOUT_S, trust_env=False) as client:
            while True:
                if cancelled is not None and cancelled.is_set():
                    self.stop(grace=0)
                    raise StepFailed("the execution was stopped while the endpoint's server was starting")
                if not self.alive():
                    code = self.popen.returncode if self.popen is not None else "unknown"
                    raise StepFailed(f"the serving process exited (code {code}) before /ping answered; last lines "
                                     f"of {self.log_path}:\n{log_tail(self.log_path, self.log_offset)}")
                try:
                    if client.get(f"http://{LOOPBACK}:{self.health_port}/ping").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop(grace=0)
                    raise StepFailed(f"the serving process did not answer /ping within {timeout:.0f} s; last lines "
                                     f"of {self.log_path}:\n{log_tail(self.log_path, self.log_offset)}")
                time.sleep(POLL_S)

    def stop(self, grace: float = DRAIN_S + GRACEFUL_SHUTDOWN_S + 5) -> None:
        """SIGTERM (the server drains, then finishes requests in flight), SIGKILL to its process group after `grace`
        seconds."""
        if not self.alive():
            return
        process = psutil.Process(self.pid)
        try:
            if grace > 0:
                process.terminate()
                try:
                    process.wait(grace)  # also reaps it when it is our child
                    return
                except psutil.TimeoutExpired:
                    pass
            os.killpg(self.pid, signal.SIGKILL)  # its own session (start_new_session): pgid == pid
            process.wait(10)
        except (psutil.NoSuchProcess, ProcessLookupError):
            pass


class EndpointManager:
    """Deploys, lists, invokes and deletes the serving processes of local endpoints."""

    _locks: dict[str, threading.Lock] = defaultdict(threading.Lock)  # one deploy per endpoint at a time, per process

    def __init__(self, workspace: Workspace, store: StateStore, region: str = DEFAULT_REGION,
                 ready_timeout: float = DEFAULT_READY_TIMEOUT_S) -> None:
        self.workspace = workspace
        self.store = store
        self.region = region
        self.ready_timeout = ready_timeout
        store.execute_script(SCHEMA)

    def endpoint_dir(self, name: str, config_name: str) -> Path:
        return self.workspace.endpoints_root / name / config_name

    # ------------------------------------------------------------------------------------------ deploy
    def deploy(self, name: str, config_name: str, model_dir: str | Path, *, model_name: str = "",
               entry_point: str = DEFAULT_ENTRY_POINT, environment: Mapping[str, str] | None = None,
               cancelled: threading.Event | None = None) -> dict[str, Any]:
        """Serves `model_dir` as endpoint `name` (created, or switched over without downtime when it is live)."""
        model_dir, environment = Path(model_dir).resolve(), dict(environment or {})
        with self._locks[name]:
            old = self._server(self._row(name))
            live = old is not None and old.alive()
            port = old.port if old is not None and live else free_port(self._recorded_port(name))
            if not live:
                self._mark_creating(name, config_name, model_name, model_dir, entry_point, environment, port)
            log_path = self.endpoint_dir(name, config_name) / "server.log"
            try:
                server = ServerProcess.start(model_dir, port, entry_point, log_path,
                                             serving_environment(model_dir, environment))
                server.wait_ready(self.ready_timeout, cancelled)
            except (StepFailed, OSError) as exc:
                reason = exc.reason if isinstance(exc, StepFailed) else f"cannot start the serving process: {exc}"
                self._mark_failed(name, reason, still_serving=live)
                raise StepFailed(reason) from exc
            previous = self._record_live(name, server, config_name, model_name, model_dir, entry_point, environment)
        if previous is not None and previous[0].pid != server.pid:
            previous[0].stop()
            self._remove_model_dir(previous[1], keep=model_dir)
        return self._summary(self._row(name))

    def redeploy(self, name: str) -> dict[str, Any]:
        """Starts an endpoint's recorded model again (after a reboot, or a crash of its server)."""
        row = self._require(name)
        if not Path(row["model_dir"]).is_dir():
            raise TargetError(f"endpoint {name!r}: its model dir {row['model_dir']} is gone; {REDEPLOY_HINT}")
        try:
            return self.deploy(name, row["config_name"], row["model_dir"], model_name=row["model_name"] or "",
                               entry_point=row["entry_point"], environment=json.loads(row["environment"]))
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
               timeout: float = 60.0) -> tuple[int, bytes]:
        """POSTs to the endpoint's /invocations; returns (HTTP status, response body)."""
        row = self._require(name)
        server = self._server(row)
        if server is None or not server.alive():
            raise TargetError(f"endpoint {name!r} is not running (status {self._status(row)}; server log: "
                              f"{self._log_path(row)}). To start it again, {REDEPLOY_HINT}")
        headers = {"Content-Type": content_type, "Accept": accept}
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
        return {"name": row["name"], "arn": row["arn"], "status": self._status(row), "model": row["model_name"],
                "config": row["config_name"], "port": row["port"], "url": row["url"], "pid": row["pid"],
                "failure_reason": row["failure_reason"], "log": str(self._log_path(row)),
                "created": row["created"], "updated": row["updated"]}

    def _mark_creating(self, name: str, config_name: str, model_name: str, model_dir: Path, entry_point: str,
                       environment: Mapping[str, str], port: int) -> None:
        now = utc_now()
        with self.store.transaction() as db:
            # An endpoint that existed (stopped, failed) keeps its creation time unless it had been deleted.
            db.execute(
                "INSERT INTO endpoints (name, arn, config_name, model_name, model_dir, entry_point, environment, "
                "port, status, url, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'Creating', ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET config_name = excluded.config_name, "
                "model_name = excluded.model_name, model_dir = excluded.model_dir, "
                "entry_point = excluded.entry_point, environment = excluded.environment, port = excluded.port, "
                "status = 'Creating', pid = NULL, pid_started = NULL, failure_reason = NULL, url = excluded.url, "
                "updated = excluded.updated, "
                "created = CASE WHEN endpoints.status = 'Deleted' THEN excluded.created ELSE endpoints.created END",
                (name, job_arn("endpoint", name.lower(), self.region), config_name, model_name, str(model_dir),
                 entry_point, json.dumps(environment), port, f"http://{LOOPBACK}:{port}", now, now))

    def _mark_failed(self, name: str, reason: str, still_serving: bool) -> None:
        # A failed update leaves the old model serving: only the reason is recorded.
        status_sql = "" if still_serving else ", status = 'Failed', pid = NULL, pid_started = NULL"
        with self.store.transaction() as db:
            db.execute(f"UPDATE endpoints SET failure_reason = ?, updated = ?{status_sql} WHERE name = ?",
                       (reason, utc_now(), name))

    def _record_live(self, name: str, server: ServerProcess, config_name: str, model_name: str, model_dir: Path,
                     entry_point: str, environment: Mapping[str, str]) -> tuple[ServerProcess, str] | None:
        """Records `server` as the endpoint's; returns the server (and model dir) it replaces, to be stopped.

        Read and written in one transaction: when two deploys race, each stops the one recorded before its own.
        """
        with self.store.transaction() as db:
            previous = db.execute("SELECT * FROM endpoints WHERE name = ? AND status != 'Deleted'",
                                  (name,)).fetchone()
            db.execute(
                "UPDATE endpoints SET config_name = ?, model_name = ?, model_dir = ?, entry_point = ?, "
                "environment = ?, port = ?, pid = ?, pid_started = ?, status = 'InService', failure_reason = NULL, "
                "url = ?, updated = ? WHERE name = ?",
                (config_name, model_name, str(model_dir), entry_point, json.dumps(environment), server.port,
                 server.pid, server.started, f"http://{LOOPBACK}:{server.port}", utc_now(), name))
        old = self._server(previous)
        return (old, previous["model_dir"]) if old is not None else None
