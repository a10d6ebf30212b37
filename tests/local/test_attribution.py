"""Overlays of a local endpoint's model (the try-it page's): drawn with ExplainModel's code from the served model
folder, and a clear TargetError wherever one cannot be drawn."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from artifacts import model_meta, write_model_dir
from inference import build_model
from PIL import Image

from pipelines.config import load_config
from pipelines.local.attribution import OverlayPainter
from pipelines.local.target import LocalTarget
from pipelines.targets import TargetError

CLASSES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("attribution") / "model"
    write_model_dir(folder, build_model("resnet18", len(CLASSES)), model_meta("resnet18", 32, CLASSES))
    return folder


def jpeg(size: tuple[int, int] = (500, 375), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.radial_gradient("L").resize(size).convert(mode).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_an_overlay_is_the_picture_beside_its_heat_map_captioned_with_the_prediction(model_dir: Path) -> None:
    painter = OverlayPainter("gradcam")
    try:
        overlay = Image.open(io.BytesIO(painter.paint(model_dir, jpeg())))
        again = Image.open(io.BytesIO(painter.paint(model_dir, jpeg((64, 64), "L"))))  # a grey one, same model
    finally:
        painter.close()
    assert overlay.format == "PNG" and overlay.size == (256, 144) == again.size  # 2 x 128-px panels + caption
    left, right = overlay.crop((0, 0, 128, 128)), overlay.crop((128, 0, 256, 128))
    assert left.tobytes() != right.tobytes()  # the heat map is drawn over the right panel
    assert len(painter._models) == 1  # the second image reused the loaded model


def test_what_cannot_be_drawn_says_why(model_dir: Path, tmp_path: Path) -> None:
    painter = OverlayPainter("gradcam")
    with pytest.raises(TargetError, match=r"model folder .*gone: redeploy the endpoint"):
        painter.paint(tmp_path / "deleted", jpeg())
    with pytest.raises(TargetError, match=r"no overlay for this image: .*cannot decode image"):
        painter.paint(model_dir, b"not an image")
    (tmp_path / "no-handler").mkdir()
    with pytest.raises(TargetError, match=r"cannot load the endpoint's model for its overlay: no model in"):
        painter.paint(tmp_path / "no-handler", jpeg())
    painter.close()


def test_the_local_target_refuses_unknown_and_multi_model_endpoints(tmp_path: Path) -> None:
    target = LocalTarget(load_config(environ={}), tmp_path / "ws")
    with pytest.raises(TargetError, match=r"no local endpoint 'pets'; known endpoints: none"):
        target.attribution_overlay("pets", jpeg())
    with target.store.transaction() as db:
        db.execute("INSERT INTO endpoints (name, arn, config_name, model_dir, entry_point, environment, port, status, "
                   "url, created, updated, multi_model_url) VALUES ('pets', 'arn', 'c', '/m', 'code/inference.py', "
                   "?, 1, 'Failed', 'http://127.0.0.1:1', 't', 't', 's3://b/models/')", (json.dumps({}),))
    with pytest.raises(TargetError, match=r"endpoint pets is multi-model: .*single-model endpoint"):
        target.attribution_overlay("pets", jpeg())
