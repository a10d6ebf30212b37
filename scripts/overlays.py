"""Attribution maps as pictures and numbers: the PNG overlays ExplainModel writes and what a map says about focus.

Pure numpy and Pillow; imports nothing from the project (ExplainModel ships it as a "modules" input).

"Inside vs outside the object" needs to know where the object is. No dataset here carries masks, so it is judged
only where the picture allows: when at least two thirds of the image's border is one colour (within 0.15 on a 0..1
scale), that colour is the background and whatever differs from it is the object, provided it is one piece: its
largest 8-connected part must hold 90% of it. A border test alone is fooled by low-contrast textures, whose borders
look uniform at any size; what differs from their median colour is then scattered speckle, not an object. Measured
on the model's input at 32, 64 and 224 px (the same at each size): every bundled digit and every photo pasted on a
white card is judged, in one piece; of 20 patches a class of benchmarks/photo_dataset.py, which pass the border test
30-100% of the time, no grass, gravel or cell patch is judged, 1 star field (one galaxy dominating the frame) and 4
brick patches (a mortar line on plain brick: a figure on a ground, fairly); a photo's border is rarely one colour
(scikit-image's astronaut 14%, coffee 46%, camera 64%). Where it cannot be judged the share is ``None``, "not
judged", never a guess.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

BORDER = 2  # pixels of each edge read as the background
BACKGROUND_MIN_SHARE = 2 / 3  # of the border within OBJECT_MIN_DIFFERENCE of its median colour: a background
OBJECT_MIN_DIFFERENCE = 0.15  # a pixel this far from the background colour (0..1 scale) is object
OBJECT_AREA_RANGE = (0.01, 0.9)  # an "object" outside this share of the image is the background judged wrong
OBJECT_MIN_PIECE_SHARE = 0.9  # of the object in its largest connected piece; less is texture or a scatter of things
MIN_PANEL_SIDE = 128  # small inputs (the 32-px digits) are scaled up so a person can see them
HEAT_ALPHA = 0.6
CAPTION_HEIGHT = 16


def normalise(attribution: np.ndarray) -> np.ndarray:
    """A non-negative map scaled to 0..1; an all-zero map stays zero (the model's output did not depend on it)."""
    positive = np.clip(np.nan_to_num(attribution.astype(np.float64)), 0.0, None)
    peak = positive.max(initial=0.0)
    return positive / peak if peak > 0 else positive


def object_mask(image: np.ndarray) -> np.ndarray | None:
    """``HxW`` bool mask of the object in an ``HxWx3`` 0..1 image whose border is mostly one colour, else None."""
    height, width = image.shape[:2]
    if min(height, width) <= 4 * BORDER:
        return None
    frame = np.concatenate([image[:BORDER].reshape(-1, 3), image[-BORDER:].reshape(-1, 3),
                            image[:, :BORDER].reshape(-1, 3), image[:, -BORDER:].reshape(-1, 3)])
    background = np.median(frame, axis=0)
    if float((np.abs(frame - background).max(axis=1) <= OBJECT_MIN_DIFFERENCE).mean()) < BACKGROUND_MIN_SHARE:
        return None
    mask = np.abs(image - background).max(axis=2) > OBJECT_MIN_DIFFERENCE
    low, high = OBJECT_AREA_RANGE
    if not low <= mask.mean() <= high or largest_piece_share(mask) < OBJECT_MIN_PIECE_SHARE:
        return None
    return mask


def largest_piece_share(mask: np.ndarray) -> float:
    """The fraction of a non-empty ``HxW`` mask in its largest 8-connected piece.

    Labels spread as the smallest pixel index among neighbours, with pointer jumping (a label is itself a pixel
    whose label is no larger), so it converges in a few dozen numpy passes even at 224 px: no scipy in the job."""
    height, width = mask.shape
    inside = mask.ravel()
    outside = mask.size  # the label of background pixels, larger than any pixel index
    labels = np.where(inside, np.arange(mask.size), outside)
    while True:
        padded = np.pad(labels.reshape(height, width), 1, constant_values=outside)
        smallest = labels.reshape(height, width)
        for dy in range(3):
            for dx in range(3):
                smallest = np.minimum(smallest, padded[dy:dy + height, dx:dx + width])
        spread = np.append(np.where(inside, smallest.ravel(), outside), outside)
        jumped = spread[spread[:-1]]
        if np.array_equal(jumped, labels):
            break
        labels = jumped
    sizes = np.bincount(labels[inside])
    return float(sizes.max() / sizes.sum())


def object_share(attribution: np.ndarray, mask: np.ndarray | None) -> float | None:
    """The fraction of the attribution mass on the object; None where the object cannot be judged or the map is 0."""
    total = float(attribution.sum())
    if mask is None or total <= 0:
        return None
    return float(attribution[mask].sum()) / total


def focus_area(attribution: np.ndarray, mass: float = 0.5) -> float | None:
    """The smallest fraction of the image that holds `mass` of the attribution: small means a focused model."""
    values = np.sort(attribution.ravel())[::-1]
    total = float(values.sum())
    if total <= 0:
        return None
    needed = int(np.searchsorted(np.cumsum(values), mass * total)) + 1
    return needed / values.size


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """``HxW`` 0..1 -> ``HxWx3`` in the "hot" ramp: black, red, yellow, white."""
    return np.stack([np.clip(3 * heat, 0, 1), np.clip(3 * heat - 1, 0, 1), np.clip(3 * heat - 2, 0, 1)], axis=2)


def overlay_png(image: np.ndarray, heat: np.ndarray, caption: str) -> Image.Image:
    """The input as the model saw it beside the same picture under its heat map, with a caption line."""
    height, width = image.shape[:2]
    scale = max(1, -(-MIN_PANEL_SIDE // min(height, width)))  # ceil: a 32-px digit becomes 128 px
    alpha = (HEAT_ALPHA * heat)[..., None]
    blended = image * (1 - alpha) + heat_colours(heat) * alpha
    panels = [Image.fromarray((np.clip(panel, 0, 1) * 255).astype(np.uint8)).resize(
        (width * scale, height * scale), Image.Resampling.NEAREST) for panel in (image, blended)]
    canvas = Image.new("RGB", (2 * width * scale, height * scale + CAPTION_HEIGHT), "white")
    canvas.paste(panels[0], (0, 0))
    canvas.paste(panels[1], (width * scale, 0))
    ImageDraw.Draw(canvas).text((2, height * scale + 2), caption, fill="black")
    return canvas


def unnormalise(tensor_chw: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """The ``CxHxW`` model input back to an ``HxWx3`` 0..1 picture (grey inputs are repeated to three channels)."""
    channels = tensor_chw.shape[0]
    mean_a = np.asarray(mean, dtype=np.float32)[:channels, None, None]
    std_a = np.asarray(std, dtype=np.float32)[:channels, None, None]
    picture = np.clip(tensor_chw * std_a + mean_a, 0.0, 1.0).transpose(1, 2, 0)
    return np.repeat(picture, 3, axis=2) if channels == 1 else picture[..., :3]
