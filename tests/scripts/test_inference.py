"""scripts/inference.py: the shared model definition, eval preprocessing and the serving handlers."""

from __future__ import annotations

import ast
import base64
import importlib.util
import inspect
import io
import json
import sys
from pathlib import Path

import inference
import numpy as np
import pytest
import torch
from inference import InferenceError
from PIL import Image
from torch import nn

SCRIPTS = Path(inference.__file__).parent
ARCH = "shufflenet_v2_x0_5"  # small and quick to build; any arch goes through the same code
IMAGE_SIZE = 32


# ---------------------------------------------------------------------------------------------- build_model
@pytest.mark.parametrize(
    ("arch", "head"),
    [("resnet18", "fc"), ("mobilenet_v3_small", "classifier.3"), ("squeezenet1_1", "classifier.1"),
     ("regnet_x_400mf", "fc"), ("shufflenet_v2_x0_5", "fc"), ("mnasnet0_5", "classifier.1")],
)
def test_build_model_replaces_the_head_of_small_archs_and_runs(arch: str, head: str) -> None:
    model = inference.build_model(arch, num_classes=7).eval()
    assert inference.find_head(model) == head
    with torch.inference_mode():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 7)


@pytest.mark.parametrize(
    ("arch", "head"),
    [("vit_b_16", "heads.head"), ("densenet121", "classifier"), ("convnext_tiny", "classifier.2"),
     ("efficientnet_b0", "classifier.1"), ("vgg11_bn", "classifier.6"), ("swin_t", "head"),
     ("inception_v3", "fc"), ("googlenet", "fc"), ("maxvit_t", "classifier.5"), ("alexnet", "classifier.6")],
)
def test_build_model_replaces_the_head_of_big_archs(arch: str, head: str) -> None:
    with torch.device("meta"):  # no memory, no init time: only the structure is checked
        model = inference.build_model(arch, num_classes=5)
    assert inference.find_head(model) == head
    layer = model.get_submodule(head)
    assert layer.out_features == 5
    assert not any(getattr(m, "out_features", None) == 1000 for m in model.modules())
    assert not getattr(model, "aux_logits", False)


def test_unknown_arch_names_close_matches() -> None:
    with pytest.raises(ValueError, match="did you mean resnet18"):
        inference.build_model("resnet_18", 3)
    with pytest.raises(ValueError, match="known: alexnet"):
        inference.build_model("no-such-net", 3)


def test_inference_imports_nothing_training_only() -> None:
    tree = ast.parse((SCRIPTS / "inference.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    from artifacts import SERVING_MODULES

    shipped_beside = {Path(module).stem for module in SERVING_MODULES} - {"inference"}
    third_party = imported - set(sys.stdlib_module_names) - shipped_beside
    assert third_party <= {"numpy", "torch", "torchvision", "PIL", "sagemaker_inference"}, third_party
    assert shipped_beside == {"rgb_conversion"}


def test_handler_signatures_match_the_serving_toolkit() -> None:
    # The toolkit passes an extra context argument to any handler with one parameter more.
    arity = {name: len(inspect.signature(getattr(inference, name)).parameters)
             for name in ("model_fn", "input_fn", "predict_fn", "output_fn")}
    assert arity == {"model_fn": 1, "input_fn": 2, "predict_fn": 2, "output_fn": 2}


# ---------------------------------------------------------------------------------------------- preprocessing
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_any_image_mode_becomes_rgb_at_the_model_size(mode: str) -> None:
    image = Image.new(mode, (40, 24))
    tensor = inference.image_to_uint8(image, 16)
    assert tensor.shape == (3, 16, 16) and tensor.dtype == torch.uint8


def test_transparency_is_composited_on_white_and_16_bit_is_rescaled() -> None:
    transparent = inference.image_to_uint8(Image.new("RGBA", (4, 4), (0, 0, 0, 0)), 4)
    assert torch.equal(transparent, torch.full((3, 4, 4), 255, dtype=torch.uint8))
    deep = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert torch.equal(inference.image_to_uint8(deep, 4), torch.full((3, 4, 4), 255, dtype=torch.uint8))


def test_preprocess_normalizes_with_the_given_mean_and_std() -> None:
    batch = inference.preprocess([Image.new("RGB", (8, 8), (255, 0, 128))], 8, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert batch.shape == (1, 3, 8, 8)
    assert torch.allclose(batch[0, :, 0, 0], torch.tensor([1.0, -1.0, 128 / 255 * 2 - 1]), atol=1e-6)


# ---------------------------------------------------------------------------------------------- handlers
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, small_digits_dir: Path) -> Path:
    """A model dir laid out as train.py writes it (untrained weights: the tests check plumbing, not accuracy)."""
    from artifacts import model_meta, write_model_dir

    classes = sorted(p.name for p in small_digits_dir.iterdir() if p.is_dir())
    out = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    write_model_dir(out, inference.build_model(ARCH, len(classes)), model_meta(ARCH, IMAGE_SIZE, classes))
    return out


@pytest.fixture(scope="module")
def loaded(model_dir: Path) -> inference.LoadedModel:
    return inference.model_fn(str(model_dir))


def image_bytes(path: Path, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def digit_png(small_digits_dir: Path) -> bytes:
    return next((small_digits_dir / "3-three").glob("*.png")).read_bytes()


def serve(body: bytes | str, content_type: str, loaded: inference.LoadedModel, accept: str = "application/json"):
    return json.loads(inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), loaded), accept))


