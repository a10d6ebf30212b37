"""Data-parallel training over SageMaker's hosts and torchrun's processes, read from the container contract.

Two ways a job gets several workers, both SageMaker's:
- ``distribution={"torch_distributed": ...}``: the toolkit starts ``torchrun`` on every host, which sets ``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` for each process (one per GPU);
- no distribution and ``InstanceCount > 1``: the toolkit runs the script once on every host, with ``SM_HOSTS`` /
  ``SM_CURRENT_HOST`` (also in ``resourceconfig.json``) and ``MASTER_ADDR`` = the first host, ``MASTER_PORT`` 7777
  (sagemaker-pytorch-training-toolkit's ``_set_distributed_environment``). One process per host, rank = its index.

One worker is not distributed: nothing is initialised and every collective below is the identity.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

# sagemaker-pytorch-training-toolkit's MASTER_PORT, used when the environment names none.
TOOLKIT_MASTER_PORT = 7777
# Long enough for the slowest host to decode its shard of a few thousand photos before the first collective.
RENDEZVOUS_TIMEOUT = datetime.timedelta(minutes=30)


class DistributedConfigError(Exception):
    """The contract names a world this process is not part of: one clear line, exit 2."""


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    master_addr: str
    master_port: int
    source: str  # "single", "hosts" (one process per SageMaker host) or "torchrun"

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        if not self.distributed:
            return "distributed: off (one worker)"
        how = "torchrun" if self.source == "torchrun" else "one process per host (SM_HOSTS)"
        return (f"distributed: rank {self.rank} of {self.size} (local rank {self.local_rank}), {how}, "
                f"rendezvous {self.master_addr}:{self.master_port}")


SINGLE_WORKER = World(0, 1, 0, "127.0.0.1", TOOLKIT_MASTER_PORT, "single")


def _hosts(env: Mapping[str, str]) -> tuple[list[str], str]:
    if env.get("SM_HOSTS"):
        return list(json.loads(env["SM_HOSTS"])), env.get("SM_CURRENT_HOST", "")
    config = Path(env.get("SAGEMAKER_BASE_DIR", "/opt/ml")) / "input/config/resourceconfig.json"
    try:
        resources = json.loads(config.read_text())
    except (OSError, ValueError):
        return [], ""
    return list(resources.get("hosts") or []), str(resources.get("current_host") or "")


def world_from_env(env: Mapping[str, str]) -> World:
    """Who this process is: torchrun's variables first (they count processes, not hosts), then SageMaker's hosts."""
    port = int(env.get("MASTER_PORT") or TOOLKIT_MASTER_PORT)
    if env.get("WORLD_SIZE") and env.get("RANK"):
        size, rank = int(env["WORLD_SIZE"]), int(env["RANK"])
        if not 0 <= rank < size:
            raise DistributedConfigError(f"RANK {rank} is outside WORLD_SIZE {size}")
        return World(rank, size, int(env.get("LOCAL_RANK") or 0), env.get("MASTER_ADDR", "127.0.0.1"), port,
                     "torchrun")
    hosts, current = _hosts(env)
    if len(hosts) <= 1:
        return SINGLE_WORKER
    if current not in hosts:
        raise DistributedConfigError(f"current host {current!r} is not one of the job's hosts {hosts} "
                                     "(SM_CURRENT_HOST / resourceconfig.json)")
    return World(hosts.index(current), len(hosts), 0, env.get("MASTER_ADDR") or hosts[0], port, "hosts")


def device_for(world: World) -> torch.device:
    """GPU ``local_rank`` when there are GPUs (torchrun starts one process per GPU), else the CPU."""
    if torch.cuda.is_available() and int(os.environ.get("SM_NUM_GPUS", "1") or 1) > 0:
        torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
        return torch.device("cuda", world.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def start(world: World, device: torch.device) -> None:
    """Joins the process group: NCCL between GPUs, Gloo between CPUs."""
    if world.distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                init_method=f"tcp://{world.master_addr}:{world.master_port}", rank=world.rank,
                                world_size=world.size, timeout=RENDEZVOUS_TIMEOUT)


def stop(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def sum_across(values: torch.Tensor, world: World) -> torch.Tensor:
    """Element-wise sum over every rank (sums of losses, correct predictions, samples)."""
    if world.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def min_across(value: int, world: World, device: torch.device) -> int:
    """The smallest ``value`` of any rank: every rank must take the same number of steps, or the all-reduce of the
    rank with more steps waits for ever."""
    if not world.distributed:
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def from_main(value: Any, world: World) -> Any:
    """Rank 0's ``value`` on every rank (a loaded checkpoint: only rank 0 reads the file)."""
    if not world.distributed:
        return value
    box = [value if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
