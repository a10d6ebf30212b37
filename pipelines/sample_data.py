"""The bundled sample dataset: scikit-learn's ``load_digits`` written as real image files.

1,797 real 8x8 handwritten digits ship inside scikit-learn, so the local default run needs no download. They are
upscaled to PNG files in the folder-per-class layout every image pipeline expects.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DEFAULT_IMAGE_SIDE = 32
# A marker written last, so a half-written folder (an interrupted first run) is regenerated, not trusted.
COMPLETE_MARKER = ".sample-data-complete"


def class_folder_name(digit: int) -> str:
    """`3` -> `3-three`: readable, and sorting the names keeps digit order."""
    return f"{digit}-{DIGIT_NAMES[digit]}"


def digit_to_image(pixels: np.ndarray, side: int = DEFAULT_IMAGE_SIDE) -> Image.Image:
    """An 8x8 array of 0..16 intensities as a grayscale image, dark digit on white like ink on paper."""
    gray = (255 - np.clip(pixels, 0, 16) * (255 / 16)).astype(np.uint8)
    return Image.fromarray(gray, mode="L").resize((side, side), Image.Resampling.BICUBIC)


def load_digit_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``load_digits()``'s images ``[n, 8, 8]`` and targets, read straight from the CSV scikit-learn ships: importing
    scikit-learn took 1.5 s of a first local ``start`` (benchmarks/engine.py). ``load_digits`` where the file is not
    where it has always been."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv is not None and csv.is_file():
        data = np.loadtxt(csv, delimiter=",")
        return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


def write_sample_dataset(out_dir: Path, side: int = DEFAULT_IMAGE_SIDE, limit_per_class: int | None = None) -> Path:
    """Writes the digits as ``out_dir/<n-name>/<index>.png`` and returns ``out_dir``.

    Idempotent: a complete dataset already there is left as it is.
    """
    out_dir = Path(out_dir)
    if (out_dir / COMPLETE_MARKER).exists():
        return out_dir
    images, targets = load_digit_arrays()
    written: dict[int, int] = {}
    for index, (pixels, target) in enumerate(zip(images, targets, strict=True)):
        digit = int(target)
        if limit_per_class is not None and written.get(digit, 0) >= limit_per_class:
            continue
        folder = out_dir / class_folder_name(digit)
        folder.mkdir(parents=True, exist_ok=True)
        digit_to_image(pixels, side).save(folder / f"{index:04d}.png")
        written[digit] = written.get(digit, 0) + 1
    (out_dir / COMPLETE_MARKER).write_text(f"{sum(written.values())} images\n")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the bundled handwritten-digits sample dataset as PNG files.")
    parser.add_argument("out_dir", type=Path, help="folder to write <class>/<image>.png into")
    parser.add_argument("--image-side", type=int, default=DEFAULT_IMAGE_SIDE, help="side of the square images (px)")
    parser.add_argument("--limit-per-class", type=int, default=None, help="write at most this many images a class")
    args = parser.parse_args(argv)
    if args.image_side < 8:
        parser.error(f"--image-side must be at least 8 (the digits are 8x8), got {args.image_side}")
    out = write_sample_dataset(args.out_dir, args.image_side, args.limit_per_class)
    print(f"sample dataset ready: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
