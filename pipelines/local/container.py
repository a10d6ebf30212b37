"""SageMaker's container contract, relocated under a job directory, shared by processing and training jobs.

A job's `<job>/opt_ml/` stands in for `/opt/ml`; `SAGEMAKER_BASE_DIR` points at it (sagemaker-training-toolkit's
variable, which the scripts read) and `/opt/ml` paths in commands are rewritten into it. The job runs as a subprocess
of this interpreter; its combined output goes line by line to `<job>/job.log`, the progress view and the metric
regexes, the way SageMaker feeds CloudWatch and its metric parser.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath
from typing import IO, Any

from pipelines.local.state import utc_now
from pipelines.local.step_api import StepFailed, StepRun
from pipelines.local.workspace import Workspace

OPT_ML = "/opt/ml"
ACCOUNT_ID = "000000000000"
DEFAULT_REGION = "us-east-1"
TAIL_LINES = 10
# SageMaker gives a stopped container 120 s after SIGTERM; a laptop user waiting on Ctrl-C wants less.
STOP_GRACE_SECONDS = 10.0
_MAX_LINE_BYTES = 64 * 1024
_MAX_NAME = 63
_RELOCATABLE = re.compile(r"^(--?[\w.-]+=)?/opt/ml(?=/|$)")


# ---------------------------------------------------------------------------------------------- names and paths
def relocate(value: str, base_dir: Path | str) -> str:
    """`/opt/ml/x` (or `--flag=/opt/ml/x`) -> `<base_dir>/x`; anything else unchanged (`/opt/mlx` too)."""
    return _RELOCATABLE.sub(lambda m: (m.group(1) or "") + str(base_dir), value, count=1)


def job_name(step_name: str, execution_id: str, suffix: str | None = None) -> str:
    """`<step-name-lowercase>-<execution-id>-<suffix>`, at most 63 characters of `[a-z0-9-]` like the service."""
    tail = "-".join(part for part in (_clean(execution_id.lower()), _clean(suffix or secrets.token_hex(3))) if part)
    head = _clean(step_name.lower())[: max(1, _MAX_NAME - len(tail) - 1)].strip("-") or "job"
    return f"{head}-{tail}"[:_MAX_NAME].strip("-")


def _clean(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9-]", "-", text)).strip("-")


def job_arn(kind: str, name: str, region: str = DEFAULT_REGION) -> str:
    return f"arn:aws:sagemaker:{region}:{ACCOUNT_ID}:{kind}/{name}"


def note_instance_count(run: StepRun, count: Any) -> None:
    """One line in the progress view when a multi-instance request runs, as everything here does, on one host."""
    if int(count or 1) > 1:
        run.log(f"local engine: InstanceCount {count} runs as one host (algo-1)")


# ---------------------------------------------------------------------------------------------- S3 <-> job dir
def download(workspace: Workspace, uri: str, dest: Path, required: bool = True) -> int:
    """Copies every object under the S3 prefix `uri` into `dest` (a key that is one file: that file); returns the
    number of files. An empty prefix fails like the service unless `required` is False."""
    source = workspace_path(workspace, uri)
    dest.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        shutil.copy2(source, dest / source.name)
        return 1
    count = sum(1 for path in source.rglob("*") if path.is_file()) if source.is_dir() else 0
    if count:
        shutil.copytree(source, dest, dirs_exist_ok=True)
    elif required:
        fill = (f"upload the files there first: python pipeline.py upload-data FOLDER --to {uri}"
                if uri.startswith("s3://") else "put the files in that folder first")
        raise StepFailed(f"ClientError: No S3 objects found under S3 URL \"{uri}\" given in input data source "
                         f"(looked in {source}); {fill}")
    return count


def upload(workspace: Workspace, source: Path, uri: str) -> int:
    """Copies every file under `source` to the S3 prefix `uri`, replacing objects with the same key and leaving
    others, as an S3 upload does; nothing is created for an empty folder. Returns the number of files."""
    files = sorted(path for path in source.rglob("*") if path.is_file()) if source.is_dir() else []
    dest = workspace_path(workspace, uri)
    for path in files:
        target = dest / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return len(files)


def workspace_path(workspace: Workspace, uri: str) -> Path:
    """`workspace.path_for`, with a URI that escapes the workspace failing the step instead of the engine."""
    try:
        return workspace.path_for(uri)
    except ValueError as exc:
        raise StepFailed(f"ValidationException: {exc}") from exc


def pack_tar_gz(source: Path, dest: Path) -> Path:
    """Packs `source`'s contents at the archive root (`model.pth`, `code/inference.py`), like SageMaker's
    model.tar.gz; written beside `dest` and renamed, so a reader never sees half an archive."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.partial")
    try:
        with tarfile.open(partial, "w:gz", dereference=True) as tar:
            for path in sorted(source.rglob("*")) if source.is_dir() else []:
                tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return dest


