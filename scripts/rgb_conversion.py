"""The one conversion of a decoded image to 8-bit RGB, shared by PrepareData and the endpoint.

Training sees what preprocess.py wrote; the endpoint sees the caller's original file. Both go through `upright_rgb`,
so a 16-bit scan, a float TIFF or a CMYK JPEG gets the same pixels at training and at serving time. Shipped beside
preprocess.py (the processing job's "modules" input) and inference.py (in the model's code/ folder); Pillow only.
"""

from __future__ import annotations

from PIL import Image, ImageOps

TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
WIDE_MODES = ("I", "F")  # and every "I;16*": more than 8 bits per pixel


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB: transparency composited on white; 16-bit, 32-bit and float grayscale mapped by
    what their values mean (`to_8bit_gray`), never clipped to white."""
    if image.mode == "RGB":
        return image
    if image.mode in WIDE_MODES or image.mode.startswith("I;16"):
        return to_8bit_gray(image).convert("RGB")
    if image.mode == "P":
        # Via RGBA, so a tRNS transparency turns white instead of showing the hidden palette colour.
        image = image.convert("RGBA")
    if image.mode in TRANSPARENT_MODES:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")  # 1, L, CMYK, YCbCr, LAB, HSV, RGBX


def to_8bit_gray(image: Image.Image) -> Image.Image:
    """Wide grayscale as "L". Pillow's own conversion clips at 255, which turns a 16-bit image white; instead:
    16-bit data (an I;16 mode, or I values in 0..65535) is scaled by its full range (a dark 16-bit image stays
    dark), floats in 0..1 by 255, values already in 0..255 are kept, and anything else is stretched from its
    minimum to its maximum."""
    if image.mode == "F":
        low, high = image.getextrema()
        if 0 <= low and high <= 1:
            return image.point(lambda v: v * 255).convert("L")
        if 0 <= low and high <= 255:
            return image.convert("L")
        return _stretched(image, low, high)
    wide = image.convert("I")
    low, high = wide.getextrema()
    if image.mode.startswith("I;16") or (0 <= low and 255 < high <= 65535):
        return wide.point(lambda v: v / 257).convert("L")
    if 0 <= low and high <= 255:  # 8-bit data in a 32-bit container
        return wide.convert("L")
    return _stretched(wide, low, high)


def _stretched(image: Image.Image, low: float, high: float) -> Image.Image:
    span = max(high - low, 1)
    return image.point(lambda v: (v - low) * 255 / span).convert("L")


def upright_rgb(image: Image.Image) -> Image.Image:
    """The image as a viewer shows it (EXIF orientation applied), in 8-bit RGB."""
    return to_rgb(ImageOps.exif_transpose(image) or image)


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1: upright, also when there is none)."""
    try:
        return int(image.getexif().get(0x0112, 1))
    except (TypeError, ValueError, SyntaxError):  # a broken EXIF block is treated as none
        return 1
