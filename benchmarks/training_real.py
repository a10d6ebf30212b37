"""Training on the real workload: photo-size JPEGs at 224 px, ResNet-50 and ResNet-18, both transfer-learning recipes.

The data: benchmarks/photo_dataset.py's scikit-image photographs as 500x375 JPEGs (odd modes among them; its
broken file is removed, as PrepareData drops it), 5 classes. The backbone to start from is trained here once, by
train.py itself (from scratch, at 112 px, on the same training photos) and handed to every run through the
``weights`` channel, as a network-isolated SageMaker job gets its weights; the reference loads the same file. It
stands in for ImageNet weights, which cannot be downloaded here: what is measured is speed, with accuracy only
checked equal.

Recipes, each run by scripts/train.py and by the notebook-style benchmarks/reference_train.py on the same data,
epochs, batch, learning rate and weights:
- frozen: freeze_backbone, no augmentation, a new head trained for several epochs (the course projects' recipe);
- finetune: every layer trains, random resized crops + colour jitter, a few epochs.
Each run is a fresh process (what a training job is); figures are over its whole wall time, start-up, decoding,
validation and writing the model included. Peak memory is the child's largest resident set.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (
    REPO_ROOT,
    SCRIPTS_DIR,
    Result,
    Table,
    clean_env,
    count_images,
    gpu_name,
    python,
    ratio,
    run_timed,
)
from benchmarks.photo_dataset import write_photo_dataset
from benchmarks.training import EPOCH_LINE, Settings, step_variants, variants_table

FROZEN_TARGET, FINETUNE_GPU_TARGET = 5.0, 3.0
ACCURACY_TOLERANCE = 0.01
RUN_TIMEOUT_S = 1200
PRETRAIN_SIZE, PRETRAIN_EPOCHS = 112, 6
DECODE_LINE = re.compile(r"decoded in ([0-9.]+) s")
CHAIN_TARGET = 2.0


@dataclass(frozen=True)
class Recipe:
    name: str
    arch: str
    epochs: int
    lr: float
    frozen: bool
    batch_size: int = 32
    image_size: int = 224


@dataclass
class Run:
    label: str
    wall_s: float
    cpu_s: float
    peak_mb: float
    images: int
    accuracy: float
    log_tail: str
    decode_s: float | None = None  # train.py's "decoded in N s" (the reference decodes inside its epochs)

    @property
    def images_per_s(self) -> float:
        return ratio(self.images, self.wall_s)


def recipes(quick: bool) -> list[Recipe]:
    frozen_epochs, finetune_epochs = (10, 2) if quick else (10, 4)
    return [Recipe("frozen", "resnet50", frozen_epochs, 0.003, True),
            Recipe("frozen", "resnet18", frozen_epochs, 0.003, True),
            Recipe("finetune", "resnet18", finetune_epochs, 0.0003, False),
            Recipe("finetune", "resnet50", finetune_epochs, 0.0003, False)]


def photo_splits(workdir: Path, per_class: int) -> Path:
    """train/ and validation/ of 500x375 photos as PrepareData hands them on, made once per work dir. The
    validation channel holds the dataset's valid and test splits together: twice the images, so an accuracy
    difference of a point or two is less often one image's luck."""
    out = workdir / "data" / f"photos-{per_class}"
    if not (out / "validation").is_dir():
        shutil.rmtree(out, ignore_errors=True)
        write_photo_dataset(out, per_class=per_class, size=(500, 375))
        # PrepareData drops unreadable files, so a training channel never holds one (ImageFolder would crash on it)
        (out / "train" / "brick" / "broken.jpg").unlink()
        for split in ("valid", "test"):
            for image in sorted((out / split).glob("*/*")):
                (out / "validation" / image.parent.name).mkdir(parents=True, exist_ok=True)
                image.rename(out / "validation" / image.parent.name / f"{split}-{image.name}")
    return out


