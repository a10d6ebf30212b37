"""A small photo dataset built from the real photographs scikit-image ships (no downloads): the kind of data users
bring, not the bundled digits. `python benchmarks/photo_dataset.py OUT [--per-class N] [--size WxH]`.

Five classes of natural textures and scenes (brick, grass, gravel, cells, stars), written as a dog-breed-style
pre-split tree (`train/`, `valid/`, `test/`, one folder per class). Each split's patches come from its own band of
the source photograph, so a test patch never overlaps a training one. Photos arrive as users' do: JPEGs of varied
size and quality, some grayscale PNGs, one CMYK JPEG and one palette PNG a class, and one broken file in train/.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

SPLIT_BANDS = {"train": (0.0, 0.7), "valid": (0.7, 0.85), "test": (0.85, 1.0)}  # rows of the source photo
SPLIT_SHARE = {"train": 0.7, "valid": 0.15, "test": 0.15}
# Side of a crop in the source photo, whatever the output size: every split sees the surface at the same scale.
SOURCE_CROP = 64


def photo_sources() -> dict[str, Callable[[], np.ndarray]]:
    """Class name -> scikit-image loader of a photograph that ships in its wheel (these need no download)."""
    from skimage import data

    return {"brick": data.brick, "grass": data.grass, "gravel": data.gravel,
            "cells": data.immunohistochemistry, "stars": data.hubble_deep_field}


def crop_patch(photo: Image.Image, band: tuple[float, float], size: tuple[int, int],
               rng: np.random.Generator) -> Image.Image:
    """A random crop inside ``band`` of the photo's rows, 0.6-1.5x SOURCE_CROP high with the aspect of ``size``,
    flipped or not, scaled to ``size`` and brightened or darkened a little: what a camera pointed at the same
    surface twice gives."""
    top, bottom = int(band[0] * photo.height), int(band[1] * photo.height)
    aspect = size[0] / size[1]
    high = int(min(bottom - top, photo.width / aspect, SOURCE_CROP * rng.uniform(0.6, 1.5)))
    wide = int(high * aspect)
    y, x = int(rng.integers(top, bottom - high + 1)), int(rng.integers(0, photo.width - wide + 1))
    patch = photo.crop((x, y, x + wide, y + high)).resize(size, Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    gain = rng.uniform(0.8, 1.2)
    return patch.point(lambda value: min(255, int(value * gain)))


def save_like_a_user(patch: Image.Image, folder: Path, index: int, rng: np.random.Generator) -> Path:
    """Mostly JPEGs at a random quality; every 10th a grayscale PNG; the first a CMYK JPEG, the second a palette
    PNG (the odd modes users' folders hold)."""
    if index == 0:
        path = folder / f"{index:04d}.jpg"
        patch.convert("CMYK").save(path, quality=90)
    elif index == 1:
        path = folder / f"{index:04d}.png"
        patch.convert("RGB").quantize(64).save(path)
    elif index % 10 == 5:
        path = folder / f"{index:04d}.png"
        patch.convert("L").save(path)
    else:
        path = folder / f"{index:04d}.jpg"
        patch.convert("RGB").save(path, quality=int(rng.integers(70, 96)))
    return path


def write_photo_dataset(out: Path, per_class: int = 110, size: tuple[int, int] = (64, 64), seed: int = 0) -> Path:
    """Writes the tree under ``out`` and returns ``out``; the same arguments always give the same files."""
    rng = np.random.default_rng(seed)
    for name, load in photo_sources().items():
        photo = Image.fromarray(load())
        for split, band in SPLIT_BANDS.items():
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(max(2, round(per_class * SPLIT_SHARE[split]))):
                save_like_a_user(crop_patch(photo, band, size, rng), folder, index, rng)
    (out / "train" / "brick" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 a truncated download")
    return out


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 500x375") from None
    if min(width, height) < 8:
        raise argparse.ArgumentTypeError(f"{text!r}: both sides must be at least 8 px")
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/photo_dataset.py", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the train/valid/test tree into")
    parser.add_argument("--per-class", type=int, default=110, help="images per class over the three splits")
    parser.add_argument("--size", type=parse_size, default=(64, 64), metavar="WxH",
                        help="size of the photos in px (default 64x64; users' photos are often 500x375)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.per_class < 7:
        parser.error("--per-class must be at least 7 (two images in each split)")
    print(write_photo_dataset(args.out, args.per_class, args.size, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