def test_model_fn_loads_the_model_in_eval_mode_with_its_meta(loaded: inference.LoadedModel) -> None:
    assert not loaded.model.training
    assert loaded.meta["arch"] == ARCH and loaded.meta["image_size"] == IMAGE_SIZE
    assert loaded.class_names[:2] == ["0-zero", "1-one"]


@pytest.mark.parametrize("content_type", ["application/x-image", "image/png", "image/jpeg", "IMAGE/PNG; q=1"])
def test_raw_image_content_types(content_type: str, loaded, small_digits_dir: Path) -> None:
    path = next((small_digits_dir / "3-three").glob("*.png"))
    body = image_bytes(path, "JPEG" if "jpeg" in content_type else "PNG")
    result = serve(body, content_type, loaded)
    (prediction,) = result["predictions"]
    top = prediction["top_k"]
    assert len(top) == inference.DEFAULT_TOP_K
    assert all(entry["label"] in loaded.class_names for entry in top)
    probabilities = [entry["probability"] for entry in top]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001


def test_json_single_image_as_text_body(loaded, digit_png: bytes) -> None:
    # The toolkit decodes application/json bodies to str before input_fn sees them.
    body = json.dumps({"image": base64.b64encode(digit_png).decode(), "top_k": 3})
    result = serve(body, "application/json; charset=utf-8", loaded)
    assert len(result["predictions"]) == 1 and len(result["predictions"][0]["top_k"]) == 3


def test_json_batch_keeps_order_and_matches_single_requests(loaded, small_digits_dir: Path) -> None:
    paths = [next((small_digits_dir / name).glob("*.png")) for name in ("0-zero", "5-five", "9-nine")]
    encoded = [base64.b64encode(p.read_bytes()).decode() for p in paths]
    batch = serve(json.dumps({"images": encoded, "top_k": 100}).encode(), "application/json", loaded)
    assert len(batch["predictions"]) == 3
    assert all(len(p["top_k"]) == 10 for p in batch["predictions"])  # top_k is capped at the class count
    for path, prediction in zip(paths, batch["predictions"], strict=True):
        single = serve(path.read_bytes(), "image/png", loaded)["predictions"][0]["top_k"][0]
        assert prediction["top_k"][0]["label"] == single["label"]
        assert prediction["top_k"][0]["probability"] == pytest.approx(single["probability"], abs=1e-5)


def test_input_fn_returns_a_normalized_batch_tensor(loaded, digit_png: bytes) -> None:
    data = inference.input_fn(digit_png, "image/png")
    assert data["images"].shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE) and data["images"].dtype == torch.float32


@pytest.mark.parametrize("accept", [None, "", "*/*", "application/json", "text/html, application/*;q=0.8"])
def test_accept_headers_that_allow_json(accept, loaded, digit_png: bytes) -> None:
    assert "predictions" in serve(digit_png, "image/png", loaded, accept=accept)


