"""Model definition, eval preprocessing and SageMaker PyTorch serving handlers.

This one file is the single definition of the model and of eval preprocessing: ``train.py`` imports it, it is copied
into ``model_dir/code/`` at training time, and ``evaluate.py`` and the serving container load the model through it.
So it must import nothing training-only (no smdebug, no matplotlib) and nothing from this repository but
``rgb_conversion.py``, the one pixel conversion PrepareData also uses, copied into ``code/`` beside it.

The serving toolkit calls the handlers by arity (``input_fn(body, content_type)``, ``output_fn(prediction, accept)``;
one extra parameter would receive the request context), so their signatures must stay exactly as they are.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image, UnidentifiedImageError
from rgb_conversion import upright_rgb
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
META_FILE = "model_meta.json"
WEIGHTS_FILE = "model.pth"
META_KEYS = ("arch", "num_classes", "class_names", "image_size", "mean", "std", "framework", "torch_version")

JSON_TYPE = "application/json"
IMAGE_TYPES = ("application/x-image", "image/jpeg", "image/png")
SUPPORTED_CONTENT_TYPES = (*IMAGE_TYPES, JSON_TYPE)
DEFAULT_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker real-time endpoints reject larger requests anyway
DEFAULT_TOP_K = 5
MAX_BATCH_IMAGES = 64  # bounds the decode work one request can cause


try:  # only in the serving container: subclassing its base error is what makes it answer with our status, not 500
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ErrorBase
except ImportError:
    _ErrorBase = Exception


class InferenceError(_ErrorBase):
    """A client error with its HTTP status (``.status``), plus the ``status_code``/``message``/``phrase`` attributes
    the serving toolkit reads when it turns an exception into a response."""

    def __init__(self, status: int, message: str) -> None:
        Exception.__init__(self, message)
        self.status = self.status_code = status
        self.message = self.phrase = message

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


# ---------------------------------------------------------------------------------------------- model definition
def classification_archs() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_arch(arch: str) -> None:
    """Raises ValueError naming close matches, so a typo in a hyperparameter is obvious in the job log."""
    archs = classification_archs()
    if arch in archs:
        return
    close = difflib.get_close_matches(arch, archs, n=5, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(archs)}"
    raise ValueError(f"unknown arch {arch!r}: not a torchvision classification model; {hint}")


def find_head(model: nn.Module) -> str:
    """Name of the final classifier layer: the last Linear (resnet ``fc``, vit ``heads.head``, mobilenet/efficientnet/
    convnext/vgg ``classifier.N``, densenet ``classifier``), or squeezenet's final 1x1 conv."""
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if linears:
        return linears[-1]
    convs = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if convs:
        return convs[-1]
    raise ValueError(f"cannot find a classifier layer in {type(model).__name__}")


def replace_head(model: nn.Module, num_classes: int) -> str:
    """Swaps the classifier for a fresh one with ``num_classes`` outputs; returns its name."""
    # Auxiliary heads (inception_v3, googlenet) would change forward()'s return type in training and need their own
    # class count: drop them, they are a training trick we do not use.
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        for aux in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, aux):
                setattr(model, aux, None)
    name = find_head(model)
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, kernel_size=old.kernel_size)
    setattr(parent, child, new)
    return name


def build_model(arch: str, num_classes: int, pretrained: bool = False) -> nn.Module:
    """A torchvision classification model with a new ``num_classes`` head; ImageNet weights only if ``pretrained``."""
    check_arch(arch)
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    # Passing torchvision's own default silences its FutureWarning about inception/googlenet init.
    extra = {"init_weights": True} if arch in ("inception_v3", "googlenet") and not pretrained else {}
    model = torchvision.models.get_model(arch, weights="DEFAULT" if pretrained else None, **extra)
    replace_head(model, num_classes)
    return model


# ---------------------------------------------------------------------------------------------- eval preprocessing
def image_to_uint8(image: Image.Image, size: int) -> torch.Tensor:
    """Eval geometry: the whole image resized (not cropped) to ``size`` x ``size``; uint8 CHW."""
    image = upright_rgb(image)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def normalize(
    batch: torch.Tensor, mean: tuple | list = IMAGENET_MEAN, std: tuple | list = IMAGENET_STD
) -> torch.Tensor:
    """uint8 (or 0..1 float) NCHW to the float input the model was trained on."""
    if batch.dtype == torch.uint8:
        batch = batch.float().div_(255)
    mean_t = torch.tensor(mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    return (batch - mean_t) / std_t


def preprocess(
    images: list[Image.Image], image_size: int, mean: tuple | list = IMAGENET_MEAN, std: tuple | list = IMAGENET_STD
) -> torch.Tensor:
    """PIL images to one normalized float NCHW batch, exactly as validation data is fed in training."""
    return normalize(torch.stack([image_to_uint8(image, image_size) for image in images]), mean, std)


# ---------------------------------------------------------------------------------------------- serving handlers
class LoadedModel:
    """What ``model_fn`` returns: the network in eval mode and its ``model_meta.json``. A plain class, not a
    dataclass: those need the module registered in sys.modules, which a loader by file path may not do."""

    def __init__(self, model: nn.Module, meta: dict, device: torch.device) -> None:
        self.model, self.meta, self.device = model, meta, device

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])


