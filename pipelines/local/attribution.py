"""Attribution overlays of a local endpoint's model, for the try-it page (`pipeline.py ui`).

The endpoint's server answers only what the serving contract asks (labels, probabilities); a map of where the model
looked needs gradients, so this loads the same extracted model here, through ExplainModel's own code
(scripts/explain.py: the model's `model_fn`/`input_fn`, `[explain] method` as ExplainModel runs it, the same overlay
picture), and explains the class it predicts. Loaded models are kept per model folder: a page's later drops cost
one pass.
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pipelines.project_files import SCRIPTS_DIR
from pipelines.target_base import TargetError

KEPT_MODELS = 2


def explain_module() -> ModuleType:
    """scripts/explain.py, imported by path once (it puts scripts/ on sys.path for its own imports, as in its job)."""
    name = "_try_it_explain_script"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS_DIR / "explain.py")
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {SCRIPTS_DIR / 'explain.py'}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@dataclass
class LoadedForOverlays:
    model: Any  # scripts/model_loading.EvalModel
    attributor: Any = None  # explain.Attributor, bound on the first image (Grad-CAM finds its layer, occlusion its
    # window, from it)


class OverlayPainter:
    """`paint(model_dir, image_bytes)` -> a PNG: the image as the model saw it beside its attribution heat map
    (`method`: one of explain.METHODS), captioned with the predicted class and its probability."""

    def __init__(self, method: str) -> None:
        self.method = method
        self._models: dict[tuple[str, int], LoadedForOverlays] = {}
        self._lock = threading.Lock()  # one image at a time: Grad-CAM's hooks on the shared model are not reentrant
        self._work = tempfile.TemporaryDirectory(prefix="try-it-models-")
        self._extractions = itertools.count()  # a folder per archive extracted, never reused after an eviction

    def close(self) -> None:
        self._work.cleanup()

    def paint(self, model_dir: Path, body: bytes) -> bytes:
        explain = explain_module()
        with self._lock:
            loaded = self._model(explain, model_dir)
            try:
                return _overlay(explain, loaded, body, self.method)
            except Exception as exc:  # the model's own input_fn and layers: whatever they raise is about this image
                raise TargetError(f"no overlay for this image: {exc}") from None

    def _model(self, explain: ModuleType, model_dir: Path) -> LoadedForOverlays:
        if not model_dir.is_dir():
            raise TargetError(f"the endpoint's model folder {model_dir} is gone: redeploy the endpoint")
        key = (str(model_dir.resolve()), model_dir.stat().st_mtime_ns)
        if key not in self._models:
            try:
                root = explain.resolve_model_dir(model_dir, Path(self._work.name) / str(next(self._extractions)))
                model = explain.load_model(root)
            except explain.ModelInputError as exc:
                raise TargetError(f"cannot load the endpoint's model for its overlay: {exc}") from None
            while len(self._models) >= KEPT_MODELS:
                self._models.pop(next(iter(self._models)))
            self._models[key] = LoadedForOverlays(model)
        return self._models[key]


def _overlay(explain: ModuleType, loaded: LoadedForOverlays, body: bytes, method: str) -> bytes:
    import torch

    model = loaded.model
    tensor = model.preprocess(body)
    batch = (tensor.unsqueeze(0) if tensor.dim() == 3 else tensor).to(explain.model_device(model.net))
    with torch.no_grad():
        probabilities = torch.softmax(model.net(batch).float(), dim=1)[0]
    predicted = int(probabilities.argmax())
    loaded.attributor = loaded.attributor or explain.Attributor(model.net, method, batch)
    heat = explain.normalise(loaded.attributor.maps(batch, [predicted])[0])
    picture = explain.seen_picture(model, batch[0].detach().cpu().numpy())
    caption = f"{model.class_names[predicted]} {float(probabilities[predicted]):.2f}"
    buffer = io.BytesIO()
    explain.overlay_png(picture, heat, caption).save(buffer, format="PNG")
    return buffer.getvalue()