def extract_tar_gz(archive: Path, dest: Path) -> None:
    """Extracts an uploaded archive (sourcedir.tar.gz) after refusing absolute paths, `..`, links and devices."""
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                parts = PurePosixPath(member.name).parts
                if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
                    raise StepFailed(f"ClientError: refusing to extract {archive.name}: unsafe member {member.name!r}")
            dest.mkdir(parents=True, exist_ok=True)
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise StepFailed(f"ClientError: cannot extract {archive.name}: {exc}") from exc


# ---------------------------------------------------------------------------------------------- metrics
class MetricExtractor:
    """Applies MetricDefinitions regexes to log lines, as SageMaker does: the first group of each match is the value.

    Every value is kept with its timestamp (the curves); `nan`/`inf` are kept as floats, other non-numbers skipped.
    Thread-safe: the log pump feeds it while the handler may read it.
    """

    def __init__(self, metric_definitions: Sequence[Mapping[str, str]]) -> None:
        self.definitions = [dict(definition) for definition in metric_definitions]
        self._patterns: list[tuple[str, re.Pattern[str]]] = []
        for definition in self.definitions:
            try:
                self._patterns.append((definition["Name"], re.compile(definition["Regex"])))
            except re.error as exc:
                raise StepFailed(f"ValidationException: MetricDefinitions {definition['Name']}: "
                                 f"invalid regex {definition['Regex']!r}: {exc}") from exc
        self.history: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in self._patterns}
        self._lock = threading.Lock()

    def feed(self, line: str, timestamp: str | None = None) -> None:
        for name, pattern in self._patterns:
            for match in pattern.finditer(line):
                value = matched_value(match)
                if value is not None:
                    with self._lock:
                        self.history[name].append({"Value": value, "Timestamp": timestamp or utc_now()})

    def final_metric_data_list(self) -> list[dict[str, Any]]:
        """`FinalMetricDataList`: the last value of each metric that matched at least once."""
        with self._lock:
            return [{"MetricName": name, **values[-1]} for name, values in self.history.items() if values]

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {"MetricDefinitions": self.definitions,
                    "Metrics": {name: list(values) for name, values in self.history.items()}}


def matched_value(match: re.Match[str]) -> float | None:
    """A MetricDefinitions regex's value, as SageMaker reads it: its first group (the whole match without one)."""
    return _as_float(match.group(1) if match.re.groups else match.group(0))


def _as_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return math.nan if math.isnan(value) else value