def train_job(data: Path, job: Path, hyperparameters: dict[str, object], weights: Path | None,
              timeout_s: float = RUN_TIMEOUT_S):
    """train.py as a job runs it: hyperparameters as --name value, /opt/ml relocated into ``job``."""
    shutil.rmtree(job, ignore_errors=True)
    argv = [python(), str(SCRIPTS_DIR / "train.py"),
            *[a for k, v in hyperparameters.items() for a in (f"--{k}", str(v).lower() if isinstance(v, bool)
                                                              else str(v))]]
    env = {"SAGEMAKER_BASE_DIR": str(job), "SM_CHANNEL_TRAIN": str(data / "train"),
           "SM_CHANNEL_VALIDATION": str(data / "validation")}
    if weights is not None:
        env["SM_CHANNEL_WEIGHTS"] = str(weights.parent)
    done = run_timed(argv, env=clean_env(env), cwd=SCRIPTS_DIR, log=job / "job.log", timeout_s=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"train.py failed ({done.returncode}) in {job}:\n{done.output[-3000:]}")
    return done


def backbone_weights(workdir: Path, data: Path, arch: str) -> Path:
    """A state dict for ``arch`` trained here, once per work dir: the stand-in for downloaded ImageNet weights."""
    weights = workdir / "weights" / arch / "backbone.pth"
    if not weights.is_file():
        job = workdir / "pretrain" / arch
        train_job(data, job, {"arch": arch, "pretrained": False, "image_size": PRETRAIN_SIZE,
                              "epochs": PRETRAIN_EPOCHS, "batch_size": 32, "lr": 0.002}, None)
        weights.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(job / "model" / "model.pth", weights)
    return weights


def parse(label: str, done, epochs: int, train_images: int) -> Run:
    lines = EPOCH_LINE.findall(done.output)
    if len(lines) != epochs:
        raise RuntimeError(f"{label}: expected {epochs} epoch lines, got {len(lines)}:\n{done.output[-3000:]}")
    decoded = DECODE_LINE.search(done.output)
    return Run(label, done.wall_s, done.cpu_s, done.peak_mb, epochs * train_images, float(lines[-1][2]),
               done.output[-2000:], float(decoded.group(1)) if decoded else None)


def reference_run(data: Path, r: Recipe, weights: Path, log: Path) -> Run:
    argv = [python(), str(REPO_ROOT / "benchmarks" / "reference_train.py"), "--train", str(data / "train"),
            "--validation", str(data / "validation"), "--arch", r.arch, "--image-size", str(r.image_size),
            "--epochs", str(r.epochs), "--batch-size", str(r.batch_size), "--lr", str(r.lr), "--weights",
            str(weights), *(["--freeze-backbone", "--no-augment"] if r.frozen else [])]
    done = run_timed(argv, env=clean_env(), cwd=REPO_ROOT, log=log, timeout_s=RUN_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"reference failed ({done.returncode}):\n{done.output[-3000:]}")
    return parse("reference", done, r.epochs, count_images(data / "train"))


def trainpy_run(data: Path, r: Recipe, weights: Path, job: Path, extra: dict[str, object] | None = None) -> Run:
    hps: dict[str, object] = {"arch": r.arch, "pretrained": True, "image_size": r.image_size, "epochs": r.epochs,
                              "batch_size": r.batch_size, "lr": r.lr, "hflip": False}
    if r.frozen:
        hps |= {"freeze_backbone": True, "min_crop_scale": 1, "color_jitter": 0}
    done = train_job(data, job, hps | (extra or {}), weights)
    label = "train.py" + (f" ({', '.join(f'{k}={v}' for k, v in (extra or {}).items())})" if extra else "")
    return parse(label, done, r.epochs, count_images(data / "train"))


def recipe_table(runs: list[Run]) -> Table:
    base = runs[0]
    table = Table(["run", "wall s", "CPU s", "peak MiB", "images/s", "x reference", "CPU-s x less",
                   "val accuracy"])
    for one in runs:
        table.add(one.label, one.wall_s, one.cpu_s, one.peak_mb, one.images_per_s,
                  ratio(one.images_per_s, base.images_per_s), ratio(base.cpu_s, one.cpu_s), f"{one.accuracy:.4f}")
    return table


