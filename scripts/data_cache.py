"""Training input: folder-per-class splits decoded once into uint8 tensors, augmented a whole batch at a time.

Decoding and resizing images with PIL for every sample of every epoch is what makes a naive ImageFolder loop slow on
few cores. Here each image is decoded once, to a fixed size, into one in-memory uint8 tensor (when it fits a memory
budget; otherwise DataLoader workers decode lazily to the same size), and augmentation runs on whole batches of
tensors. Validation images go through ``inference.image_to_uint8``, the exact preprocessing serving uses.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from inference import image_to_uint8
from PIL import Image

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
# Training crops come from a slightly larger image than the model sees, so a random crop still covers most of it.
TRAIN_CACHE_MARGIN = 1.15
# image_size=0 picks a side from the data, never below what the torchvision classifiers accept.
AUTO_IMAGE_SIZE_MIN = 32


class DataError(Exception):
    """A problem with the input data the user must fix: reported as one line, exit code 2."""


@dataclass
class Split:
    classes: list[str]
    paths: list[Path]
    labels: list[int]


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def total_memory_bytes() -> int:
    """Physical memory, or the container's cgroup limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def scan_split(root: Path, split: str) -> Split:
    """``root/<class>/<image>``; classes are the sorted folder names, hidden files and folders are ignored."""
    if not root.is_dir():
        raise DataError(f"{split} channel {root} does not exist or is not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{split} channel {root} has no class folders (expected {root}/<class>/<image>)")
    paths, labels, empty = [], [], []
    for label, name in enumerate(classes):
        files = sorted(
            f for f in (root / name).rglob("*")
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")
        )
        if not files:
            empty.append(name)
        paths += files
        labels += [label] * len(files)
    if empty:
        raise DataError(f"{split} channel {root}: class folders without images: {', '.join(empty)}")
    return Split(classes, paths, labels)


def load_splits(train_dir: Path, validation_dir: Path) -> tuple[Split, Split]:
    train, validation = scan_split(train_dir, "train"), scan_split(validation_dir, "validation")
    if train.classes != validation.classes:
        only_train = sorted(set(train.classes) - set(validation.classes))
        only_val = sorted(set(validation.classes) - set(train.classes))
        raise DataError(
            f"train and validation classes differ: only in train {only_train or '[]'}, "
            f"only in validation {only_val or '[]'}"
        )
    if len(train.classes) < 2:
        raise DataError(f"need at least 2 classes to train a classifier, found {train.classes}")
    if len(train.paths) < 2:
        raise DataError(f"need at least 2 training images, found {len(train.paths)}")
    return train, validation


