"""SageMaker training entry point: fine-tunes a torchvision classifier on folder-per-class images.

Knows SageMaker's container contract and nothing else from this project (docs/container-contract.md): channels
``train``/``validation`` (+ optional ``weights``), ``SM_MODEL_DIR``, ``SM_OUTPUT_DATA_DIR``, checkpoints under
``$SAGEMAKER_BASE_DIR/checkpoints``, hyperparameters as ``--name value``. One log line per epoch feeds the
MetricDefinitions regexes. A problem with the input (data, weights, hyperparameters) exits 2 with one clear line.
"""

# ruff: noqa: E402
# (imports follow the OMP_WAIT_POLICY default below: libgomp reads it once, when torch loads it)
from __future__ import annotations

import os

# OpenMP threads that spin while waiting burn whole cores when the machine is shared (parallel tuning jobs on a
# few local cores): measured here, a resnet18 step took 12x longer. Sleeping waiters cost little on a dedicated host.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import checkpointing
import debugger
import distributed
import frozen_features
import numpy as np
import torch
from artifacts import format_epoch_line, model_meta, write_model_dir, write_outputs
from data_cache import DataError, InputData, augment, cpu_count, prepare_input
from distributed import DistributedConfigError, World
from hyperparameters import Config, parse_hyperparameters, resolve_paths, validate
from inference import normalize
from modeling import (
    ConfigError,
    check_image_size,
    create_model,
    create_optimizer,
    raise_bn_momentum,
    warmup_cosine,
)
from torch import nn
from torch.nn.parallel import DistributedDataParallel

# image_size=0 (the local preset) follows the images up to this side: a CPU epoch costs ~ side^2, so photos train
# at 64px on a laptop's cores, and at ImageNet's 224px where a GPU makes that affordable.
AUTO_IMAGE_SIZE_CAP = {"cpu": 64, "cuda": 224}
CPU_CHANNELS_LAST_MIN = 128  # px: from this size up channels-last measured faster on CPU (setup_runtime)


