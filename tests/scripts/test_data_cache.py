"""scripts/data_cache.py: the image size the data suggests when image_size=0 (the local preset)."""

from __future__ import annotations

import json
from pathlib import Path

import data_cache
import pytest
import train
from data_cache import AUTO_IMAGE_SIZE_MIN, DataError, image_size_for_data
from PIL import Image


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, size in enumerate(sizes):
        path = folder / f"{i}.jpg"
        Image.new("RGB", size, (i * 7 % 255, 90, 160)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize(
    ("sizes", "largest", "expected"),
    [
        ([(500, 375)] * 5, 64, 64),  # users' photos on CPU: the budget decides
        ([(500, 375)] * 5, 224, 224),  # on a GPU: ImageNet's side
        ([(8, 8)] * 5, 64, AUTO_IMAGE_SIZE_MIN),  # tiny images: never below what the classifiers accept
        ([(100, 50), (120, 60), (90, 47)], 224, 48),  # the median short side, rounded down to a multiple of 16
        ([(40, 40), (300, 300), (300, 300)], 224, 224),  # the median, not the smallest
    ],
)
def test_image_size_follows_the_median_short_side_within_bounds(tmp_path: Path, sizes, largest, expected) -> None:
    size, message = image_size_for_data(write_images(tmp_path, sizes), largest)
    assert size == expected
    assert message.startswith(f"image_size: {size}px, from the training images (median short side ")
    assert f"{AUTO_IMAGE_SIZE_MIN}-{largest}px" in message


def test_unreadable_files_are_left_out_of_the_median(tmp_path: Path) -> None:
    paths = write_images(tmp_path, [(100, 80)] * 3)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    assert image_size_for_data([broken, *paths], 224)[0] == 80


def test_no_readable_image_is_a_data_error_naming_the_setting(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="image_size=0 follows the training images, but none of 1 could be read"):
        image_size_for_data([broken], 224)


def test_train_cache_side_adds_the_crop_margin_only_to_big_images(tmp_path: Path) -> None:
    assert data_cache.train_cache_side(write_images(tmp_path / "small", [(32, 32)] * 3), 32) == 32
    assert data_cache.train_cache_side(write_images(tmp_path / "big", [(200, 150)] * 3), 64) == 74


def test_a_job_with_image_size_0_trains_and_serves_at_the_size_it_chose(tmp_path: Path, split_dir: Path,
                                                                        monkeypatch, capsys) -> None:
    """The model's meta, which evaluation and serving read, holds the side chosen, never 0."""
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path / "job"))
    argv = ["--arch", "shufflenet_v2_x0_5", "--pretrained", "false", "--image-size", "0", "--epochs", "1",
            "--train", str(split_dir / "train"), "--validation", str(split_dir / "validation")]
    assert train.main(argv) == 0
    meta = json.loads((tmp_path / "job/model/model_meta.json").read_text())
    digits_side = Image.open(next((split_dir / "train").rglob("*.png"))).size[0]
    assert meta["image_size"] == max(AUTO_IMAGE_SIZE_MIN, digits_side // 16 * 16)
    assert f"image_size: {meta['image_size']}px, from the training images" in capsys.readouterr().out


def test_a_negative_image_size_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    assert train.main(["--image-size", "-1"]) == 2
    assert "image_size must be positive, or 0 to follow the training images, got -1" in capsys.readouterr().err
