"""CreateProcessingJob, locally: inputs copied in, the container's entrypoint run, outputs copied out.

The request's `/opt/ml/processing/...` paths live under `<job>/opt_ml/processing/...`; `ContainerEntrypoint` and
`ContainerArguments` are run as they are, with `python3` being this interpreter and `/opt/ml` rewritten. The image
itself is not run: a request without a `ContainerEntrypoint` (the image's own entrypoint) cannot run here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.local.container import (
    DEFAULT_REGION,
    OPT_ML,
    JobProcess,
    download,
    job_arn,
    job_name,
    note_instance_count,
    read_message,
    relocate,
    upload,
    utc_now,
)
from pipelines.local.step_api import StepFailed, StepRun
from pipelines.local.workspace import Workspace

DEFAULT_MAX_RUNTIME = 86400
PROCESSING_ROOT = f"{OPT_ML}/processing"


class ProcessingJob:
    """One CreateProcessingJob request run to completion."""

    def __init__(self, run: StepRun, name: str, request: Mapping[str, Any], region: str) -> None:
        self.run_, self.name, self.request, self.region = run, name, dict(request), region
        self.workspace: Workspace = run.workspace
        self.job_dir = run.job_dir(name)
        self.base = self.job_dir / "opt_ml"
        self.inputs = list(request.get("ProcessingInputs") or [])
        self.outputs = list((request.get("ProcessingOutputConfig") or {}).get("Outputs") or [])

    def run(self) -> dict[str, Any]:
        self._check_supported()
        cluster = (self.request.get("ProcessingResources") or {}).get("ClusterConfig") or {}
        note_instance_count(self.run_, cluster.get("InstanceCount"))
        created = utc_now()
        try:
            self._write_config()
            for item in self.inputs:
                download(self.workspace, item["S3Input"]["S3Uri"], self.local_path(item["S3Input"]["LocalPath"]))
            for item in self.outputs:  # the service creates every output folder before the container starts
                self.local_path(item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
            self._process().run()
            for item in self.outputs:
                upload(self.workspace, self.local_path(item["S3Output"]["LocalPath"]), item["S3Output"]["S3Uri"])
        except OSError as exc:
            raise StepFailed(f"InternalServerError: {type(exc).__name__}: {exc}") from exc
        return self._describe(created)

    def _check_supported(self) -> None:
        """Fails before anything runs on what cannot run locally (Athena/Redshift inputs, Feature Store outputs)."""
        if not (self.request.get("AppSpecification") or {}).get("ContainerEntrypoint"):
            raise StepFailed("ClientError: the local engine cannot run an image's own entrypoint; the request "
                             "needs AppSpecification.ContainerEntrypoint (a script processor sets one)")
        for item in self.inputs:
            source = item.get("S3Input")
            if source is None:
                raise StepFailed(f"ClientError: input {item.get('InputName')!r}: only S3Input runs locally "
                                 f"(got {sorted(set(item) - {'InputName', 'AppManaged'})})")
            if source.get("S3DataType", "S3Prefix") != "S3Prefix" or source.get("S3InputMode", "File") != "File":
                raise StepFailed(f"ClientError: input {item.get('InputName')!r}: only S3Prefix in File mode runs "
                                 f"locally (got {source.get('S3DataType')}, {source.get('S3InputMode')})")
            self.local_path(source["LocalPath"])
        for item in self.outputs:
            if "S3Output" not in item:
                raise StepFailed(f"ClientError: output {item.get('OutputName')!r}: only S3Output runs locally")
            self.local_path(item["S3Output"]["LocalPath"])

    def local_path(self, container_path: str) -> Path:
        """A request's `/opt/ml/processing/...` path, inside the job directory."""
        if not container_path.startswith(PROCESSING_ROOT):
            raise StepFailed(f"ValidationException: LocalPath {container_path!r} must be under {PROCESSING_ROOT}")
        return Path(relocate(container_path, self.base))

    def _write_config(self) -> None:
        # What the service mounts at /opt/ml/config: the request itself and the cluster's hosts.
        config = self.base / "config"
        config.mkdir(parents=True, exist_ok=True)
        job_config = {**self.request, "ProcessingJobName": self.name}
        (config / "processingjobconfig.json").write_text(json.dumps(job_config, indent=2) + "\n")
        hosts = {"current_host": "algo-1", "hosts": ["algo-1"]}
        (config / "resourceconfig.json").write_text(json.dumps(hosts, indent=2) + "\n")

    def _process(self) -> JobProcess:
        app = self.request["AppSpecification"]
        argv = [relocate(arg, self.base) for arg in [*app["ContainerEntrypoint"], *app.get("ContainerArguments", [])]]
        env = {**(self.request.get("Environment") or {}), "SAGEMAKER_BASE_DIR": str(self.base)}
        stopping = self.request.get("StoppingCondition") or {}
        return JobProcess.for_run(
            self.run_, argv, job_dir=self.job_dir, cwd=self.job_dir, env=env,
            max_runtime_s=stopping.get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME),
            failure_file=self.base / "output" / "message")

    def _describe(self, created: str) -> dict[str, Any]:
        """DescribeProcessingJobResponse: the request echoed plus the job's own fields."""
        ended = utc_now()
        described = {key: value for key, value in self.request.items() if key not in ("Tags", "ProcessingJobName")}
        described.update({
            "ProcessingJobName": self.name,
            "ProcessingJobArn": job_arn("processing-job", self.name, self.region),
            "ProcessingJobStatus": "Completed",
            "ExitMessage": read_message(self.base / "output" / "message"),
            "CreationTime": created,
            "ProcessingStartTime": created,
            "ProcessingEndTime": ended,
            "LastModifiedTime": ended,
        })
        return described


class ProcessingJobHandler:
    """The `Processing` step type."""

    def __init__(self, workspace: Workspace, store: Any = None, region: str = DEFAULT_REGION) -> None:
        self.workspace, self.store, self.region = workspace, store, region

    def run(self, run: StepRun) -> dict[str, Any]:
        name = job_name(run.step_name, run.execution_id)
        return ProcessingJob(run, name, run.arguments, self.region).run()
