"""What a local training job's containers see: SageMaker's `/opt/ml/input/config/*.json` files and the training
toolkit's `SM_*` environment (sagemaker-training-toolkit's `environment.py` and `mapping.py`), one set per host.

A job of `InstanceCount` N runs as hosts algo-1 ... algo-N, each with its own relocated `/opt/ml`: algo-1 at
`<job>/opt_ml` (its log `<job>/job.log`), algo-K at `<job>/algo-K/opt_ml` (its log `<job>/algo-K/job.log`).
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipelines.local.container import relocate

INSTANCE_GROUP = "homogeneousCluster"
# The framework hyperparameter the SDK sets for distribution={"torch_distributed": {"enabled": True}}.
TORCH_DISTRIBUTED_HP = "sagemaker_torch_distributed_enabled"


# ---------------------------------------------------------------------------------------------- hyperparameters
def decode_hyperparameters(raw: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(user, framework) hyperparameters, each value JSON-decoded where it parses (`"\\"adam\\""` -> `adam`,
    `"42"` -> 42) and kept as text where it does not; `sagemaker_*` ones are the framework's, as in the toolkit."""
    user: dict[str, Any] = {}
    framework: dict[str, Any] = {}
    for name, value in raw.items():
        try:
            decoded = json.loads(value)
        except (TypeError, ValueError):
            decoded = value
        (framework if name.startswith("sagemaker_") else user)[name] = decoded
    return user, framework


def to_cmd_args(hyperparameters: Mapping[str, Any]) -> list[str]:
    """`--name value` pairs in sorted name order, values as `str()` gives them: the toolkit's `to_cmd_args`."""
    args: list[str] = []
    for name in sorted(hyperparameters):
        value = hyperparameters[name]
        if isinstance(value, Mapping):
            value = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
        args += [f"--{name}" if len(name) > 1 else f"-{name}", str(value)]
    return args


def _env_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@functools.lru_cache(maxsize=1)
def gpu_count() -> int:
    """CUDA devices a job could use; torch is imported only where an NVIDIA driver is present."""
    if shutil.which("nvidia-smi") is None and not Path("/dev/nvidiactl").exists():
        return 0
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # a broken driver counts as no GPU, as the job itself would find
        return 0


# ---------------------------------------------------------------------------------------------- one host
class TrainingLayout:
    """`/opt/ml` of one host of a training job, relocated into `root` (the job directory for algo-1)."""

    def __init__(self, root: Path) -> None:
        self.job_dir = root
        self.base = root / "opt_ml"
        self.config = self.base / "input" / "config"
        self.data = self.base / "input" / "data"
        self.model = self.base / "model"
        self.output = self.base / "output"
        self.output_data = self.output / "data"
        self.intermediate = self.output / "intermediate"
        self.failure = self.output / "failure"
        self.code = self.base / "code"

    def create(self) -> None:
        for folder in (self.config, self.data, self.model, self.output_data, self.intermediate, self.code):
            folder.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class Host:
    """One instance of a training job: its name among all the job's hosts, its `/opt/ml`, its share of the cores."""

    name: str
    hosts: tuple[str, ...]
    layout: TrainingLayout
    cpu_budget: int

    @property
    def is_master(self) -> bool:
        return self.name == self.hosts[0]

    def relocated(self, request: Mapping[str, Any], config: str, default: str) -> Path:
        """A `LocalPath` of the request's `config` (DebugHookConfig, CheckpointConfig) on this host."""
        return Path(relocate((request.get(config) or {}).get("LocalPath", default), self.layout.base))

    def tensors_dir(self, request: Mapping[str, Any]) -> Path:
        return self.relocated(request, "DebugHookConfig", "/opt/ml/output/tensors")

    def checkpoint_dir(self, request: Mapping[str, Any]) -> Path:
        return self.relocated(request, "CheckpointConfig", "/opt/ml/checkpoints")