def decode_table(figures: dict) -> Table:
    """Per recipe: a job's wall time and its decoding; the chain's speed-up if no job decoded, 1 / (1 - share)."""
    table = Table(["recipe", "job wall s", "decode s", "share", "chain speed-up at most"])
    for key, figure in figures.items():
        ours = figure.get("train.py") if isinstance(figure, dict) else None
        if not ours or ours.get("decode_s") is None:
            continue
        share = ours["decode_s"] / ours["wall_s"]
        table.add(key, ours["wall_s"], ours["decode_s"], f"{100 * share:.1f}%", ratio(1.0, 1.0 - share))
    return table


def run(workdir: Path, quick: bool) -> Result:
    per_class = 60 if quick else 200
    data = photo_splits(workdir, per_class)
    device = gpu_name() or "CPU"
    train_images, val_images = count_images(data / "train"), count_images(data / "validation")
    result = Result("training-real", f"Training on photos ({train_images} training / {val_images} validation "
                                     f"500x375 JPEGs, 5 classes, 224 px, batch 32, {device})")
    for r in recipes(quick):
        weights = backbone_weights(workdir, data, r.arch)
        key = f"{r.name}-{r.arch}"
        runs = [reference_run(data, r, weights, workdir / "runs" / f"{key}-reference.log"),
                trainpy_run(data, r, weights, workdir / "runs" / f"{key}-trainpy")]
        if r.frozen and r.arch == "resnet18":  # what running the backbone once is worth on its own
            runs.append(trainpy_run(data, r, weights, workdir / "runs" / f"{key}-stepped",
                                    {"cache_features": False}))
        base, ours = runs[0], runs[1]
        speedup, delta = ratio(ours.images_per_s, base.images_per_s), ours.accuracy - base.accuracy
        what = ("frozen backbone + new head, no augmentation" if r.frozen
                else "full fine-tuning, random resized crops + colour jitter")
        result.tables.append((f"{r.arch}, {what}, {r.epochs} epochs, lr {r.lr:g}:", recipe_table(runs)))
        result.figures[key] = {"speedup": speedup, "accuracy_delta": delta, "epochs": r.epochs,
                               **{one.label: one.__dict__ | {"images_per_s": one.images_per_s} for one in runs}}
        target = FROZEN_TARGET if r.frozen else (FINETUNE_GPU_TARGET if device != "CPU" else None)
        if target is not None:
            result.targets[f"{key}: >= {target:g}x reference images/s ({speedup:.2f}x)"] = speedup >= target
        result.targets[f"{key}: accuracy within 1 point of the reference, or better ({100 * delta:+.1f} points)"] = (
            delta >= -ACCURACY_TOLERANCE)
    decoding = decode_table(result.figures)
    result.tables.append(("What decoding costs a train.py job (a tuning trial or TrainModel; every job of the "
                          "tune-and-train chain decodes the same images), so what decoding once per pipeline could "
                          "save at most:", decoding))
    most = max((row[-1] for row in decoding.rows), default=float("nan"))
    result.targets[f"tune-and-train chain >= {CHAIN_TARGET:g}x by decoding once per pipeline (at most {most:.2f}x "
                   "here: see the table)"] = most >= CHAIN_TARGET
    # Whether the CPU step settings measured at 32 px (contiguous, fp32, fused Adam) still win at 224 px
    variants = step_variants(workdir, Settings("resnet18", 224, 1, batch_size=32), steps=4 if quick else 12,
                             bf16=not quick)
    result.tables.append(("Full fine-tuning step variants at 224 px (resnet18, batch 32), interleaved in one "
                          "process (median ms a step):", variants_table(variants)))
    result.figures["step_variants_224"] = variants
    result.notes.append(f"backbone weights: train.py's own {PRETRAIN_EPOCHS}-epoch run from scratch at "
                        f"{PRETRAIN_SIZE} px on the training photos, through the weights channel (no download)")
    result.notes.append(f"one validation image is {100 / val_images:.1f} accuracy points")
    return result