# input_fn never sees the model but must resize to its image size: model_fn remembers the meta here.
_serving_meta: dict | None = None


def max_payload_bytes() -> int:
    return int(os.environ.get("INFERENCE_MAX_PAYLOAD_BYTES", DEFAULT_MAX_PAYLOAD_BYTES))


def read_meta(model_dir: str | Path) -> dict:
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the model dir must hold {META_FILE} and {WEIGHTS_FILE}")
    meta = json.loads(path.read_text())
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise ValueError(f"{path} lacks keys {missing}")
    if len(meta["class_names"]) != meta["num_classes"]:
        raise ValueError(f"{path}: {len(meta['class_names'])} class_names but num_classes={meta['num_classes']}")
    return meta


def serving_meta() -> dict:
    """The loaded model's meta; before model_fn ran, that of the artifact this file ships in (``../model_meta.json``
    beside ``code/``) or of ``$SM_MODEL_DIR``."""
    if _serving_meta is not None:
        return _serving_meta
    base = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
    for model_dir in (Path(__file__).resolve().parent.parent, Path(os.environ.get("SM_MODEL_DIR", base / "model"))):
        if (model_dir / META_FILE).is_file():
            return read_meta(model_dir)
    raise RuntimeError(f"no model loaded: call model_fn first (no {META_FILE} found beside {Path(__file__).name})")


