"""scripts/rgb_conversion.py: every odd Pillow mode as RGB, and the same pixels at training and at serving time.

The second half runs the real paths: PrepareData's `process_image` -> train.py's loading (`data_cache.load_uint8`,
`normalize`) against the endpoint's `input_fn` of the model dir train.py writes, on the caller's original file.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import numpy as np
import preprocess
import pytest
import rgb_conversion
import torch
from artifacts import SERVING_MODULES, model_meta, write_model_dir
from data_cache import load_uint8
from inference import build_model, normalize
from PIL import Image
from rgb_conversion import to_rgb

SCRIPTS = Path(rgb_conversion.__file__).parent
IMAGE_SIZE = 48
ARCH = "shufflenet_v2_x0_5"


def palette_with_transparency() -> Image.Image:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([200, 0, 0] + [0, 0, 200] + [0, 0, 0] * 254)
    img.paste(1, (0, 0, 4, 8))  # left half: palette index 1, declared transparent below
    img.info["transparency"] = 1
    return img


def half_transparent_rgba() -> Image.Image:
    img = Image.new("RGBA", (8, 8), (0, 200, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, 4, 8))
    return img


# ---------------------------------------------------------------------------------------------- to_rgb
def _mode_cases() -> list[tuple[str, Image.Image, tuple[int, int, int]]]:
    deep = Image.new("I;16", (4, 4), 40000)  # 40000/65535 of full scale -> 155, not clipped to 255
    wide = Image.new("I", (4, 4), 0)
    wide.putpixel((0, 0), 65535)
    negative = Image.new("I", (4, 4), -100)
    negative.putpixel((0, 0), 100)
    return [
        ("1", Image.new("1", (4, 4), 1), (255, 255, 255)),
        ("L", Image.new("L", (4, 4), 77), (77, 77, 77)),
        ("LA", Image.new("LA", (4, 4), (0, 0)), (255, 255, 255)),  # fully transparent -> white, not black
        ("RGBA", half_transparent_rgba(), (255, 255, 255)),
        ("P+transparency", palette_with_transparency(), (255, 255, 255)),
        ("CMYK", Image.new("CMYK", (4, 4), (0, 255, 255, 0)), (255, 0, 0)),
        ("I;16", deep, (155, 155, 155)),
        ("I;16 peak 1000", Image.new("I;16", (4, 4), 1000), (3, 3, 3)),  # a dark 16-bit image stays dark
        ("I;16B", deep.convert("I").convert("I;16B"), (155, 155, 155)),
        ("I 16-bit range", wide, (0, 0, 0)),
        ("I 8-bit range", Image.new("I", (4, 4), 200), (200, 200, 200)),
        ("I negative", negative, (0, 0, 0)),  # stretched from its minimum (-100) to its maximum (100)
        ("F 0..1", Image.new("F", (4, 4), 0.5), (127, 127, 127)),
        ("F 0..255", Image.new("F", (4, 4), 200.0), (200, 200, 200)),
        ("F 0..4000", Image.fromarray(np.array([[0, 4000], [2000, 4000]], dtype=np.float32)), (255, 255, 255)),
    ]


@pytest.mark.parametrize(("label", "img", "pixel"), _mode_cases(), ids=[c[0] for c in _mode_cases()])
def test_to_rgb_converts_every_odd_mode(label: str, img: Image.Image, pixel: tuple[int, int, int]) -> None:
    rgb = to_rgb(img)
    assert rgb.mode == "RGB" and rgb.size == img.size
    assert rgb.getpixel((1, 1)) == pixel


def test_to_rgb_keeps_opaque_palette_colours_and_scales_the_whole_16_bit_range() -> None:
    assert to_rgb(palette_with_transparency()).getpixel((6, 6)) == (200, 0, 0)
    assert to_rgb(half_transparent_rgba()).getpixel((6, 6)) == (0, 200, 0)
    wide = Image.new("I", (2, 1), 0)
    wide.putpixel((1, 0), 65535)
    assert to_rgb(wide).getpixel((1, 0)) == (255, 255, 255)


def test_exif_orientation_reads_the_tag_and_defaults_to_upright() -> None:
    assert rgb_conversion.exif_orientation(Image.new("RGB", (4, 4))) == 1
    assert rgb_conversion.exif_orientation(Image.open(io.BytesIO(exif_rotated_jpeg()))) == 6


# ---------------------------------------------------------------------------------------------- train = serve
def photo(size: tuple[int, int] = (120, 90)) -> np.ndarray:
    """A smooth colour gradient with texture: photo-like, so a resize or a re-encode would show."""
    y, x = np.mgrid[0:size[1], 0:size[0]]
    rng = np.random.default_rng(7)
    channels = [x * 255 / size[0], y * 255 / size[1], (x + y) * 127 / sum(size)]
    return np.clip(np.stack(channels, -1) + rng.normal(0, 12, (size[1], size[0], 3)), 0, 255).astype(np.uint8)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": the camera was held upright
    return encoded(Image.fromarray(photo()), "JPEG", quality=90, exif=exif.tobytes())


def odd_originals() -> dict[str, tuple[bytes, str]]:
    """(file bytes, content type) of images a user's folder really holds."""
    gray = photo()[..., 0].astype(np.uint16)
    rgba = Image.fromarray(photo()).convert("RGBA")
    rgba.putalpha(Image.fromarray(photo()[..., 1]))
    return {
        "16-bit peak 1000.png": (encoded(Image.fromarray(gray * 1000 // 255), "PNG"), "image/png"),
        "16-bit full range.png": (encoded(Image.fromarray(gray * 257), "PNG"), "image/png"),
        "float 0..1.tiff": (encoded(Image.fromarray(gray.astype(np.float32) / 255), "TIFF"), "application/x-image"),
        "cmyk.jpg": (encoded(Image.fromarray(photo()).convert("CMYK"), "JPEG", quality=90), "image/jpeg"),
        "palette.png": (encoded(Image.fromarray(photo()).quantize(64), "PNG", transparency=0), "image/png"),
        "rgba.png": (encoded(rgba, "PNG"), "image/png"),
        "exif rotated.jpg": (exif_rotated_jpeg(), "image/jpeg"),
        "plain rgb.jpg": (encoded(Image.fromarray(photo()), "JPEG", quality=90), "image/jpeg"),
        "grayscale.jpg": (encoded(Image.fromarray(photo()[..., 2]), "JPEG", quality=90), "image/jpeg"),
    }


@pytest.fixture(scope="module")
def served_handler(tmp_path_factory: pytest.TempPathFactory):
    """code/inference.py of a model dir as train.py writes it, imported the way the serving toolkit does (code/ on
    sys.path), with model_fn called: so its helpers are the copies shipped in code/."""
    model_dir = tmp_path_factory.mktemp("model")
    write_model_dir(model_dir, build_model(ARCH, 2), model_meta(ARCH, IMAGE_SIZE, ["a", "b"]))
    code = model_dir / "code"
    assert sorted(p.name for p in code.glob("*.py")) == sorted(SERVING_MODULES)
    assert (code / "rgb_conversion.py").read_bytes() == (SCRIPTS / "rgb_conversion.py").read_bytes()
    spec = importlib.util.spec_from_file_location("served_inference_under_test", code / "inference.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(code))
    try:
        spec.loader.exec_module(module)
        module.model_fn(str(model_dir))
    finally:
        sys.path.remove(str(code))
    return module


@pytest.mark.parametrize("name", sorted(odd_originals()))
def test_training_sees_the_pixels_the_endpoint_makes_of_the_same_original(name: str, served_handler,
                                                                        tmp_path: Path) -> None:
    data, content_type = odd_originals()[name]
    source = tmp_path / "in" / name
    source.parent.mkdir()
    source.write_bytes(data)
    (tmp_path / "out").mkdir()
    written, reason, _ = preprocess.process_image((str(source), str(tmp_path / "out" / "img"), 512, 10**8))
    assert written and not reason, reason
    trained_on = normalize(load_uint8(tmp_path / "out" / written, IMAGE_SIZE).unsqueeze(0))
    served = served_handler.input_fn(data, content_type)["images"]
    assert served.shape == trained_on.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.equal(served, trained_on), f"{name}: max difference {(served - trained_on).abs().max():.4f}"
    if name == "plain rgb.jpg":
        assert (tmp_path / "out" / written).read_bytes() == data, "an upright RGB JPEG is copied as it is"
    assert Image.open(tmp_path / "out" / written).mode == "RGB"
