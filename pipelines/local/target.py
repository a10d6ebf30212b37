"""`LocalTarget`: the `pipelines.targets.Target` the CLI drives for `--target local`, plus local-only commands.

Pipelines, executions and steps live in the workspace's state database; `start(wait=True)` runs the executor in
this process, `start(wait=False)` in a detached worker (`python -m pipelines.local.worker <workspace> <id>`) that
outlives the CLI. Every command first fails executions whose engine died (`StateStore.recover_interrupted`).
Registry and endpoint commands delegate to `registry.ModelRegistry` and `endpoints.EndpointManager`, imported when
used. Every user mistake raises `TargetError` with what to do about it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import string
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from pipelines.config import REPO_ROOT, PipelineConfig, bucket_and_role
from pipelines.local.executor import Executor
from pipelines.local.handlers import HandlersFactory, default_handlers, factory_reference, make_handlers
from pipelines.local.state import ExecutionRecord, PipelineRecord, StateStore, process_identity
from pipelines.local.step_views import step_summary
from pipelines.local.workspace import Workspace
from pipelines.parameters import ParameterError, builtin_input_data_url, coerce_parameters
from pipelines.s3_bridge import S3Bridge, s3_uri_to_path
from pipelines.s3_urls import parse_s3_url
from pipelines.target_base import (
    ExecutionSummary,
    ProgressCallback,
    TargetError,
    content_type_of,
    files_to_upload,
)
from pipelines.transform_requests import transform_job_request

if TYPE_CHECKING:
    from pipelines.local.attribution import OverlayPainter
    from pipelines.report.model import ReportData

ACCOUNT_ID = "000000000000"
EXECUTION_ID_ALPHABET = string.ascii_lowercase + string.digits
EXECUTION_ID_LENGTH = 12
SCHEDULES_ARE_CLOUD = "schedules run on AWS (EventBridge Scheduler): use --target sagemaker"


def new_execution_id() -> str:
    return "".join(secrets.choice(EXECUTION_ID_ALPHABET) for _ in range(EXECUTION_ID_LENGTH))


class LocalTarget:
    name = "local"

    def __init__(self, config: PipelineConfig, workspace: Workspace | str | Path | None = None, *,
                 handlers_factory: HandlersFactory | None = None, cpu_budget: int | None = None,
                 on_log: Callable[[str, str], None] | None = None) -> None:
        """`handlers_factory(workspace, store, region)` gives the step handlers (default: the real ones); `on_log`
        gets (step, line) for every log line of a step run in this process."""
        self.config = config
        location = workspace.root if isinstance(workspace, Workspace) else workspace or config.local.workspace
        try:
            self.workspace = workspace if isinstance(workspace, Workspace) else Workspace.open(location)
            self.store = StateStore(self.workspace.state_db)
            self.store.recover_interrupted()
        except (OSError, sqlite3.Error) as err:
            raise TargetError(f"cannot use {location} as the local workspace ({err}); pass another one or delete "
                              f"it to start afresh") from None
        self.handlers_factory = handlers_factory or default_handlers
        self.cpu_budget, self.on_log = cpu_budget, on_log
        self._painter: OverlayPainter | None = None

    @property
    def pipeline_name(self) -> str:
        return self.config.project.pipeline_name

    @property
    def pipeline_arn(self) -> str:
        return f"arn:aws:sagemaker:{self.config.project.region}:{ACCOUNT_ID}:pipeline/{self.pipeline_name}"

    # ------------------------------------------------------------------------------------------ Target
    def code_uploads(self) -> S3Bridge:
        return S3Bridge(None, record=True)

    def upsert(self, definition: str, description: str, code: S3Bridge | None = None) -> str:
        try:
            parsed = json.loads(definition)
        except ValueError as err:
            raise TargetError(f"the pipeline definition is not valid JSON: {err}") from None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("Steps"), list):
            raise TargetError("the pipeline definition must be a JSON object with a list of Steps")
        if code is not None:
            code.replay(self._store_object)
        self.store.upsert_pipeline(self.pipeline_name, self.pipeline_arn, definition, description)
        return self.pipeline_arn

    def _store_object(self, bucket: str, key: str, data: bytes) -> None:
        path = s3_uri_to_path(self.workspace.s3_root, f"s3://{bucket}/{key}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def start(self, parameters: dict[str, Any], wait: bool, on_progress: ProgressCallback | None,
              use_cache: bool = True) -> ExecutionSummary:
        pipeline = self._pipeline()
        try:
            values = coerce_parameters(json.loads(pipeline.definition).get("Parameters") or [], parameters or {})
        except ParameterError as err:
            raise TargetError(str(err)) from None
        self._seed_sample_dataset(values.get("InputDataUrl"), explicit="InputDataUrl" in (parameters or {}))
        executor = self._executor() if wait else None  # before the execution exists: an import error leaves none
        execution_id = new_execution_id()
        self.store.create_execution(execution_id, f"{pipeline.arn}/execution/{execution_id}", pipeline, values,
                                    use_cache)
        if executor is not None:
            return self._run_here(executor, execution_id, on_progress, retry=False)
        self._spawn_worker(execution_id)
        return self.describe_execution(execution_id)

    def _seed_sample_dataset(self, input_url: Any, explicit: bool) -> None:
        """The built-in InputDataUrl starts out empty: the bundled sample digits are written there on first use.

        A URL the user gave (``--param`` or ``[data] input_data_url``) is never filled in: an empty one fails
        PrepareData, naming the URL and how to upload a dataset there.
        """
        if explicit or input_url != builtin_input_data_url(self.config):
            return
        location = self.workspace.path_for(input_url)
        if location.exists() and any(location.iterdir()):
            return
        from pipelines.sample_data import write_sample_dataset

        write_sample_dataset(location)
        if self.on_log:
            self.on_log("engine", f"InputDataUrl {input_url} was empty: wrote the bundled sample dataset there")

    def describe_execution(self, arn: str | None) -> ExecutionSummary:
        self.store.recover_interrupted()
        return self._summary(self._execution(arn))

    def list_executions(self) -> list[ExecutionSummary]:
        self.store.recover_interrupted()
        return [self._summary(record) for record in self.store.list_executions(self.pipeline_name)]

    def approve(self, model_package_arn: str, status: str) -> None:
        from pipelines.local.registry import ModelRegistry

        ModelRegistry(self.store, self.config.project.region).update_approval(model_package_arn, status)

    def invoke(self, endpoint_name: str, files: Sequence[Path], target_model: str | None = None
               ) -> list[dict[str, Any]]:
        manager = self._endpoints()
        responses = []
        for file in map(Path, files):
            if not file.is_file():
                raise TargetError(f"{file} is not a file: pass images (or JSON requests) to send to the endpoint")
            status, body = manager.invoke(endpoint_name, file.read_bytes(), content_type_of(file),
                                          target_model=target_model)
            text = body.decode(errors="replace")
            if status != 200:
                raise TargetError(f"endpoint {endpoint_name} answered HTTP {status} for {file}: {_error_text(text)}")
            responses.append({"file": str(file), "response": text})
        return responses

    def attribution_overlay(self, endpoint_name: str, image: bytes) -> bytes:
        from pipelines.local.attribution import OverlayPainter

        endpoint = self._endpoints().describe(endpoint_name)
        if "model_dir" not in endpoint:
            raise TargetError(f"endpoint {endpoint_name} is multi-model: its overlay needs the model a request picks; "
                              "the try-it page draws overlays for a single-model endpoint")
        # Kept: the try-it page's next drop reuses the loaded model.
        self._painter = self._painter or OverlayPainter(self.config.explain.method)
        return self._painter.paint(Path(endpoint["model_dir"]), image)

    def upload_data(self, source: Path, url: str, progress: Callable[[str], None] = print) -> str:
        if not url.startswith("s3://"):
            raise TargetError(f"{url} is a folder on this machine: the local target reads it where it is; pass it as "
                              f"InputDataUrl (or [data] input_data_url), no upload needed")
        destination = parse_s3_url(url, "the upload destination")
        files = files_to_upload(source)
        root = self.workspace.path_for(str(destination))
        for path, relative in files:
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, root / relative)
        progress(f"uploaded {len(files)} file(s) to {destination} (in the workspace, {root})")
        return str(destination)

    # ------------------------------------------------------------------------------------------ local only
    def retry(self, execution: str | None, wait: bool, on_progress: ProgressCallback | None) -> ExecutionSummary:
        """Re-runs a Failed or Stopped execution from the steps that did not succeed."""
        self.store.recover_interrupted()
        record = self._execution(execution)
        if record.status == "Succeeded":
            raise TargetError(f"execution {record.id} succeeded: there is nothing to retry")
        if record.status not in ("Failed", "Stopped"):
            raise TargetError(f"execution {record.id} is still {record.status} (engine pid {record.engine_pid}); "
                              f"wait for it to end before retrying")
        if wait:
            return self._run_here(self._executor(), record.id, on_progress, retry=True)
        # The new attempt is claimed before the worker starts, so a second `retry` is refused meanwhile.
        if self.store.begin_retry(record.id, *process_identity()) is None:
            raise TargetError(f"execution {record.id} is being retried already")
        self._spawn_worker(record.id)
        return self.describe_execution(record.id)

    def logs(self, execution: str | None = None, step: str | None = None,
             host: str | None = None) -> list[tuple[str, Path]]:
        """(job name, log file) of every job the execution ran (of `step` only, when given), oldest first; a
        multi-instance job has one per host, named `job (algo-N)` (`host`: only that host's)."""
        record = self._execution(execution)
        root = self.workspace.jobs_root / record.id
        if step is not None:
            names = [s["Name"] for s in _all_steps(json.loads(record.definition))]
            if step not in names:
                raise TargetError(f"execution {record.id} has no step {step!r}; its steps: {', '.join(names)}")
        folders = [root / step] if step else sorted(p for p in root.glob("*") if p.is_dir())
        logs = [item for folder in folders for job in folder.glob("*/job.log") for item in _host_logs(job.parent)]
        if host is not None:
            hosts = sorted({name for _, name, _ in logs})
            logs = [item for item in logs if item[1] == host]
            if not logs:
                raise TargetError(f"no job{' of step ' + step if step else ''} in execution {record.id} ran on "
                                  f"host {host!r}; its hosts: {', '.join(hosts) or 'none'}")
        several = {job for job, name, _ in logs if name != "algo-1"}
        logs.sort(key=lambda item: (item[2].parent.stat().st_mtime if item[1] == "algo-1" else
                                    item[2].parent.parent.stat().st_mtime, item[1]))  # by job, then host
        found = [(f"{job} ({name})" if job in several else job, log) for job, name, log in logs]
        engine_log = root / "engine.log"
        if step is None and host is None and engine_log.is_file():
            found.insert(0, ("engine", engine_log))
        return found

    def list_models(self) -> list[dict[str, Any]]:
        from pipelines.local.registry import ModelRegistry

        return ModelRegistry(self.store, self.config.project.region).list_packages()

    def list_endpoints(self) -> list[dict[str, Any]]:
        return self._endpoints().list()

    def autoscale(self, endpoint_name: str, remove: bool) -> dict[str, Any]:
        self._endpoints().describe(endpoint_name)  # an unknown endpoint is an error here too
        return {"endpoint": endpoint_name, "applicable": False,
                "reason": "not applicable on the local target: a local endpoint is one serving process on this "
                          "machine, with no instances to scale. [deployment] autoscaling applies on the sagemaker "
                          "target (`--target sagemaker autoscale`)"}

    def delete_endpoint(self, name: str) -> None:
        self._endpoints().delete(name)

    def batch_transform(self, model_package_arn: str | None, input_url: str, output_url: str | None,
                        wait: bool, progress: Callable[[str], None] = print) -> dict[str, Any]:
        """Runs here and now (`wait` changes nothing): the model is served by its own code, as in the pipeline."""
        from pipelines.local.transform import run_batch_transform

        if not input_url.startswith("s3://") and not Path(input_url).expanduser().exists():
            raise TargetError(f"{input_url} does not exist: give a folder of images (or one image) on this machine, "
                              "or an s3:// URL in the workspace")
        region = self.config.project.region
        package = self._model_package(model_package_arn)
        job = f"batch-{new_execution_id()}"
        bucket, _ = bucket_and_role(self.config)
        output = (output_url or f"s3://{bucket}/{self.pipeline_name}/batch/{job}").rstrip("/")
        request = transform_job_request(job, job, input_url, output, self.config.batch, "local")
        result = run_batch_transform(self.workspace, self.store, region, package, request, progress)
        return {"job": job, "status": "Completed", "model_package": package["ModelPackageArn"], "input": input_url,
                "output": output, "local_output": str(self.workspace.path_for(output)), **result}

    def _model_package(self, arn: str | None) -> dict[str, Any]:
        from pipelines.local.registry import ModelRegistry

        registry = ModelRegistry(self.store, self.config.project.region)
        if arn is not None:
            return registry.describe(arn)
        group = self.config.project.model_package_group
        versions = [version for version in registry.list_packages() if version["group"] == group]  # oldest first
        if not versions:
            raise TargetError(f"no model is registered in {group} yet: run the pipeline (`pipeline.py start`), or "
                              "pass --model-package ARN")
        return registry.describe(versions[-1]["arn"])

    def report_data(self, execution: str | None) -> ReportData:
        from pipelines.report.local import collect_local

        return collect_local(self, execution)

    def put_schedule(self, name: str, cron: str | None, rate: tuple[int, str] | None, enabled: bool) -> list[str]:
        raise TargetError(SCHEDULES_ARE_CLOUD)

    def describe_schedule(self, name: str) -> dict[str, Any]:
        raise TargetError(SCHEDULES_ARE_CLOUD)

    def delete_schedule(self, name: str) -> None:
        raise TargetError(SCHEDULES_ARE_CLOUD)

    def _endpoints(self) -> Any:
        from pipelines.local.endpoints import EndpointManager

        return EndpointManager(self.workspace, self.store, self.config.project.region,
                               memory_budget_mb=self.config.local.endpoint_memory_mb)

    # ------------------------------------------------------------------------------------------ running
    def _executor(self) -> Executor:
        try:
            handlers = make_handlers(self.handlers_factory, self.workspace, self.store, self.config.project.region,
                                     self.config.local.endpoint_memory_mb)
        except ImportError as err:
            raise TargetError(f"the local engine cannot load its step handlers: {err}") from None
        return Executor(self.workspace, self.store, handlers, self.cpu_budget, self.on_log)

    def _run_here(self, executor: Executor, execution_id: str, on_progress: ProgressCallback | None,
                  retry: bool) -> ExecutionSummary:
        on_change = (lambda: on_progress(self._summary(self._execution(execution_id)))) if on_progress else None
        (executor.retry if retry else executor.run)(execution_id, on_change)
        return self.describe_execution(execution_id)

    def _spawn_worker(self, execution_id: str) -> None:
        engine_dir = self.workspace.jobs_root / execution_id
        engine_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pipelines.local.worker", str(self.workspace.root), execution_id,
                   "--region", self.config.project.region,
                   "--endpoint-memory-mb", str(self.config.local.endpoint_memory_mb)]
        reference = factory_reference(self.handlers_factory)
        if reference:
            command += ["--handlers", reference]
        if self.cpu_budget:
            command += ["--cpu-budget", str(self.cpu_budget)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                                          os.environ.get("PYTHONPATH")]))}
        with open(engine_dir / "engine.log", "ab") as log:
            worker = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                      env=env, start_new_session=True)
        try:
            self.store.hand_over(execution_id, os.getpid(), *process_identity(worker.pid))
        except psutil.NoSuchProcess:
            pass  # it already ended: it recorded its own outcome (or recovery will)

    # ------------------------------------------------------------------------------------------ records
    def _pipeline(self) -> PipelineRecord:
        pipeline = self.store.get_pipeline(self.pipeline_name)
        if pipeline is None:
            raise TargetError(f"pipeline {self.pipeline_name} does not exist in the local workspace "
                              f"{self.workspace.root}: run `pipeline.py upsert` first")
        return pipeline

    def _execution(self, reference: str | None) -> ExecutionRecord:
        if reference is None:
            records = self.store.list_executions(self.pipeline_name)
            if not records:
                raise TargetError(f"pipeline {self.pipeline_name} has no executions yet: run `pipeline.py start`")
            return records[0]
        record = self.store.get_execution(reference) or self.store.get_execution(reference.rsplit("/", 1)[-1])
        if record is None:
            latest = [r.id for r in self.store.list_executions(self.pipeline_name)[:5]]
            hint = f"latest: {', '.join(latest)}" if latest else "there are none yet"
            raise TargetError(f"no local execution {reference!r} (give its id or ARN; {hint})")
        return record

    def _summary(self, record: ExecutionRecord) -> ExecutionSummary:
        steps = [step_summary(step) for step in self.store.list_steps(record.id)]
        for step in steps:
            if step.type == "Endpoint" and step.status == "Succeeded" and "EndpointName" in step.details:
                step.details["Url"] = self._endpoint_url(step.details["EndpointName"])
        return ExecutionSummary(arn=record.arn, status=record.status, failure_reason=record.failure_reason,
                                started=record.started, ended=record.ended, parameters=record.parameters, steps=steps)

    def _endpoint_url(self, name: str) -> str | None:
        """Where the endpoint answers now (the Describe-shaped properties have no URL); None when it is gone."""
        try:
            return self._endpoints().describe(name).get("url")
        except (TargetError, ImportError):
            return None


def _host_logs(job_dir: Path) -> list[tuple[str, str, Path]]:
    """(job, host, log) of each host of a job: algo-1's log is the job's own, algo-N's is in its folder
    (pipelines/local/training_contract.py)."""
    hosts = [("algo-1", job_dir / "job.log")] + [(log.parent.name, log) for log in job_dir.glob("algo-*/job.log")]
    return [(job_dir.name, name, log) for name, log in hosts if log.is_file()]


def _all_steps(definition: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    from pipelines.validation import iter_steps

    return list(iter_steps(definition.get("Steps", [])))


def _error_text(body: str) -> str:
    """An endpoint's error answer, {"error": message}, as its message (else the body's start)."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body[:500]