def median_short_side(paths: list[Path], probe: int = 32) -> int | None:
    """The median shorter side of up to ``probe`` images spread over ``paths``, from their headers only."""
    sides = []
    for path in paths[:: max(1, len(paths) // probe)][:probe]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except OSError:
            continue
    return sorted(sides)[len(sides) // 2] if sides else None


def train_cache_side(paths: list[Path], image_size: int) -> int:
    """Side of the cached training images: a margin above ``image_size`` for random crops, unless the images are
    no bigger than ``image_size`` anyway (upscaling them for the margin adds memory, not information)."""
    median = median_short_side(paths)
    if median is not None and median <= image_size:
        return image_size
    return math.ceil(image_size * TRAIN_CACHE_MARGIN)


def image_size_for_data(paths: list[Path], largest: int) -> tuple[int, str]:
    """``image_size=0``: the side the images themselves suggest, their median short side rounded down to a multiple
    of 16, kept within [AUTO_IMAGE_SIZE_MIN, ``largest``]. Small images are not blown up past what they hold, big
    photos are shrunk only as far as the budget ``largest`` (the caller's, per device) requires."""
    median = median_short_side(paths, probe=64)
    if median is None:
        raise DataError(f"image_size=0 follows the training images, but none of {len(paths)} could be read")
    size = min(max(median // 16 * 16, AUTO_IMAGE_SIZE_MIN), largest)
    return size, (f"image_size: {size}px, from the training images (median short side {median}px, "
                  f"kept within {AUTO_IMAGE_SIZE_MIN}-{largest}px); pass image_size to choose another")


def load_uint8(path: Path, side: int) -> torch.Tensor | None:
    try:
        with Image.open(path) as image:
            return image_to_uint8(image, side)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def decode_all(paths: list[Path], labels: list[int], side: int, workers: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Every image once into ``uint8 [n, 3, side, side]``; returns it, its labels and how many were unreadable."""
    # PIL releases the GIL while decoding and resizing, so threads scale without pickling images between processes.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        tensors = list(pool.map(lambda p: load_uint8(p, side), paths))
    keep = [i for i, t in enumerate(tensors) if t is not None]
    images = torch.empty((len(keep), 3, side, side), dtype=torch.uint8)
    for row, i in enumerate(keep):
        images[row] = tensors[i]
    return images, torch.tensor([labels[i] for i in keep], dtype=torch.long), len(paths) - len(keep)


class CachedSource:
    """Batches sliced out of an in-memory uint8 tensor (moved to the GPU whole when it fits)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> CachedSource:
        return CachedSource(self.images.to(device), self.labels.to(device))

    def batches(self, batch_size: int, generator: torch.Generator | None, drop_last: bool) -> Iterator[tuple]:
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        order = order.to(self.images.device)
        stop = n - n % batch_size if drop_last and n > batch_size else n
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size]
            yield self.images[index], self.labels[index]


class _LazyImages(torch.utils.data.Dataset):
    def __init__(self, paths: list[Path], labels: list[int], side: int) -> None:
        self.paths, self.labels, self.side = paths, labels, side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | None:
        image = load_uint8(self.paths[i], self.side)
        return None if image is None else (image, self.labels[i])


def _collate_readable(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    items = [item for item in items if item is not None]  # an unreadable image is skipped, not fatal
    if not items:
        return torch.empty((0, 3, 1, 1), dtype=torch.uint8), torch.empty(0, dtype=torch.long)
    return torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items])


class LazySource:
    """DataLoader workers decode each image every epoch (data too big for the memory budget)."""

    def __init__(self, paths: list[Path], labels: list[int], side: int, workers: int, pin_memory: bool) -> None:
        self.dataset = _LazyImages(paths, labels, side)
        self.workers, self.pin_memory = workers, pin_memory

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batch_size: int, generator: torch.Generator | None, drop_last: bool) -> Iterator[tuple]:
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=batch_size, shuffle=generator is not None, generator=generator,
            drop_last=drop_last and len(self) > batch_size, num_workers=self.workers,
            pin_memory=self.pin_memory, collate_fn=_collate_readable,
            persistent_workers=False, prefetch_factor=4 if self.workers else None,
        )
        for images, labels in loader:
            if len(labels):
                yield images, labels


@dataclass
class InputData:
    classes: list[str]
    train: CachedSource | LazySource
    validation: CachedSource | LazySource
    cached: bool
    train_side: int
    skipped: int
    image_size: int
    features: bool = False  # the splits hold a frozen backbone's outputs, not images (frozen_features.py)


def take_shard(split: Split, index: int, count: int) -> Split:
    """Every ``count``-th image from ``index``: a data-parallel rank decodes and caches only its own share."""
    return Split(split.classes, split.paths[index::count], split.labels[index::count])


def prepare_input(
    train_dir: Path, validation_dir: Path, image_size: int, memory_fraction: float, workers: int, pin_memory: bool,
    largest_auto_size: int = 224, shard: tuple[int, int] = (0, 1), crop_margin: bool = True,
) -> tuple[InputData, str]:
    """Scans both channels and caches them in memory when they fit ``memory_fraction`` of RAM; ``image_size`` 0
    takes the size from the images (see image_size_for_data), and ``InputData.image_size`` says which it was.
    ``shard`` (index, count) keeps one data-parallel rank's share of both splits; the sizes are chosen from all
    the images first, so every rank picks the same. ``crop_margin`` False (random crops off) caches training
    images at ``image_size``, as validation ones.

    Returns the data and the log lines describing what was done.
    """
    train, validation = load_splits(train_dir, validation_dir)
    chosen = ""
    if image_size == 0:
        image_size, chosen = image_size_for_data(train.paths, largest_auto_size)
        chosen += "\n"
    side = train_cache_side(train.paths, image_size) if crop_margin else image_size
    if shard[1] > 1:
        train, validation = take_shard(train, *shard), take_shard(validation, *shard)
        if not train.paths or not validation.paths:
            raise DataError(f"{shard[1]} data-parallel workers need at least {shard[1]} train and {shard[1]} "
                            "validation images each: use fewer instances or more images")
    need = 3 * (len(train.paths) * side * side + len(validation.paths) * image_size * image_size)
    budget = int(memory_fraction * total_memory_bytes())
    counts = f"{len(train.paths)} train / {len(validation.paths)} validation images, {len(train.classes)} classes"
    if shard[1] > 1:
        counts += f" (shard {shard[0] + 1} of {shard[1]})"
    if need > budget:
        data = InputData(
            train.classes, LazySource(train.paths, train.labels, side, workers, pin_memory),
            LazySource(validation.paths, validation.labels, image_size, workers, pin_memory), False, side, 0,
            image_size,
        )
        return data, chosen + f"data: {counts}; lazy decode with {workers} workers ({need / 2**20:.0f} MiB > budget " \
                     f"{budget / 2**20:.0f} MiB)"
    threads, started = cpu_count(), time.perf_counter()
    train_images, train_labels, bad_train = decode_all(train.paths, train.labels, side, threads)
    val_images, val_labels, bad_val = decode_all(validation.paths, validation.labels, image_size, threads)
    if len(train_labels) < 2 or len(val_labels) == 0:
        raise DataError(f"too few readable images: {len(train_labels)} train, {len(val_labels)} validation")
    data = InputData(
        train.classes, CachedSource(train_images, train_labels), CachedSource(val_images, val_labels),
        True, side, bad_train + bad_val, image_size,
    )
    skipped = f", skipped {bad_train + bad_val} unreadable" if bad_train + bad_val else ""
    cache = (f"decoded in {time.perf_counter() - started:.1f} s and cached in memory at {side}px/{image_size}px "
             f"({need / 2**20:.1f} MiB){skipped}")
    return data, chosen + f"data: {counts}; {cache}"


def augment(
    batch: torch.Tensor, size: int, generator: torch.Generator, min_scale: float, hflip: bool, jitter: float
) -> torch.Tensor:
    """Random resized crop (+ optional horizontal flip) and mild color jitter for a whole uint8 NCHW batch at once;
    returns floats in 0..1. One affine_grid/grid_sample does every sample's crop, scale and flip together."""
    n, device = batch.shape[0], batch.device
    images = batch.float().div_(255)

    def uniform(low: float, high: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * (high - low) + low).to(device)

    # min_scale 1 switches cropping off entirely, aspect-ratio jitter included.
    ratio_range = math.log(4 / 3) if min_scale < 1 else 0.0
    area, log_ratio = uniform(min_scale, 1.0), uniform(-ratio_range, ratio_range)
    width = torch.sqrt(area * log_ratio.exp()).clamp(max=1.0)  # fractions of the side
    height = torch.sqrt(area / log_ratio.exp()).clamp(max=1.0)
    theta = torch.zeros((n, 2, 3), device=device)
    flip = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0) if hflip else torch.ones(n, device=device)
    theta[:, 0, 0], theta[:, 1, 1] = width * flip, height
    theta[:, 0, 2] = (uniform(-1, 1)) * (1 - width)
    theta[:, 1, 2] = (uniform(-1, 1)) * (1 - height)
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if jitter > 0:
        images = color_jitter(images, generator, jitter)
    return images


def color_jitter(images: torch.Tensor, generator: torch.Generator, strength: float) -> torch.Tensor:
    """Brightness, contrast and saturation each scaled by a factor in [1 - strength, 1 + strength] per sample."""
    n = images.shape[0]
    factors = (1 + (torch.rand((3, n, 1, 1, 1), generator=generator) * 2 - 1) * strength).to(images.device)
    images = images * factors[0]
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * factors[1] + mean
    gray = (images * torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    images = (images - gray) * factors[2] + gray
    return images.clamp_(0, 1)