# ---------------------------------------------------------------------------------------------- one epoch
@dataclass
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format
    world: World = distributed.SINGLE_WORKER

    def batch_per_worker(self, batch_size: int) -> int:
        """``batch_size`` is the global batch: each of the world's workers takes its share, so a tuned learning
        rate holds at any instance count."""
        return max(1, batch_size // self.world.size)


class StepTimer:
    """Each step's duration, batch fetch included, for the ``train_step_seconds=`` / ``eval_step_seconds=`` lines the
    profiler's StepOutlier rule reads. On a GPU, CUDA events are recorded between steps and read once the epoch is
    over: a synchronize every step would stall the queue the loop keeps full."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def seconds(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) / 1000 for a, b in zip(self.marks, self.marks[1:], strict=False)]
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]

    def log_line(self, phase: str) -> str:
        return f"{phase}_step_seconds=" + ",".join(f"{s:.4f}" for s in self.seconds())


def train_epoch(model: nn.Module, data: InputData, config: Config, rt: Runtime, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, criterion: nn.Module, scaler: torch.amp.GradScaler,
                generator: torch.Generator, steps: int, timer: StepTimer | None = None) -> torch.Tensor:
    """``steps`` batches (the same count on every data-parallel rank); returns the sums (loss, correct, seen)."""
    model.train()
    if config.freeze_backbone:  # frozen BatchNorm layers keep their running statistics
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                if not any(p.requires_grad for p in module.parameters()):
                    module.eval()
    # Sums stay on the device: one .item() per step would stall a GPU every step.
    loss_sum, correct, seen = torch.zeros((), device=rt.device), torch.zeros((), device=rt.device), 0
    timer = timer or StepTimer(rt.device)
    timer.mark()
    batches = data.train.batches(rt.batch_per_worker(config.batch_size), generator, drop_last=True)
    for _, (images, labels) in zip(range(steps), batches, strict=False):
        images = images.to(rt.device, non_blocking=True)
        labels = labels.to(rt.device, non_blocking=True)
        if data.features:  # a frozen backbone's outputs (frozen_features.py)
            inputs = images
        else:
            inputs = augment(images, config.image_size, generator, config.min_crop_scale, config.hflip,
                             config.color_jitter)
            inputs = normalize(inputs).contiguous(memory_format=rt.memory_format)
        with torch.autocast(rt.device.type, dtype=rt.amp_dtype, enabled=rt.amp_dtype is not None):
            logits = model(inputs)
            loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        loss_sum += loss.detach().float() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
        timer.mark()
    return torch.stack([loss_sum, correct.float(), torch.tensor(float(seen), device=rt.device)])


def evaluate(model: nn.Module, data: InputData, config: Config, rt: Runtime,
             criterion: nn.Module, timer: StepTimer | None = None) -> torch.Tensor:
    """This rank's validation shard; returns the sums (loss, correct, seen). ``model`` is the bare module: a
    DistributedDataParallel forward would broadcast buffers, a collective the ranks' uneven shards cannot match."""
    model.eval()
    loss_sum, correct, seen = torch.zeros((), device=rt.device), torch.zeros((), device=rt.device), 0
    timer = timer or StepTimer(rt.device)
    timer.mark()
    with torch.inference_mode():
        for images, labels in data.validation.batches(2 * rt.batch_per_worker(config.batch_size), None,
                                                      drop_last=False):
            inputs = images.to(rt.device)
            if not data.features:
                inputs = normalize(inputs).contiguous(memory_format=rt.memory_format)
            labels = labels.to(rt.device)
            with torch.autocast(rt.device.type, dtype=rt.amp_dtype, enabled=rt.amp_dtype is not None):
                logits = model(inputs)
            loss_sum += criterion(logits.float(), labels) * len(labels)
            correct += (logits.argmax(1) == labels).sum()
            seen += len(labels)
            timer.mark()
    return torch.stack([loss_sum, correct.float(), torch.tensor(float(seen), device=rt.device)])


def global_rates(sums: torch.Tensor, world: World) -> tuple[float, float]:
    """(mean loss, accuracy) over every rank's samples."""
    loss_sum, correct, seen = distributed.sum_across(sums, world).tolist()
    return loss_sum / max(1.0, seen), correct / max(1.0, seen)


# ---------------------------------------------------------------------------------------------- the run
MAIN_PROCESS = True  # False on data-parallel ranks other than 0: they log their setup, not the epochs


def log(message: str) -> None:
    print(message, flush=True)


def log_main(message: str) -> None:
    """Lines the metric regexes and the profiler read: once per job, from rank 0."""
    if MAIN_PROCESS:
        log(message)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_runtime(config: Config, world: World) -> Runtime:
    # OMP_NUM_THREADS, when set, is a deliberate share of the cores (several jobs on one machine): keep it.
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or cpu_count()))
    device = distributed.device_for(world)
    amp_dtype = None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if config.amp:
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # Channels-last feeds the GPU's tensor cores under AMP. On CPU (oneDNN, fp32) it depends on the size: a resnet18
    # step measured 1.12x slower at 64 px (the layout conversions in the backward pass cost more than the
    # convolutions gain), 1.07x faster at 128 px, 1.18x at 224 px, and a frozen resnet50's forward 1.5x faster at
    # 224 px (benchmarks/training_real.py, "step variants"). image_size 0 on CPU stays at or below 64 px.
    channels_last = config.channels_last and (device.type == "cuda" or config.image_size >= CPU_CHANNELS_LAST_MIN)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return Runtime(device, amp_dtype, memory_format, world)


