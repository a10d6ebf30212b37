"""Loading a trained model artifact the way serving does: shared by EvaluateModel and ExplainModel.

``model.tar.gz`` is extracted after every member is checked (no absolute paths, no ``..``, no links, bounded size),
the model is loaded through the artifact's own ``code/inference.py`` (``model_fn``) and images go through its
``input_fn`` and ``preprocess``, so what is evaluated or explained is what the endpoint serves. Imports nothing from
the project: in a SageMaker processing job it arrives as a "modules" input beside the script that imports it.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

HANDLER_RELPATH = Path("code") / "inference.py"
MODEL_ARCHIVE = "model.tar.gz"
MAX_MODEL_BYTES = 8 * 1024**3  # uncompressed; far above any image classifier, low enough to stop a tar bomb
MAX_ARCHIVE_MEMBERS = 10_000
# Any image type the handler accepts; evaluation must not depend on the file extension choosing a decoder.
IMAGE_CONTENT_TYPE = "application/x-image"


class ModelInputError(Exception):
    """Bad input (the model artifact, its handler, an image it cannot take): the script reports it as one line on
    stderr and exits 2."""


EvaluationError = ModelInputError  # the name evaluate.py and its callers have always caught


def safe_extract_tar(archive: Path, dest: Path, max_bytes: int = MAX_MODEL_BYTES,
                     max_members: int = MAX_ARCHIVE_MEMBERS) -> None:
    """Extracts ``archive`` into ``dest`` after checking every member; nothing is written if any member is unsafe."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            check_tar_members(members, archive.name, max_bytes, max_members)
            dest.mkdir(parents=True, exist_ok=True)
            # The "data" filter (Python >= 3.11.4) re-checks paths and strips odd modes: defence in depth.
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest, members=members, **extra)
    except EvaluationError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:  # zlib errors surface as OSError/EOFError
        raise EvaluationError(f"corrupt model archive {archive}: {type(exc).__name__}: {exc}") from exc


def check_tar_members(members: Sequence[tarfile.TarInfo], label: str, max_bytes: int, max_members: int) -> None:
    if len(members) > max_members:
        raise EvaluationError(f"unsafe model archive {label}: {len(members)} members (limit {max_members})")
    total = 0
    for member in members:
        name = member.name.replace("\\", "/")  # a tar made on Windows may use backslashes: "..\\x" still escapes
        problem = ("absolute path" if name.startswith("/") or name[1:2] == ":" else
                   "'..' escapes the archive" if ".." in PurePosixPath(name).parts else
                   "links are not allowed" if member.issym() or member.islnk() else
                   None if member.isfile() or member.isdir() else "not a regular file or folder")
        if problem:
            raise EvaluationError(f"unsafe member {member.name!r} in model archive {label}: {problem}")
        total += member.size
        if total > max_bytes:
            raise EvaluationError(f"unsafe model archive {label}: expands to more than {max_bytes} bytes")


def resolve_model_dir(model_dir: Path, work_dir: Path) -> Path:
    """The folder holding ``code/inference.py``: ``model_dir`` itself, or its ``model.tar.gz`` extracted."""
    if not model_dir.is_dir():
        raise EvaluationError(f"model dir {model_dir} does not exist")
    archive = model_dir / MODEL_ARCHIVE
    if archive.is_file():
        root = work_dir / "model"
        safe_extract_tar(archive, root)
        if not (root / HANDLER_RELPATH).is_file():
            raise EvaluationError(f"{archive} has no {HANDLER_RELPATH.as_posix()}: not a model artifact")
        return root
    if (model_dir / HANDLER_RELPATH).is_file():
        return model_dir
    found = sorted(p.name for p in model_dir.iterdir())
    raise EvaluationError(f"no model in {model_dir}: expected {MODEL_ARCHIVE} or extracted model files with "
                          f"{HANDLER_RELPATH.as_posix()}; found {found[:10] or 'nothing'}")


@dataclass
class EvalModel:
    net: Any  # torch.nn.Module, or anything mapping an NCHW batch to logits
    class_names: list[str]
    preprocess: Callable[[bytes], Any]  # raw image bytes -> CHW tensor
    meta: dict = field(default_factory=dict)  # model_meta.json: image_size, mean, std (ExplainModel un-normalises)