def error_of(call) -> InferenceError:
    with pytest.raises(InferenceError) as info:
        call()
    assert isinstance(info.value, Exception)
    return info.value


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"a,b", "text/csv", 415, "application/x-image, image/jpeg, image/png, application/json"),
        (b"", "", 415, "unsupported content type"),
        (b"not an image", "image/png", 400, "not a format Pillow reads (12 bytes starting b'not an i'); send a JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "application/x-image", 400, "cannot decode image"),
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, 'either "image" or "images"'),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "nested too deeply"),
        (b'{"image": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json", 400, "nested too deeply"),
        (b'{"image": "aGk=", "top_k": ' + b"9" * 5000 + b"}", "application/json", 400, "not valid JSON"),
        (b'{"image": "a", "images": ["b"]}', "application/json", 400, 'either "image" or "images"'),
        (b'{"images": []}', "application/json", 400, "non-empty list"),
        (b'{"image": "@@not base64@@"}', "application/json", 400, "not valid base64"),
        (b'{"image": 42}', "application/json", 400, "base64 string"),
        (json.dumps({"image": base64.b64encode(b"junk").decode()}).encode(), "application/json", 400, "cannot decode"),
        (b'{"image": "aGk=", "top_k": 0}', "application/json", 400, "top_k"),
        (b'{"image": "aGk=", "top_k": true}', "application/json", 400, "top_k"),
        (json.dumps({"images": ["aGk="] * 65}).encode(), "application/json", 413, "at most 64"),
        ("text body", "image/png", 400, "image's bytes"),
    ],
)
def test_bad_requests_get_their_status(body, content_type: str, status: int, message: str, loaded) -> None:
    error = error_of(lambda: inference.input_fn(body, content_type))
    assert error.status == status and error.status_code == status
    assert message in error.message


def test_a_corrupt_image_in_a_batch_is_a_400_naming_it(loaded, digit_png: bytes) -> None:
    body = json.dumps({"images": [base64.b64encode(digit_png).decode(), "aGk="]})
    assert error_of(lambda: inference.input_fn(body, "application/json")).status == 400


def test_payload_over_the_limit_is_413(monkeypatch, loaded, digit_png: bytes) -> None:
    monkeypatch.setenv("INFERENCE_MAX_PAYLOAD_BYTES", str(len(digit_png) - 1))
    error = error_of(lambda: inference.input_fn(digit_png, "image/png"))
    assert error.status == 413 and str(len(digit_png)) in error.message


def test_unsupported_accept_is_406(loaded, digit_png: bytes) -> None:
    prediction = inference.predict_fn(inference.input_fn(digit_png, "image/png"), loaded)
    error = error_of(lambda: inference.output_fn(prediction, "text/csv"))
    assert error.status == 406 and "application/json" in error.message


def test_artifact_code_serves_on_its_own(model_dir: Path, digit_png: bytes) -> None:
    """model.tar.gz's code/inference.py, imported fresh as the serving container does, finds the meta beside it
    even before model_fn ran, and predicts class names."""
    spec = importlib.util.spec_from_file_location("artifact_inference", model_dir / "code" / "inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = module.input_fn(digit_png, "application/x-image")
    assert data["images"].shape[-1] == IMAGE_SIZE
    result = json.loads(module.output_fn(module.predict_fn(data, module.model_fn(str(model_dir))), "*/*"))
    assert result["predictions"][0]["top_k"][0]["label"] in json.loads((model_dir / "model_meta.json").read_text())[
        "class_names"
    ]


def test_model_fn_rejects_a_meta_without_contract_keys(tmp_path: Path) -> None:
    (tmp_path / "model_meta.json").write_text(json.dumps({"arch": ARCH}))
    with pytest.raises(ValueError, match="lacks keys"):
        inference.model_fn(str(tmp_path))


def test_predict_fn_takes_a_bare_tensor(loaded) -> None:
    prediction = inference.predict_fn(torch.zeros(3, IMAGE_SIZE, IMAGE_SIZE), loaded)
    assert len(prediction) == 1 and len(prediction[0]) == inference.DEFAULT_TOP_K
    assert isinstance(loaded.model, nn.Module)