def fingerprint(config: Config, classes: list[str]) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed: paths and loader settings may differ, training may not."""
    keys = ("arch", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "image_size",
            "freeze_backbone", "seed", "hflip", "min_crop_scale", "color_jitter", "label_smoothing", "warmup_epochs",
            "bn_momentum")
    return {**{k: getattr(config, k) for k in keys}, "classes": list(classes)}


def try_resume(path: Path, fp: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
               world: World | None = None) -> tuple[int, list[dict]]:
    """Restores a compatible checkpoint; returns the epochs already done and their history. Rank 0 reads the file
    and hands it to the other ranks, so they start from the same weights and optimizer state."""
    world = world or distributed.SINGLE_WORKER
    state, reason = distributed.from_main(checkpointing.load(path) if world.is_main else None, world)
    if state is None:
        if reason != "no checkpoint":
            log_main(f"checkpoint: starting over, {reason}")
        return 0, []
    differs = checkpointing.mismatched_keys(state.get("fingerprint", {}), fp)
    if differs:
        log_main(f"checkpoint: ignoring {path}, written with a different configuration ({', '.join(differs)})")
        return 0, []
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    checkpointing.restore_rng_state(state["rng"])
    done = int(state["epoch"])
    if done >= fp["epochs"]:
        log_main(f"checkpoint: {path} has all {done} epochs done; writing the model")
    else:
        log_main(f"checkpoint: resuming from {path} at epoch {done + 1}/{fp['epochs']} ({done} epochs done)")
    return done, list(state["history"])


def fast_forward(scheduler: torch.optim.lr_scheduler.LambdaLR, schedule: Any, step: int) -> None:
    """The schedule at ``step`` without replaying it: a checkpoint counts epochs, and the steps an epoch takes
    depend on the world size the job resumes with."""
    scheduler.last_epoch = step
    for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = base * schedule(step)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]  # what get_last_lr() reads


def fit(config: Config, data: InputData, model: nn.Module, rt: Runtime,
        head: nn.Module | None = None) -> list[dict[str, Any]]:
    """Trains the remaining epochs, logging and checkpointing each (rank 0); returns the full history. ``head``:
    the module the steps run when ``data`` holds a frozen backbone's outputs (it shares ``model``'s parameters)."""
    world, bare = rt.world, head or model
    optimizer = create_optimizer(config.optimizer, model, config.lr, config.weight_decay, config.momentum)
    steps_per_epoch = max(1, distributed.min_across(len(data.train) // rt.batch_per_worker(config.batch_size),
                                                    world, rt.device))
    schedule = warmup_cosine(config.epochs * steps_per_epoch, max(1, round(config.warmup_epochs * steps_per_epoch)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    fp, ckpt = fingerprint(config, data.classes), checkpointing.checkpoint_path(Path(config.checkpoint_dir))
    start, history = try_resume(ckpt, fp, model, optimizer, world)
    fast_forward(scheduler, schedule, start * steps_per_epoch)
    hook, message = debugger.create_hook(bare, criterion)  # smdebug saves from rank 0 only (include_workers "one")
    log(message)
    net = bare
    if world.distributed:  # after the checkpoint is loaded: the wrapper broadcasts rank 0's weights
        net = DistributedDataParallel(bare, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    generator = torch.Generator()
    for epoch in range(start + 1, config.epochs + 1):
        started = time.perf_counter()
        # Each epoch's shuffle/augmentation replays on resume; each rank draws its own.
        generator.manual_seed(config.seed * 100_003 + epoch + 1_000_003 * world.rank)
        lr = optimizer.param_groups[0]["lr"]
        hook.train()
        train_timer, eval_timer = StepTimer(rt.device), StepTimer(rt.device)
        train_sums = train_epoch(net, data, config, rt, optimizer, scheduler, criterion, scaler, generator,
                                 steps_per_epoch, train_timer)
        hook.eval()
        val_sums = evaluate(bare, data, config, rt, criterion, eval_timer)
        (train_loss, train_acc), (val_loss, val_acc) = global_rates(train_sums, world), global_rates(val_sums, world)
        log_main(train_timer.log_line("train"))  # one line an epoch each (pipelines/local/profiling/joblog.py)
        log_main(eval_timer.log_line("eval"))
        entry = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc, "validation_loss": val_loss,
                 "validation_accuracy": val_acc, "lr": lr, "epoch_seconds": time.perf_counter() - started}
        history.append(entry)
        log_main(format_epoch_line(entry, config.epochs))
        if world.is_main:
            checkpointing.save_atomic({
                "epoch": epoch, "fingerprint": fp, "history": history, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "rng": checkpointing.rng_state()}, ckpt)
    hook.close()
    return history


def run(config: Config) -> None:
    global MAIN_PROCESS
    world = distributed.world_from_env(os.environ)
    MAIN_PROCESS = world.is_main
    rt = setup_runtime(config, world)
    log(world.describe())
    distributed.start(world, rt.device)
    try:
        train_and_save(config, rt)
    finally:
        distributed.stop(world)


def train_and_save(config: Config, rt: Runtime) -> None:
    seed_everything(config.seed)
    workers = cpu_count() if config.num_workers < 0 else config.num_workers
    data, message = prepare_input(Path(config.train), Path(config.validation), config.image_size,
                                  config.cache_memory_fraction, workers, pin_memory=rt.device.type == "cuda",
                                  largest_auto_size=AUTO_IMAGE_SIZE_CAP[rt.device.type],
                                  shard=(rt.world.rank, rt.world.size), crop_margin=config.min_crop_scale < 1)
    config.image_size = data.image_size
    log(message)
    if rt.world.distributed:
        log(f"batch: {rt.batch_per_worker(config.batch_size)} per worker x {rt.world.size} workers "
            f"(batch_size {config.batch_size} is the global batch)")
    # For the local engine's profiler rules: DataLoader worker processes vs cores (none when cached), batch size.
    log_main(f"dataloader_workers={0 if data.cached else workers} cpu_count={cpu_count()} "
             f"batch_size={config.batch_size} input={'cached' if data.cached else 'lazy'}")
    if data.cached and rt.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info()
        if data.train.images.numel() + data.validation.images.numel() < 0.3 * free:
            data.train, data.validation = data.train.to(rt.device), data.validation.to(rt.device)
    model, message = create_model(config.arch, len(data.classes), config.pretrained, Path(config.weights),
                                  config.freeze_backbone)
    log(message)
    check_image_size(model, config.arch, config.image_size)
    raise_bn_momentum(model, config.bn_momentum)
    model = model.to(rt.device, memory_format=rt.memory_format)
    log(f"training {config.arch} on {rt.device} (amp {rt.amp_dtype}, {torch.get_num_threads()} threads) "
        f"for {config.epochs} epochs, batch {config.batch_size}, {config.optimizer} lr {config.lr:g}")
    data, head = frozen_backbone_inputs(config, data, model, rt)
    history = fit(config, data, model, rt, head)
    if not rt.world.is_main:  # SageMaker merges every host's model dir: one copy, from rank 0
        log(f"rank {rt.world.rank}: done; rank 0 writes the model")
        return
    write_model_dir(Path(config.model_dir), model, model_meta(config.arch, config.image_size, data.classes))
    log(f"model: {config.model_dir} (model.pth, model_meta.json, code/inference.py)")
    log(write_outputs(Path(config.output_data_dir), history))


def frozen_backbone_inputs(config: Config, data: InputData, model: nn.Module,
                           rt: Runtime) -> tuple[InputData, nn.Module | None]:
    """A frozen backbone without augmentation runs once, and the head trains on its outputs (frozen_features.py):
    the data to train on and the head, or the data unchanged and None."""
    if not config.freeze_backbone:
        return data, None
    augmentation = frozen_features.augmentation_in_use(config.min_crop_scale, config.hflip, config.color_jitter)
    reason = frozen_features.refusal(model, config.freeze_backbone, augmentation)
    if reason is None and not config.cache_features:
        reason = "cache_features=false"
    if reason is not None:
        log(f"features: the frozen backbone runs every step ({reason})")
        return data, None
    data, head, message = frozen_features.cache_features(
        model, data, config.image_size, 2 * rt.batch_per_worker(config.batch_size), rt.device, rt.amp_dtype,
        rt.memory_format)
    log(message)
    return data, head


def report_failure(message: str) -> None:
    """One line on stderr, and SageMaker's failure file, which becomes the job's FailureReason."""
    message = " ".join(message.split())
    print(f"ERROR: {message}", file=sys.stderr, flush=True)
    failure = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")) / "output" / "failure"
    try:
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(message + "\n")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    try:
        config, warnings = parse_hyperparameters(sys.argv[1:] if argv is None else list(argv))
        for warning in warnings:
            log(f"WARNING: {warning}")
        validate(config)
        resolve_paths(config, dict(os.environ))
        log("hyperparameters: " + json.dumps(asdict(config), sort_keys=True))
        run(config)
    except (ConfigError, DataError, DistributedConfigError) as exc:
        report_failure(str(exc))
        return 2
    except Exception as exc:  # a bug, not bad input: keep the traceback, but still name it in the failure reason
        report_failure(f"{type(exc).__name__}: {exc}")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