def import_handler(path: Path) -> Any:
    # A private module name: the project's own scripts/inference.py may already be imported as "inference".
    name = f"_evaluated_model_inference_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EvaluationError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))  # the handler may import helpers shipped beside it, as in serving
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise EvaluationError(f"importing the model's {path.name} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.parent))
    return module


def unwrap_loaded(loaded: Any, model_root: Path) -> tuple[Any, dict]:
    """The network and its meta from whatever ``model_fn`` returned: a module, a dict, or an object with fields."""
    if isinstance(loaded, dict):
        net, meta = loaded.get("model"), loaded.get("meta")
    else:  # a wrapper with .model/.meta (inference.py's LoadedModel), or the network itself
        wrapped = hasattr(loaded, "model") and callable(loaded.model) and not hasattr(loaded, "forward")
        net, meta = (loaded.model if wrapped else loaded), getattr(loaded, "meta", None)
    meta = dict(vars(meta)) if meta is not None and not isinstance(meta, dict) else meta
    if meta is None:
        meta_path = model_root / "model_meta.json"
        if not meta_path.is_file():
            raise EvaluationError("model_fn returned no meta and the model has no model_meta.json")
        meta = json.loads(meta_path.read_text())
    if not callable(net):
        raise EvaluationError(f"model_fn returned no callable model (got {type(loaded).__name__})")
    return net, meta


def load_model(model_root: Path) -> EvalModel:
    module = import_handler(model_root / HANDLER_RELPATH)
    if not callable(getattr(module, "model_fn", None)):
        raise EvaluationError(f"the model's {HANDLER_RELPATH.as_posix()} has no model_fn")
    try:
        loaded = module.model_fn(str(model_root))
    except Exception as exc:
        raise EvaluationError(f"model_fn failed to load the model: {type(exc).__name__}: {exc}") from exc
    net, meta = unwrap_loaded(loaded, model_root)
    class_names = meta.get("class_names")
    if not class_names or not all(isinstance(c, str) for c in class_names):
        raise EvaluationError("the model's meta has no class_names list")
    if hasattr(net, "eval"):
        net.eval()
    return EvalModel(net=net, class_names=list(class_names), preprocess=make_preprocess(module, meta), meta=meta)


def make_preprocess(module: Any, meta: dict) -> Callable[[bytes], Any]:
    """Image bytes -> CHW tensor through the handler's own code wherever it has some: ``input_fn`` decodes (serving's
    decoder, errors and limits), its ``preprocess(images, image_size, mean, std)`` transforms."""
    input_fn, transform = getattr(module, "input_fn", None), getattr(module, "preprocess", None)
    transform = transform if callable(transform) else default_transform
    size, mean, std = meta.get("image_size", 224), meta.get("mean", [0.0] * 3), meta.get("std", [1.0] * 3)

    def apply(body: bytes) -> Any:
        data = input_fn(body, IMAGE_CONTENT_TYPE) if callable(input_fn) else open_image(body)
        images = data.get("images") if isinstance(data, dict) else getattr(data, "images", None)
        if images is not None:  # a request object: one body, one image
            data = images[0]
        if hasattr(data, "dim"):  # the handler already made the model input
            return data[0] if data.dim() == 4 else data
        if not hasattr(data, "convert"):
            raise EvaluationError(f"the model's input_fn returned {type(data).__name__}, not an image or a tensor")
        return transform([data], size, mean, std)[0]
    return apply


def open_image(body: bytes) -> Any:
    from PIL import Image

    image = Image.open(io.BytesIO(body))
    image.load()
    return image


def default_transform(images: list, size: int | Sequence[int], mean: Sequence[float], std: Sequence[float]) -> Any:
    """The contract's eval preprocessing, for handlers without their own: RGB, resize, scale to 0..1, normalise."""
    import torch
    from PIL import Image

    width, height = (size, size) if isinstance(size, int) else (size[1], size[0])
    mean_a, std_a = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    arrays = [(np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
               / 255.0 - mean_a) / std_a for image in images]
    return torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).copy())
