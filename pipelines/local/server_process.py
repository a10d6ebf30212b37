"""One local serving process (`python -m pipelines.local.serving`): started detached, found again by pid and start
time, waited for on its private health port, stopped with a drain. Endpoints and batch transforms both run one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from pipelines.local.container import relocate
from pipelines.local.ports import LOOPBACK, free_port
from pipelines.local.serving import DRAIN_S, GRACEFUL_SHUTDOWN_S
from pipelines.local.state import engine_alive, process_identity
from pipelines.local.step_api import StepFailed

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_READY_TIMEOUT_S = 180.0  # importing torch + torchvision alone takes seconds on a busy laptop
PING_TIMEOUT_S = 2.0
POLL_S = 0.2
LOG_TAIL_LINES = 20


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


@dataclass(frozen=True)
class MultiModelServing:
    """What a multi-model endpoint's server needs beyond the folder of archives."""

    prefix_url: str
    cache_dir: Path
    memory_budget_mb: int

    def argv(self) -> list[str]:
        return ["--multi-model", "--model-prefix-url", self.prefix_url, "--cache-dir", str(self.cache_dir),
                "--memory-budget-mb", str(self.memory_budget_mb)]


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
              env: Mapping[str, str], multi_model: MultiModelServing | None = None) -> ServerProcess:
        health_port = free_port()
        argv = [sys.executable, "-m", "pipelines.local.serving", "--model-dir", str(model_dir), "--port", str(port),
                "--host", LOOPBACK, "--health-port", str(health_port), "--entry-point", entry_point]
        argv += multi_model.argv() if multi_model is not None else []
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
