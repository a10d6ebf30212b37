"""What a local training job's container sees: SageMaker's `/opt/ml/input/config/*.json` files and the training
toolkit's `SM_*` environment (sagemaker-training-toolkit's `environment.py` and `mapping.py`), for one host."""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.local.training import TrainingJob

HOST = "algo-1"
INSTANCE_GROUP = "homogeneousCluster"


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


class ContractFiles:
    """`/opt/ml/input/config/*.json`, as SageMaker writes them before the container starts."""

    def __init__(self, job: TrainingJob) -> None:
        self.job = job

    def write(self) -> None:
        job, config = self.job, self.job.layout.config
        files: dict[str, Any] = {
            "hyperparameters.json": job.hyperparameters,
            "inputdataconfig.json": input_data_config(job.channels, job.input_mode),
            "resourceconfig.json": resource_config(job.instance_type),
            "trainingjobconfig.json": {**job.request, "TrainingJobName": job.name},
        }
        hook = job.request.get("DebugHookConfig")
        if hook:
            files["debughookconfig.json"] = {
                "LocalPath": str(job.tensors_dir),
                "HookParameters": hook.get("HookParameters") or {},
                "CollectionConfigurations": hook.get("CollectionConfigurations") or [],
                "S3OutputPath": job.debug_output_uri,
            }
        checkpoint = job.request.get("CheckpointConfig")
        if checkpoint:
            files["checkpointconfig.json"] = {"LocalPath": str(job.checkpoint_dir), "S3Path": checkpoint["S3Uri"]}
        for name, content in files.items():
            (config / name).write_text(json.dumps(content, indent=2) + "\n")


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


def resource_config(instance_type: str) -> dict[str, Any]:
    return {
        "current_host": HOST, "hosts": [HOST], "current_instance_type": instance_type,
        "current_group_name": INSTANCE_GROUP,
        "instance_groups": [{"instance_group_name": INSTANCE_GROUP, "instance_type": instance_type, "hosts": [HOST]}],
        "network_interface_name": "eth0",
    }


class TrainingEnvironment:
    """The toolkit's `SM_*` variables (and `SM_TRAINING_ENV`) for one job, plus the relocation variables."""

    def __init__(self, job: TrainingJob) -> None:
        self.job = job

    def training_env(self) -> dict[str, Any]:
        job, layout = self.job, self.job.layout
        channels = {ch["ChannelName"]: str(layout.data / ch["ChannelName"]) for ch in job.channels}
        return {
            "additional_framework_parameters": {}, "channel_input_dirs": channels, "current_host": HOST,
            "current_instance_group": INSTANCE_GROUP, "current_instance_type": job.instance_type,
            "distribution_hosts": [], "hosts": [HOST], "hyperparameters": job.user_hps,
            "input_config_dir": str(layout.config),
            "input_data_config": input_data_config(job.channels, job.input_mode),
            "input_dir": str(layout.base / "input"), "is_master": True, "job_name": job.name,
            "log_level": job.framework_hps.get("sagemaker_container_log_level", 20),
            "master_hostname": HOST, "model_dir": str(layout.model),
            "module_dir": str(job.framework_hps["sagemaker_submit_directory"]),
            "module_name": job.program.rsplit(".", 1)[0], "network_interface_name": "eth0",
            "num_cpus": max(1, job.run_.cpu_budget), "num_gpus": gpu_count(),
            "output_data_dir": str(layout.output_data), "output_dir": str(layout.output),
            "output_intermediate_dir": str(layout.intermediate),
            "resource_config": resource_config(job.instance_type), "user_entry_point": job.program,
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
        return {**(self.job.request.get("Environment") or {}), **variables, **self._relocation()}

    def _relocation(self) -> dict[str, str]:
        # smdebug looks for its configs at /opt/ml/input/config unless told otherwise. TRAINING_JOB_NAME stays unset
        # on purpose: with it smdebug skips the end-of-training marker that rule evaluation after the job waits for.
        config = self.job.layout.config
        return {
            "SAGEMAKER_BASE_DIR": str(self.job.layout.base),
            "SMDEBUG_CONFIG_FILE_PATH": str(config / "debughookconfig.json"),
            "SMPROFILER_CONFIG_PATH": str(config / "profilerconfig.json"),
            "TENSORBOARD_CONFIG_FILE_PATH": str(config / "tensorboardoutputconfig.json"),
        }
