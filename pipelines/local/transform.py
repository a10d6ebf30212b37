"""The Transform step (CreateTransformJob) on this machine, with SageMaker's Batch Transform semantics.

The model is served as its endpoint would be — the artifact extracted as the container finds it, the model's own
`code/inference.py` behind `pipelines.local.serving` in its own process — and every object under the input prefix is
POSTed to its /invocations, `MaxConcurrentTransforms` at a time. Each answer lands where SageMaker writes it:
`<S3OutputPath>/<key relative to the input prefix>.out`, the response body as is.

As on SageMaker, a record the model refuses (any answer but 200), a record over `MaxPayloadInMB` and an empty
input prefix fail the job; the failure reason names the file. The request has no way to tolerate failed records
(SageMaker offers none for SplitType None), so none is offered here. The server's log and ours are the job's log
(`jobs/<execution>/<step>/<job>/job.log`), which `logs` shows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import httpx

from pipelines.local.container import DEFAULT_REGION, job_arn, job_name, note_instance_count
from pipelines.local.deployment import MULTI_MODEL, DeploymentRecords, install_model
from pipelines.local.ports import LOOPBACK, free_port
from pipelines.local.server_process import DEFAULT_READY_TIMEOUT_S, ServerProcess, serving_environment
from pipelines.local.state import StateStore, utc_now
from pipelines.local.step_api import StepFailed, StepRun
from pipelines.local.workspace import Workspace
from pipelines.target_base import TargetError, files_to_upload

MB = 1024 * 1024
DEFAULT_MAX_PAYLOAD_MB = 6  # the service's default MaxPayloadInMB
RECORD_TIMEOUT_S = 60.0  # the service's default invocation timeout per record (ModelClientConfig)


class TransformJobHandler:
    """The `Transform` step type."""

    def __init__(self, workspace: Workspace, store: StateStore, region: str = DEFAULT_REGION,
                 ready_timeout: float = DEFAULT_READY_TIMEOUT_S) -> None:
        self.workspace, self.region, self.ready_timeout = workspace, region, ready_timeout
        self.records = DeploymentRecords(store, region)

    def run(self, run: StepRun) -> dict[str, Any]:
        request = run.arguments
        name = request.get("TransformJobName") or job_name(run.step_name, run.execution_id)
        created = utc_now()
        check_supported(request)
        note_instance_count(run, request.get("TransformResources", {}).get("InstanceCount"))
        model = self.records.model(request["ModelName"])
        if model is None:
            raise StepFailed(f'ValidationException: Could not find model "{request["ModelName"]}".')
        inputs = input_files(self.workspace, request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"])
        job_dir = run.job_dir(name)
        container = model["PrimaryContainer"]
        if container.get("Mode") == MULTI_MODEL:  # CreateTransformJob has no TargetModel to pick one by
            raise StepFailed(f"ValidationException: model {request['ModelName']} is a multi-model model (Mode: "
                             "MultiModel): a transform job names no TargetModel, give it a single-model model")
        entry_point = install_model(self.workspace, container, job_dir / "model")
        server = ServerProcess.start(job_dir / "model", free_port(), entry_point, job_dir / "job.log",
                                     serving_environment(job_dir / "model", container.get("Environment") or {}))
        started = utc_now()
        try:
            server.wait_ready(self.ready_timeout, run.cancelled)
            run.log(f"transform job {name}: {len(inputs)} file(s) through model {request['ModelName']}")
            output = self.workspace.path_for(request["TransformOutput"]["S3OutputPath"])
            count = transform_all(server.port, inputs, output, request, run.cancelled)
        finally:
            server.stop()
        run.log(f"transform job {name} Completed: {count} .out file(s) in "
                f"{request['TransformOutput']['S3OutputPath']}")
        return describe(request, name, job_arn("transform-job", name, self.region), created, started)


def run_batch_transform(workspace: Workspace, store: StateStore, region: str, package: Mapping[str, Any],
                        request: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """A Transform job outside any execution (`pipeline.py batch`): the model package's container becomes a model
    named after the job, then the job runs as the pipeline's step does, its files under `jobs/<job>/batch/<job>/`.
    Returns how many .out files it wrote and where its log is."""
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or []
    if not containers:
        raise TargetError(f"model package {package.get('ModelPackageArn')} has no container to serve")
    job = request["TransformJobName"]
    DeploymentRecords(store, region).create_model(request["ModelName"], containers[0], None)
    run = StepRun(execution_id=job, pipeline_name="batch", step_name="batch", step_type="Transform",
                  arguments=request, workspace=workspace, cpu_budget=1, log=log)
    try:
        TransformJobHandler(workspace, store, region).run(run)
    except StepFailed as err:
        raise TargetError(f"transform job {job} failed: {err.reason} (its log: {run.job_dir(job) / 'job.log'})") \
            from None
    output = workspace.path_for(request["TransformOutput"]["S3OutputPath"])
    return {"outputs": sum(1 for path in output.rglob("*.out") if path.is_file()),
            "log": str(run.job_dir(job) / "job.log")}


def check_supported(request: Mapping[str, Any]) -> None:
    """What the local engine does not do, refused by name before anything starts."""
    source = request["TransformInput"]["DataSource"]["S3DataSource"]
    if source.get("S3DataType", "S3Prefix") != "S3Prefix":
        raise StepFailed(f"the local engine reads S3DataType S3Prefix only, not {source['S3DataType']} "
                         "(a manifest file): give the prefix the images are under")
    split = request["TransformInput"].get("SplitType", "None")
    if split != "None":
        raise StepFailed(f"the local engine transforms whole files (SplitType None), not SplitType {split}: one "
                         "image is one record")
    if request["TransformInput"].get("CompressionType", "None") != "None":
        raise StepFailed("the local engine reads uncompressed input (CompressionType None)")
    if request.get("DataProcessing"):
        raise StepFailed("DataProcessing (input/output filters, JoinSource) is not supported by the local engine")


def input_files(workspace: Workspace, prefix: str) -> list[tuple[Path, str]]:
    """(file, key relative to the prefix) of every object under it, sorted; the service's error when none."""
    try:
        return files_to_upload(workspace.path_for(prefix))  # the same listing as an upload of that folder
    except TargetError:
        raise StepFailed(f"ClientError: No S3 objects found under S3 URL \"{prefix}\" given in input data source. "
                         "Please ensure that the bucket exists in the selected region, that objects exist under "
                         "that S3 prefix, and that the role has permission to read them.") from None


