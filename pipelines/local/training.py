"""CreateTrainingJob, locally: a script-mode training job run the way sagemaker-training-toolkit runs it.

The job directory gets SageMaker's files (`input/config/*.json`, channels in `input/data/<channel>`, the code from
`sagemaker_submit_directory` in `code/`), the script runs as `python <sagemaker_program> --name value ...` with the
toolkit's `SM_*` environment, and the results land where SageMaker puts them: `<S3OutputPath>/<job>/output/
model.tar.gz` and `output.tar.gz`, debug tensors in `<DebugHookConfig.S3OutputPath>/<job>/debug-output`.
`run_training_job` is the whole job; tuning calls it once per trial, from several threads at once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipelines.local.container import (
    DEFAULT_REGION,
    JobProcess,
    MetricExtractor,
    download,
    extract_tar_gz,
    job_arn,
    pack_tar_gz,
    upload,
    utc_now,
    workspace_path,
)
from pipelines.local.container import job_name as new_job_name
from pipelines.local.debugging import JobRules
from pipelines.local.ports import free_port
from pipelines.local.profiling import JobProfiler
from pipelines.local.step_api import StepFailed, StepRun
from pipelines.local.training_contract import (
    ContractFiles,
    Host,
    TrainingEnvironment,
    decode_hyperparameters,
    job_hosts,
    to_cmd_args,
)
from pipelines.local.training_hosts import HostGroup
from pipelines.local.workspace import Workspace

DEFAULT_MAX_RUNTIME = 86400
SUPPORTED_INPUT_MODES = ("File", "FastFile")  # FastFile streams on SageMaker; a local copy reads the same


# ---------------------------------------------------------------------------------------------- progress
class Phases:
    """SecondaryStatus and its transitions, published live through `on_progress`."""

    def __init__(self, on_progress: Callable[[dict[str, Any]], None]) -> None:
        self.transitions: list[dict[str, str]] = []
        self._on_progress = on_progress
        self.extra: dict[str, Any] = {}  # published with every update (Debugger rule statuses)

    def enter(self, status: str, message: str) -> None:
        now = utc_now()
        if self.transitions:
            self.transitions[-1]["EndTime"] = now
        self.transitions.append({"Status": status, "StartTime": now, "StatusMessage": message})
        self.note()

    def note(self, **values: Any) -> None:
        self.extra.update(values)
        current = self.transitions[-1] if self.transitions else {}
        with contextlib.suppress(Exception):  # the progress view is best effort
            self._on_progress({**self.extra, "SecondaryStatus": current.get("Status"),
                               "StatusMessage": current.get("StatusMessage")})


# ---------------------------------------------------------------------------------------------- one training job
class TrainingJob:
    """One CreateTrainingJob request run to completion: prepare, run, upload, describe."""

    def __init__(self, run: StepRun, name: str, request: Mapping[str, Any], region: str) -> None:
        self.run_, self.name, self.request, self.region = run, name, dict(request), region
        self.workspace: Workspace = run.workspace
        self.hosts: list[Host] = job_hosts(run.job_dir(name), 1, run.cpu_budget)  # run() reads InstanceCount
        self.layout = self.hosts[0].layout
        self.hyperparameters: dict[str, str] = dict(request.get("HyperParameters") or {})
        self.user_hps, self.framework_hps = decode_hyperparameters(self.hyperparameters)
        algorithm = request.get("AlgorithmSpecification") or {}
        self.metrics = MetricExtractor(algorithm.get("MetricDefinitions") or [])
        self.input_mode = algorithm.get("TrainingInputMode", "File")
        self.channels = list(request.get("InputDataConfig") or [])
        self.instance_type = (request.get("ResourceConfig") or {}).get("InstanceType", "local")
        self.phases = Phases(run.on_progress)

    def run(self) -> dict[str, Any]:
        created, started = utc_now(), time.monotonic()
        self._check_supported()
        self.hosts = job_hosts(self.layout.job_dir, self._instance_count(), self.run_.cpu_budget)
        if len(self.hosts) > 1:
            self.run_.log(f"local engine: InstanceCount {len(self.hosts)} runs as hosts algo-1..algo-{len(self.hosts)}"
                          f" on this machine, {self.hosts[0].cpu_budget} core(s) each")
        self.phases.enter("Starting", "Preparing the instances for training")
        for host in self.hosts:
            host.layout.create()
        # Debugger rules (pipelines/local/debugging): evaluated while the job runs and after it; a rule's StopTraining
        # action stops the job as the executor's cancel does. Rules never fail the job by themselves.
        rules = JobRules(self.request, self.name, self.region, self.tensors_dir, self.workspace, self.run_.cancelled)
        try:
            self._prepare()
            self.phases.enter("Training", "Training image download completed. Training in progress.")
            # Profiler (pipelines/local/profiling): samples the job while it runs, evaluates the request's profiler
            # rules after; it never fails the job (a broken sampler makes the rules report Error).
            profiler = JobProfiler(self.request, self.workspace, self.name, self.layout.job_dir, self.region)
            processes = [(host, self._process(host)) for host in self.hosts]
            processes[0][1].monitor = profiler.watch  # the profiler samples algo-1, the host rank 0 runs on
            with rules.watching(lambda statuses: self.phases.note(DebugRuleEvaluationStatuses=statuses)):
                HostGroup(processes, rules.signal).run()
            self.phases.enter("Uploading", "Uploading generated training model")
            artifacts = self._upload_results()
        except OSError as exc:  # a full disk or an unreadable input: the service's words for it
            raise StepFailed(f"InternalServerError: {type(exc).__name__}: {exc}") from exc
        except StepFailed as exc:
            raise rules.failure(exc) from None  # stopped by a rule's StopTraining action: the reason names it
        finally:
            self._sync_side_outputs()
            (self.layout.job_dir / "metrics.json").write_text(json.dumps(self.metrics.to_json(), indent=2) + "\n")
            if rules.stopped_by_rule:
                self.phases.enter("Stopped", "Training job stopped by a Debugger rule's StopTraining action")
            rule_properties = rules.finish()
            self.phases.note(**rule_properties)  # a failed step keeps its last published properties
        self.phases.enter("Completed", "Training job completed")
        return {**self._describe(created, time.monotonic() - started, artifacts), **profiler.properties(),
                **rule_properties}

    def _instance_count(self) -> int:
        count = (self.request.get("ResourceConfig") or {}).get("InstanceCount", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise StepFailed(f"ValidationException: ResourceConfig.InstanceCount must be a whole number of at least 1,"
                             f" got {count!r} (TrainingInstanceCount / TuningInstanceCount)")
        return count

    def _check_supported(self) -> None:
        if "sagemaker_program" not in self.framework_hps or "sagemaker_submit_directory" not in self.framework_hps:
            raise StepFailed("ClientError: the local engine runs script-mode training jobs only "
                             "(HyperParameters need sagemaker_program and sagemaker_submit_directory)")
        for channel in self.channels:
            mode = channel.get("InputMode", self.input_mode)
            source = (channel.get("DataSource") or {}).get("S3DataSource")
            if mode not in SUPPORTED_INPUT_MODES or source is None:
                raise StepFailed(f"ClientError: channel {channel.get('ChannelName')!r}: only S3 data sources in "
                                 f"File mode run locally (got {mode}, {sorted(channel.get('DataSource') or {})})")
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise StepFailed(f"ClientError: channel {channel['ChannelName']!r}: S3DataType "
                                 f"{source['S3DataType']} is not supported locally (use S3Prefix)")

    # ------------------------------------------------------------------------------------------ before the run
    def _prepare(self) -> None:
        """Every host gets what SageMaker gives each instance: its config files, every channel (FullyReplicated: all
        of it, the script shards; ShardedByS3Key: every N-th object in key order), the code, and the checkpoints."""
        self.phases.enter("Downloading", "Downloading input data")
        for index, host in enumerate(self.hosts):
            ContractFiles(self, host).write()
            for channel in self.channels:
                source = channel["DataSource"]["S3DataSource"]
                folder = host.layout.data / channel["ChannelName"]
                download(self.workspace, source["S3Uri"], folder)
                if source.get("S3DataDistributionType") == "ShardedByS3Key":
                    keep_shard(folder, index, len(self.hosts))
            self._install_code(host.layout.code)
            checkpoint = self.request.get("CheckpointConfig")
            if checkpoint:
                download(self.workspace, checkpoint["S3Uri"], host.checkpoint_dir(self.request), required=False)

    def _install_code(self, code: Path) -> None:
        uri = str(self.framework_hps["sagemaker_submit_directory"])
        source = workspace_path(self.workspace, uri)
        if source.is_dir():
            shutil.copytree(source, code, dirs_exist_ok=True)
        elif source.is_file():
            extract_tar_gz(source, code)
        else:
            raise StepFailed(f"ClientError: sagemaker_submit_directory {uri} does not exist (looked in {source})")
        if not (code / self.program).is_file():
            raise StepFailed(f"ClientError: the entry point {self.program} is not in {uri}")

    @property
    def program(self) -> str:
        return str(self.framework_hps["sagemaker_program"])

    def _process(self, host: Host) -> JobProcess:
        """algo-1's lines feed the metrics (rank 0 prints the epoch lines) and the progress view as they are; the
        other hosts' lines go to the progress view tagged with the host."""
        if self.program.endswith(".py"):
            argv = ["python3", self.program]
        elif self.program.endswith(".sh"):
            argv = ["/bin/sh", self.program]
        else:
            argv = [f"./{self.program}"]
        max_runtime = (self.request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME)
        first = host is self.hosts[0]
        return JobProcess(
            argv + to_cmd_args(self.user_hps), job_dir=host.layout.job_dir, cwd=host.layout.code,
            env=TrainingEnvironment(self, host, self._master_port).variables(), cpu_budget=host.cpu_budget,
            max_runtime_s=max_runtime, cancelled=self.run_.cancelled,
            log=self.run_.log if first else functools.partial(_tagged, self.run_.log, host.name),
            on_line=self.metrics.feed if first else None, failure_file=host.layout.failure)

    @functools.cached_property
    def _master_port(self) -> int | None:
        return free_port() if len(self.hosts) > 1 else None

    # ------------------------------------------------------------------------------------------ after the run
    def _upload_results(self) -> str:
        """One model.tar.gz and one output.tar.gz, as SageMaker aggregates every host's `/opt/ml/model` and
        `/opt/ml/output/data` (a name two hosts both write: algo-1's copy, said in the log)."""
        for host in self.hosts[1:]:
            for folder, merged in ((host.layout.model, self.layout.model),
                                   (host.layout.output_data, self.layout.output_data)):
                self._merge(folder, merged, host.name)
        prefix = f"{self.request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{self.name}/output"
        pack_tar_gz(self.layout.model, workspace_path(self.workspace, f"{prefix}/model.tar.gz"))
        pack_tar_gz(self.layout.output_data, workspace_path(self.workspace, f"{prefix}/output.tar.gz"))
        return f"{prefix}/model.tar.gz"

    def _sync_side_outputs(self) -> None:
        """Checkpoints and debug tensors go out after a failure too: a retried job resumes from them."""
        checkpoint, hook = self.request.get("CheckpointConfig"), self.request.get("DebugHookConfig")
        # algo-1 last: every host holds the checkpoint downloaded at the start, and rank 0's newer one must win.
        for host in reversed(self.hosts):
            if checkpoint:
                upload(self.workspace, host.checkpoint_dir(self.request), checkpoint["S3Uri"])
            if hook and hook.get("S3OutputPath"):
                upload(self.workspace, host.tensors_dir(self.request), self.debug_output_uri)

    def _merge(self, folder: Path, merged: Path, host: str) -> None:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            target = merged / path.relative_to(folder)
            if target.exists():
                self.run_.log(f"local engine: {host} also wrote {target.relative_to(merged)}; algo-1's is kept")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)

    @property
    def tensors_dir(self) -> Path:
        """algo-1's: smdebug saves from rank 0 (include_workers "one"), where the rules read while the job runs."""
        return self.hosts[0].tensors_dir(self.request)

    @property
    def debug_output_uri(self) -> str:
        return f"{self.request['DebugHookConfig']['S3OutputPath'].rstrip('/')}/{self.name}/debug-output"

    def _describe(self, created: str, seconds: float, artifacts: str) -> dict[str, Any]:
        """DescribeTrainingJobResponse: the request echoed plus what the job produced (rule statuses: run())."""
        ended = utc_now()
        described = {key: value for key, value in self.request.items() if key not in ("Tags", "TrainingJobName")}
        described.update({
            "TrainingJobName": self.name,
            "TrainingJobArn": job_arn("training-job", self.name, self.region),
            "TrainingJobStatus": "Completed",
            "SecondaryStatus": self.phases.transitions[-1]["Status"],
            "SecondaryStatusTransitions": self.phases.transitions,
            "ModelArtifacts": {"S3ModelArtifacts": artifacts},
            "HyperParameters": self.hyperparameters,
            "CreationTime": created,
            "TrainingStartTime": created,
            "TrainingEndTime": ended,
            "LastModifiedTime": ended,
            "TrainingTimeInSeconds": max(1, round(seconds)),
            "BillableTimeInSeconds": max(1, round(seconds)),
            "FinalMetricDataList": self.metrics.final_metric_data_list(),
        })
        return described


# ---------------------------------------------------------------------------------------------- entry points
def keep_shard(folder: Path, index: int, count: int) -> None:
    """Leaves host `index` of `count` its share of a ShardedByS3Key channel: every `count`-th object by key."""
    for position, path in enumerate(sorted(p for p in folder.rglob("*") if p.is_file())):
        if position % count != index:
            path.unlink()


def _tagged(log: Callable[[str], None], host: str, line: str) -> None:
    log(f"[{host}] {line}")


def run_training_job(run: StepRun, job_name: str, request: Mapping[str, Any],
                     region: str = DEFAULT_REGION) -> dict[str, Any]:
    """Runs one CreateTrainingJob request as `job_name` under `run`'s step; returns DescribeTrainingJob-shaped
    properties or raises StepFailed. Safe to call concurrently with distinct job names."""
    return TrainingJob(run, job_name, request, region).run()


class TrainingJobHandler:
    """The `Training` step type."""

    def __init__(self, workspace: Workspace, store: Any = None, region: str = DEFAULT_REGION) -> None:
        self.workspace, self.store, self.region = workspace, store, region

    def run(self, run: StepRun) -> dict[str, Any]:
        return run_training_job(run, new_job_name(run.step_name, run.execution_id), run.arguments, self.region)