def job_hosts(job_dir: Path, count: int, cpu_budget: int) -> list[Host]:
    """The job's `count` hosts, the cores split between them (each gets at least one)."""
    names = tuple(f"algo-{i}" for i in range(1, count + 1))
    share = max(1, cpu_budget // count)
    return [Host(name, names, TrainingLayout(job_dir if i == 0 else job_dir / name), share)
            for i, name in enumerate(names)]


class JobView(Protocol):
    """What the contract needs to know of the job (pipelines.local.training.TrainingJob)."""

    name: str
    request: dict[str, Any]
    hyperparameters: dict[str, str]
    user_hps: dict[str, Any]
    framework_hps: dict[str, Any]
    channels: list[dict[str, Any]]
    input_mode: str
    instance_type: str

    @property
    def program(self) -> str: ...

    @property
    def debug_output_uri(self) -> str: ...


class ContractFiles:
    """`/opt/ml/input/config/*.json` of one host, as SageMaker writes them before the container starts."""

    def __init__(self, job: JobView, host: Host) -> None:
        self.job, self.host = job, host

    def write(self) -> None:
        job, host = self.job, self.host
        files: dict[str, Any] = {
            "hyperparameters.json": job.hyperparameters,
            "inputdataconfig.json": input_data_config(job.channels, job.input_mode),
            "resourceconfig.json": resource_config(job.instance_type, host),
            "trainingjobconfig.json": {**job.request, "TrainingJobName": job.name},
        }
        hook = job.request.get("DebugHookConfig")
        if hook:
            files["debughookconfig.json"] = {
                "LocalPath": str(host.tensors_dir(job.request)),
                "HookParameters": hook.get("HookParameters") or {},
                "CollectionConfigurations": hook.get("CollectionConfigurations") or [],
                "S3OutputPath": job.debug_output_uri,
            }
        checkpoint = job.request.get("CheckpointConfig")
        if checkpoint:
            files["checkpointconfig.json"] = {"LocalPath": str(host.checkpoint_dir(job.request)),
                                              "S3Path": checkpoint["S3Uri"]}
        for name, content in files.items():
            (host.layout.config / name).write_text(json.dumps(content, indent=2) + "\n")


def input_data_config(channels: list[dict[str, Any]], default_mode: str) -> dict[str, dict[str, str]]:
    """inputdataconfig.json: each channel's mode and distribution, as the container sees them."""
    described: dict[str, dict[str, str]] = {}
    for channel in channels:
        source = channel["DataSource"]["S3DataSource"]
        described[channel["ChannelName"]] = {
            "TrainingInputMode": channel.get("InputMode", default_mode),
            "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
            **({"ContentType": channel["ContentType"]} if channel.get("ContentType") else {}),
        }
    return described


def resource_config(instance_type: str, host: Host) -> dict[str, Any]:
    hosts = list(host.hosts)
    return {
        "current_host": host.name, "hosts": hosts, "current_instance_type": instance_type,
        "current_group_name": INSTANCE_GROUP,
        "instance_groups": [{"instance_group_name": INSTANCE_GROUP, "instance_type": instance_type, "hosts": hosts}],
        "network_interface_name": "eth0",
    }


class TrainingEnvironment:
    """The toolkit's `SM_*` variables (and `SM_TRAINING_ENV`) for one host, plus the relocation variables and,
    for several hosts, the rendezvous the PyTorch toolkit sets (`MASTER_ADDR`/`MASTER_PORT`: here the loopback and
    a free port, where SageMaker has algo-1:7777)."""

    def __init__(self, job: JobView, host: Host, master_port: int | None = None) -> None:
        self.job, self.host, self.master_port = job, host, master_port

    def training_env(self) -> dict[str, Any]:
        job, host, layout = self.job, self.host, self.host.layout
        channels = {ch["ChannelName"]: str(layout.data / ch["ChannelName"]) for ch in job.channels}
        distributed = bool(job.framework_hps.get(TORCH_DISTRIBUTED_HP))
        framework = {TORCH_DISTRIBUTED_HP: True} if distributed else {}
        return {
            "additional_framework_parameters": framework, "channel_input_dirs": channels,
            "current_host": host.name, "current_instance_group": INSTANCE_GROUP,
            "current_instance_type": job.instance_type,
            "distribution_hosts": list(host.hosts) if distributed else [], "hosts": list(host.hosts),
            "hyperparameters": job.user_hps, "input_config_dir": str(layout.config),
            "input_data_config": input_data_config(job.channels, job.input_mode),
            "input_dir": str(layout.base / "input"), "is_master": host.is_master, "job_name": job.name,
            "log_level": job.framework_hps.get("sagemaker_container_log_level", 20),
            "master_hostname": host.hosts[0], "model_dir": str(layout.model),
            "module_dir": str(job.framework_hps["sagemaker_submit_directory"]),
            "module_name": job.program.rsplit(".", 1)[0], "network_interface_name": "eth0",
            "num_cpus": max(1, host.cpu_budget), "num_gpus": gpu_count(),
            "output_data_dir": str(layout.output_data), "output_dir": str(layout.output),
            "output_intermediate_dir": str(layout.intermediate),
            "resource_config": resource_config(job.instance_type, host), "user_entry_point": job.program,
        }

    def variables(self) -> dict[str, str]:
        env = self.training_env()
        names = ("hosts", "network_interface_name", "user_entry_point", "resource_config", "input_data_config",
                 "output_data_dir", "current_host", "current_instance_type", "module_name", "log_level",
                 "input_dir", "input_config_dir", "output_dir", "num_cpus", "num_gpus", "model_dir", "module_dir",
                 "output_intermediate_dir")
        variables = {f"SM_{name.upper()}": _env_value(env[name]) for name in names}
        variables.update({
            "SM_HPS": json.dumps(env["hyperparameters"]),
            "SM_CHANNELS": json.dumps(sorted(env["channel_input_dirs"])),
            "SM_FRAMEWORK_PARAMS": json.dumps(env["additional_framework_parameters"]),
            "SM_USER_ARGS": json.dumps(to_cmd_args(env["hyperparameters"])),
            "SM_TRAINING_ENV": json.dumps(env),
        })
        variables.update({f"SM_CHANNEL_{name.upper()}": path for name, path in env["channel_input_dirs"].items()})
        variables.update({f"SM_HP_{name.upper()}": _env_value(value) for name, value in env["hyperparameters"].items()})
        if len(self.host.hosts) > 1 and self.master_port is not None:
            variables.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(self.master_port))
        return {**(self.job.request.get("Environment") or {}), **variables, **self._relocation()}

    def _relocation(self) -> dict[str, str]:
        # smdebug looks for its configs at /opt/ml/input/config unless told otherwise. TRAINING_JOB_NAME stays unset
        # on purpose: with it smdebug skips the end-of-training marker that rule evaluation after the job waits for.
        config = self.host.layout.config
        return {
            "SAGEMAKER_BASE_DIR": str(self.host.layout.base),
            "SMDEBUG_CONFIG_FILE_PATH": str(config / "debughookconfig.json"),
            "SMPROFILER_CONFIG_PATH": str(config / "profilerconfig.json"),
            "TENSORBOARD_CONFIG_FILE_PATH": str(config / "tensorboardoutputconfig.json"),
        }