def transform_all(port: int, inputs: list[tuple[Path, str]], output: Path, request: Mapping[str, Any],
                  cancelled: threading.Event) -> int:
    """Each file to /invocations, `MaxConcurrentTransforms` at a time; its answer to `<output>/<key>.out`."""
    content_type = request["TransformInput"].get("ContentType", "application/octet-stream")
    accept = request.get("TransformOutput", {}).get("Accept", "application/json")
    max_bytes = int(request.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB)) * MB
    headers = {"Content-Type": content_type, "Accept": accept}
    url = f"http://{LOOPBACK}:{port}/invocations"

    def one(path: Path, key: str) -> None:
        if cancelled.is_set():
            raise StepFailed("the execution was stopped during the transform job")
        size = path.stat().st_size
        if size > max_bytes:
            raise StepFailed(f"ClientError: {key} is {size / MB:.1f} MB, over MaxPayloadInMB "
                             f"{max_bytes // MB}: raise [batch] max_payload_mb (at most 100) or make it smaller")
        with httpx.Client(timeout=RECORD_TIMEOUT_S, trust_env=False) as client:
            try:
                response = client.post(url, content=path.read_bytes(), headers=headers)
            except httpx.TransportError as exc:
                raise StepFailed(f"ClientError: {key}: the model server did not answer: {exc}") from exc
        if response.status_code != 200:
            body = response.text[:500]
            raise StepFailed(f"ClientError: {key}: the model answered HTTP {response.status_code}: {body}")
        target = output / f"{key}.out"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(response.content)

    workers = max(1, int(request.get("MaxConcurrentTransforms") or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(one, path, key) for path, key in inputs]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            future.cancel()  # after a failure, what has not started does not start: the job has failed
        for future in futures:
            error = None if future.cancelled() else future.exception()
            if error is not None:
                raise error  # the first failed file in input order
    return len(inputs)


def describe(request: Mapping[str, Any], name: str, arn: str, created: str, started: str) -> dict[str, Any]:
    """DescribeTransformJob-shaped."""
    described = {key: request[key] for key in ("ModelName", "TransformInput", "TransformOutput", "TransformResources",
                                                 "BatchStrategy", "MaxPayloadInMB", "MaxConcurrentTransforms",
                                                 "Environment") if key in request}
    return {**described, "TransformJobName": name, "TransformJobArn": arn, "TransformJobStatus": "Completed",
            "CreationTime": created, "TransformStartTime": started, "TransformEndTime": utc_now()}