# ---------------------------------------------------------------------------------------------- CPU budget
class CpuSlots:
    """Gives concurrent jobs disjoint cores, so a job's `cpu_budget` holds even for code that sizes its thread
    pools from the CPU affinity (torch, DataLoader workers) rather than from OMP_NUM_THREADS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: set[int] = set()

    @contextlib.contextmanager
    def reserve(self, count: int) -> Iterator[set[int] | None]:
        """The cores to pin to, or None (no pinning: the budget is the whole machine, or no affinity support)."""
        cores = self._take(count)
        try:
            yield cores
        finally:
            with self._lock:
                self._busy -= cores or set()

    def _take(self, count: int) -> set[int] | None:
        if not hasattr(os, "sched_getaffinity"):
            return None
        available = sorted(os.sched_getaffinity(0))
        if count >= len(available):
            return None
        with self._lock:
            free = [core for core in available if core not in self._busy]
            if len(free) < count:
                return None  # the executor oversubscribed; better unpinned than piled onto one core
            chosen = set(free[: max(1, count)])
            self._busy |= chosen
            return chosen


CPU_SLOTS = CpuSlots()


# ---------------------------------------------------------------------------------------------- the process
class JobProcess:
    """Runs one job's command: environment, log pump, max runtime, cancellation, and the service's failure reasons."""

    def __init__(self, argv: Sequence[str], *, job_dir: Path, cwd: Path, env: Mapping[str, str], cpu_budget: int,
                 max_runtime_s: float | None, cancelled: threading.Event, log: Callable[[str], None],
                 on_line: Callable[[str], None] | None = None, failure_file: Path | None = None,
                 monitor: Callable[[int], AbstractContextManager[Any]] | None = None) -> None:
        self.argv = [sys.executable if i == 0 and arg in ("python", "python3") else arg for i, arg in enumerate(argv)]
        self.job_dir, self.cwd, self.job_env = job_dir, cwd, dict(env)
        self.cpu_budget, self.max_runtime_s = max(1, int(cpu_budget)), max_runtime_s
        self.cancelled, self.callbacks = cancelled, [cb for cb in (on_line, log) if cb is not None]
        self.failure_file = failure_file
        # Watches the job's process (given its pid) while it runs: the profiler's sampler (pipelines/local/profiling).
        self.monitor = monitor
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.log_path = job_dir / "job.log"

    @classmethod
    def for_run(cls, run: StepRun, argv: Sequence[str], **kwargs: Any) -> JobProcess:
        return cls(argv, cpu_budget=run.cpu_budget, cancelled=run.cancelled, log=run.log, **kwargs)

    def environment(self) -> dict[str, str]:
        # A user's own SM_* variables must not leak into a job: the contract sets its complete set.
        env = {key: value for key, value in os.environ.items() if not key.startswith("SM_")}
        threads = str(self.cpu_budget)
        env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        env.update(self.job_env)
        return env

    def run(self) -> None:
        """Runs to completion; raises StepFailed on a non-zero exit, past the max runtime, or when cancelled."""
        self.job_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as log_file, CPU_SLOTS.reserve(self.cpu_budget) as cores:
            try:
                process = subprocess.Popen(self.argv, cwd=self.cwd, env=self.environment(), stdin=subprocess.DEVNULL,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise StepFailed(f"ClientError: cannot start {self.argv[0]!r}: {exc}") from exc
            _pin(process.pid, cores)
            pump = threading.Thread(target=self._pump, args=(process.stdout, log_file), daemon=True)
            pump.start()
            # The monitor starts after pinning (it sees the job's cores) and stops once the job has ended.
            with self.monitor(process.pid) if self.monitor else contextlib.nullcontext():
                outcome = self._wait(process)
            _signal_group(process, signal.SIGKILL)  # like a container's end: no orphan outlives the job
            pump.join(timeout=10)
        self._raise_for(outcome, process.returncode)

    def _pump(self, stream: IO[bytes], log_file: IO[str]) -> None:
        for raw in iter(lambda: stream.readline(_MAX_LINE_BYTES), b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.tail.append(line)
            with contextlib.suppress(ValueError, OSError):
                log_file.write(line + "\n")
                log_file.flush()
            for callback in self.callbacks:
                with contextlib.suppress(Exception):  # a broken progress view must not stop the job
                    callback(line)
        stream.close()

    def _wait(self, process: subprocess.Popen[bytes]) -> str | None:
        deadline = time.monotonic() + self.max_runtime_s if self.max_runtime_s else None
        while process.poll() is None:
            if self.cancelled.wait(0.1):
                self._stop(process)
                return "cancelled"
            if deadline is not None and time.monotonic() > deadline:
                self._stop(process)
                return "timeout"
        return None

    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()

    def _raise_for(self, outcome: str | None, returncode: int) -> None:
        if outcome == "timeout":
            raise StepFailed(f"MaxRuntimeExceeded: the job ran past MaxRuntimeInSeconds ({self.max_runtime_s:g} s) "
                             f"and was stopped; log: {self.log_path}")
        if outcome == "cancelled":
            raise StepFailed("Stopped: the job was stopped on request")
        if returncode != 0:
            failure = read_message(self.failure_file)
            detail = f" ({failure})" if failure else ""
            raise StepFailed(f"AlgorithmError: {_describe_exit(returncode)}{detail}, last lines:\n"
                             + "\n".join(self.tail))


def read_message(path: Path | None, limit: int = 1024) -> str:
    """The first KB of a container's message/failure file (ExitMessage, FailureReason), or ''."""
    if path is None or not path.is_file():
        return ""
    return path.read_bytes()[:limit].decode("utf-8", "replace").strip()


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"exit code {returncode} (killed by {signal.Signals(-returncode).name})"
    return f"exit code {returncode}"


def _pin(pid: int, cores: set[int] | None) -> None:
    if cores:
        with contextlib.suppress(OSError):  # the process may already have exited
            os.sched_setaffinity(pid, cores)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    except AttributeError:  # no process groups on this platform
        if process.poll() is None:
            process.kill()