def model_fn(model_dir: str) -> LoadedModel:
    global _serving_meta
    meta = read_meta(model_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(meta["arch"], int(meta["num_classes"]), pretrained=False)
    state = torch.load(Path(model_dir) / WEIGHTS_FILE, map_location=device, weights_only=True)
    model.load_state_dict(state)
    _serving_meta = meta
    return LoadedModel(model=model.to(device).eval(), meta=meta, device=device)


def media_type(header: str | None) -> str:
    """``'Application/JSON; charset=utf-8'`` -> ``'application/json'``."""
    return (header or "").split(";", 1)[0].strip().lower()


def decode_image(data: bytes) -> Image.Image:
    """Fully decoded, so a truncated file is a 400 here and not a failure later."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > (Image.MAX_IMAGE_PIXELS or float("inf")):
            raise InferenceError(413, f"image of {image.width}x{image.height} pixels is too large")
        image.load()
    except Image.DecompressionBombError as exc:
        raise InferenceError(413, f"image too large: {exc}") from exc
    except UnidentifiedImageError:  # Pillow's own words name its BytesIO object, which means nothing to a client
        raise InferenceError(400, f"cannot decode image: not a format Pillow reads ({len(data)} bytes starting "
                                  f"{data[:8]!r}); send a JPEG, PNG, BMP, GIF, TIFF or WebP file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InferenceError(400, f"cannot decode image: {exc}") from exc
    return image


def decode_base64(text: Any, where: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise InferenceError(400, f"{where} must be a non-empty base64 string")
    if text.startswith("data:") and "," in text:  # tolerate data URIs pasted from a browser
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InferenceError(400, f"{where} is not valid base64: {exc}") from exc


def parse_json_request(body: bytes | str) -> tuple[list[Image.Image], int]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InferenceError(400, f"body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # json's C decoder recurses per nesting level: thousands of "[" exhaust the stack
        raise InferenceError(400, "body is not valid JSON for this endpoint: nested too deeply; send "
                                  '{"image": "<base64>"} or {"images": [...]}') from exc
    if not isinstance(payload, dict) or ("image" in payload) == ("images" in payload):
        raise InferenceError(400, 'JSON body must be an object with either "image" or "images"')
    if "image" in payload:
        encoded = [payload["image"]]
    else:
        encoded = payload["images"]
        if not isinstance(encoded, list) or not encoded:
            raise InferenceError(400, '"images" must be a non-empty list of base64 strings')
        if len(encoded) > MAX_BATCH_IMAGES:
            raise InferenceError(413, f"{len(encoded)} images in one request; at most {MAX_BATCH_IMAGES}")
    top_k = payload.get("top_k", DEFAULT_TOP_K)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InferenceError(400, f'"top_k" must be a positive integer, got {top_k!r}')
    return [decode_image(decode_base64(item, f"image {i}")) for i, item in enumerate(encoded)], top_k


def decode_request(body: bytes | str, content_type: str) -> tuple[list[Image.Image], int]:
    """Request body to (decoded images, top_k); every client mistake is an InferenceError with its status."""
    kind = media_type(content_type)
    if kind not in SUPPORTED_CONTENT_TYPES:
        supported = ", ".join(SUPPORTED_CONTENT_TYPES)
        raise InferenceError(415, f"unsupported content type {content_type!r}; use one of {supported}")
    if not isinstance(body, (bytes, bytearray, memoryview, str)):
        raise InferenceError(400, f"unexpected request body of type {type(body).__name__}")
    size = len(body.encode("utf-8")) if isinstance(body, str) else len(bytes(body))
    if size > max_payload_bytes():
        raise InferenceError(413, f"payload of {size} bytes is over the limit of {max_payload_bytes()} bytes")
    if kind == JSON_TYPE:
        return parse_json_request(body if isinstance(body, str) else bytes(body))
    if isinstance(body, str):
        raise InferenceError(400, f"a {kind} body must be the image's bytes, not text")
    return [decode_image(bytes(body))], DEFAULT_TOP_K


def input_fn(body: bytes | str, content_type: str) -> dict:
    """``{"images": normalized float NCHW tensor, "top_k": int}``."""
    images, top_k = decode_request(body, content_type)
    meta = serving_meta()
    return {"images": preprocess(images, int(meta["image_size"]), meta["mean"], meta["std"]), "top_k": top_k}


def predict_fn(data: dict | torch.Tensor, model: LoadedModel) -> list[list[tuple[str, float]]]:
    """Top-k ``(label, probability)`` pairs per image, best first."""
    if isinstance(data, dict):
        batch, top_k = data["images"], data.get("top_k", DEFAULT_TOP_K)
    else:
        batch, top_k = data, DEFAULT_TOP_K
    if batch.dim() == 3:
        batch = batch.unsqueeze(0)
    with torch.inference_mode():
        probabilities = torch.softmax(model.model(batch.to(model.device)).float(), dim=1).cpu()
    values, indices = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
    names = model.class_names
    return [
        [(names[i], float(p)) for p, i in zip(row_p, row_i, strict=True)]
        for row_p, row_i in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def predict_batch_fn(batch: list[dict], model: LoadedModel) -> list[list[list[tuple[str, float]]]]:
    """Several requests' ``input_fn`` results through one forward pass; one ``predict_fn`` result per request.

    Not a SageMaker handler (its container never calls it): the local endpoint batches the requests that queue up
    while the model is busy (pipelines/local/inference_thread.py). Same answers as one ``predict_fn`` each: eval-mode
    layers treat every image on its own, and each request keeps its own top_k.
    """
    images = [item["images"] if item["images"].dim() == 4 else item["images"].unsqueeze(0) for item in batch]
    top_ks = [item.get("top_k", DEFAULT_TOP_K) for item in batch]
    stacked, rows = torch.cat(images), []
    for start in range(0, len(stacked), MAX_BATCH_IMAGES):  # bounds one forward pass's memory
        rows += predict_fn({"images": stacked[start : start + MAX_BATCH_IMAGES], "top_k": max(top_ks)}, model)
    results, offset = [], 0
    for chunk, top_k in zip(images, top_ks, strict=True):
        results.append([row[:top_k] for row in rows[offset : offset + len(chunk)]])
        offset += len(chunk)
    return results


def accepts_json(accept: str | None) -> bool:
    """True for a missing Accept, ``*/*``, ``application/*`` or ``application/json`` anywhere in the list."""
    if not accept or not accept.strip():
        return True
    return any(media_type(part) in (JSON_TYPE, "*/*", "application/*") for part in accept.split(","))


def output_fn(prediction: list[list[tuple[str, float]]], accept: str) -> bytes:
    if not accepts_json(accept):
        raise InferenceError(406, f"cannot produce {accept!r}; the only output type is {JSON_TYPE}")
    predictions = [
        {"top_k": [{"label": label, "probability": round(probability, 6)} for label, probability in row]}
        for row in prediction
    ]
    return json.dumps({"predictions": predictions}).encode("utf-8")
