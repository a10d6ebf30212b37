"""overlays.py: where the object is judged (digits, a photo on a white card) and where it is not (textures, photos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import overlays
import pytest
from PIL import Image

from benchmarks.photo_dataset import photo_sources


def as_input(image: Image.Image, side: int) -> np.ndarray:
    """The picture as ExplainModel judges it: the model's input, RGB, 0..1."""
    resized = image.convert("RGB").resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32) / 255


def test_largest_piece_counts_diagonal_neighbours_and_follows_long_shapes() -> None:
    two = np.zeros((10, 10), bool)
    two[1:4, 1:4] = True  # 9 pixels
    two[8, 8] = True  # 1 apart
    assert overlays.largest_piece_share(two) == pytest.approx(0.9)
    assert overlays.largest_piece_share(np.eye(12, dtype=bool)) == 1.0  # touching only at corners: one piece
    snake = np.zeros((41, 41), bool)
    snake[::4] = True  # rows joined at alternate ends: one path over 400 pixels long
    snake[np.arange(41) % 8 < 4, 40] = True
    snake[np.arange(41) % 8 >= 4, 0] = True
    assert overlays.largest_piece_share(snake) == 1.0


def test_digits_and_a_photo_on_a_white_card_are_judged(small_digits_dir: Path) -> None:
    for path in sorted(small_digits_dir.glob("*/*.png"))[::7]:
        with Image.open(path) as digit:
            mask = overlays.object_mask(as_input(digit, 32))
        assert mask is not None, path
    from skimage import data

    card = Image.new("RGB", (500, 375), "white")
    card.paste(Image.fromarray(data.chelsea()).resize((240, 180)), (130, 100))
    for side in (64, 224):
        mask = overlays.object_mask(as_input(card, side))
        assert mask is not None and mask.mean() == pytest.approx(240 * 180 / (500 * 375), abs=0.02)


@pytest.mark.parametrize("texture", ["grass", "gravel", "cells"])
def test_texture_patches_are_not_judged_though_their_border_looks_uniform(texture: str) -> None:
    photo = Image.fromarray(photo_sources()[texture]())
    patches = [photo.crop((x, y, x + 64, y + 48)).resize((500, 375)) for x in range(0, 320, 40) for y in (0, 100)]
    for side in (64, 224):
        assert [overlays.object_mask(as_input(patch, side)) for patch in patches] == [None] * len(patches)


def test_photos_whose_border_is_not_one_colour_are_not_judged() -> None:
    from skimage import data

    for photo in (data.astronaut(), data.coffee(), data.camera()):
        assert overlays.object_mask(as_input(Image.fromarray(photo), 224)) is None


def test_the_share_on_the_object_is_the_mass_inside_it_and_none_when_not_judged() -> None:
    mask = np.zeros((4, 4), bool)
    mask[:2] = True
    heat = np.zeros((4, 4))
    heat[0, 0], heat[3, 3] = 3.0, 1.0
    assert overlays.object_share(heat, mask) == 0.75
    assert overlays.object_share(heat, None) is None
    assert overlays.object_share(np.zeros((4, 4)), mask) is None  # an all-zero map says nothing
