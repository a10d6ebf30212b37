"""Data-parallel train.py: who a process is from the contract, sharding, and real multi-host runs over Gloo."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import checkpointing
import distributed
import pytest
import train
from data_cache import Split, take_shard
from distributed import DistributedConfigError, world_from_env

TRAIN_PY = Path(train.__file__)
FAST = ["--arch", "shufflenet_v2_x0_5", "--pretrained", "false", "--image_size", "16", "--batch_size", "32",
        "--lr", "0.003"]


# ---------------------------------------------------------------------------------------------- who am I
def test_one_host_is_not_distributed(tmp_path: Path) -> None:
    world = world_from_env({"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1"})
    assert (world.size, world.distributed, world.is_main) == (1, False, True)
    assert world_from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)}).source == "single"  # no contract at all


def test_hosts_give_one_rank_per_host_and_the_toolkit_rendezvous() -> None:
    env = {"SM_HOSTS": '["algo-1", "algo-2", "algo-3"]', "SM_CURRENT_HOST": "algo-3"}
    world = world_from_env(env)
    assert (world.rank, world.size, world.local_rank, world.source) == (2, 3, 0, "hosts")
    assert (world.master_addr, world.master_port) == ("algo-1", 7777)  # the toolkit's MASTER_PORT
    world = world_from_env({**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29411"})
    assert (world.master_addr, world.master_port) == ("127.0.0.1", 29411)


def test_resourceconfig_is_read_when_the_environment_has_no_hosts(tmp_path: Path) -> None:
    config = tmp_path / "input/config/resourceconfig.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]}))
    world = world_from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert (world.rank, world.size) == (1, 2)


def test_torchrun_variables_win_over_hosts() -> None:
    env = {"SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-2", "RANK": "5", "WORLD_SIZE": "8",
           "LOCAL_RANK": "1", "MASTER_ADDR": "algo-1", "MASTER_PORT": "7777"}
    world = world_from_env(env)
    assert (world.rank, world.size, world.local_rank, world.source) == (5, 8, 1, "torchrun")
    assert "rank 5 of 8 (local rank 1), torchrun" in world.describe()


@pytest.mark.parametrize("env, words", [
    ({"SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-9"}, "current host 'algo-9' is not one of"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK 2 is outside WORLD_SIZE 2"),
])
def test_an_inconsistent_contract_is_a_clear_error(env, words) -> None:
    with pytest.raises(DistributedConfigError, match=words):
        world_from_env(env)


def test_shards_cover_every_image_once() -> None:
    split = Split(["a", "b"], [Path(f"{i}.png") for i in range(7)], [i % 2 for i in range(7)])
    shards = [take_shard(split, i, 3) for i in range(3)]
    assert sorted(p for s in shards for p in s.paths) == sorted(split.paths)
    assert [len(s.paths) for s in shards] == [3, 2, 2]
    assert all(s.labels == [int(p.stem) % 2 for p in s.paths] for s in shards)


def test_batch_size_is_the_global_batch() -> None:
    runtime = train.Runtime(None, None, None, distributed.World(0, 4, 0, "127.0.0.1", 1, "hosts"))
    assert runtime.batch_per_worker(64) == 16 and runtime.batch_per_worker(2) == 1


# ---------------------------------------------------------------------------------------------- real runs
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_hosts(root: Path, split_dir: Path, count: int, argv: list[str], debugger: bool = False,
                checkpoints: Path | None = None) -> list[tuple[Path, subprocess.Popen]]:
    """`count` hosts as the toolkit starts them without a distribution: train.py once per host, SM_HOSTS, and
    MASTER_ADDR/MASTER_PORT (here 127.0.0.1 and a free port instead of algo-1:7777)."""
    hosts, port, started = [f"algo-{i + 1}" for i in range(count)], free_port(), []
    for host in hosts:
        base = root / host
        if debugger:
            config = base / "input/config/debughookconfig.json"
            config.parent.mkdir(parents=True)
            config.write_text(json.dumps({"LocalPath": str(base / "output/tensors"),
                                          "HookParameters": {"save_interval": "1"},
                                          "CollectionConfigurations": [{"CollectionName": "losses"}]}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMDEBUG_", "SMPROFILER_"))}
        env.update(SAGEMAKER_BASE_DIR=str(base), SM_CHANNEL_TRAIN=str(split_dir / "train"),
                   SM_CHANNEL_VALIDATION=str(split_dir / "validation"), SM_MODEL_DIR=str(base / "model"),
                   SM_OUTPUT_DATA_DIR=str(base / "output/data"), SM_NUM_GPUS="0", PYTHONUNBUFFERED="1",
                   SM_HOSTS=json.dumps(hosts), SM_CURRENT_HOST=host, MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        extra = ["--checkpoint_dir", str(checkpoints)] if checkpoints and host == "algo-1" else []
        started.append((base, subprocess.Popen([sys.executable, str(TRAIN_PY), *argv, *extra], env=env,
                                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    return started


def finish(started: list[tuple[Path, subprocess.Popen]]) -> list[str]:
    outputs = [process.communicate(timeout=240)[0] for _, process in started]
    assert [process.returncode for _, process in started] == [0] * len(started), "\n".join(outputs)
    return outputs


def test_a_two_host_checkpoint_resumes_on_one_host(tmp_path: Path, split_dir: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    argv = [*FAST, "--epochs", "2"]
    started = start_hosts(tmp_path / "two", split_dir, 2, argv, checkpoints=checkpoints)
    deadline = time.monotonic() + 180
    while not (checkpoints / checkpointing.CHECKPOINT_FILE).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    for _, process in started:  # a spot interruption of the whole cluster
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert checkpointing.load(checkpoints / checkpointing.CHECKPOINT_FILE)[0]["epoch"] >= 1
    (output,) = finish(start_hosts(tmp_path / "one", split_dir, 1, argv, checkpoints=checkpoints))
    assert "checkpoint: resuming from" in output and "distributed: off" in output
    epochs = [line.split()[0] for line in output.splitlines() if line.startswith("epoch=")]
    assert epochs == ["epoch=2/2"], output
    history = json.loads((tmp_path / "one/algo-1/output/data/history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
