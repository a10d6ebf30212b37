"""The serving app in-process (starlette's TestClient): SageMaker's /ping and /invocations over a model's handlers.

`write_tiny_model` (also used by test_endpoints.py) makes a hand-made artifact: a 3->N linear layer over an image's
mean colour (in torch, or in plain Python for servers that must start fast) and a minimal `code/inference.py`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import sys
import warnings
from pathlib import Path

import pytest
from PIL import Image

from pipelines.local.inference_handlers import InferenceHandlers, ModelLoadError, import_entry_point
from pipelines.local.serving import create_app, parse_args

with warnings.catch_warnings():  # starlette 1.x nags about httpx, which its TestClient still uses fine
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"

TINY_INFERENCE = '''
"""A minimal serving entry point for tests: mean colour -> linear layer -> label."""
import io
import json
from pathlib import Path

import torch
from PIL import Image


class InferenceError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def model_fn(model_dir):
    meta = json.loads((Path(model_dir) / "model_meta.json").read_text())
    net = torch.nn.Linear(3, len(meta["class_names"]))
    weights = json.loads((Path(model_dir) / "weights.json").read_text())
    net.load_state_dict({name: torch.tensor(value) for name, value in weights.items()})
    return net.eval(), meta["class_names"]


def input_fn(body, content_type):
    if content_type == "application/json":
        payload = json.loads(body)
        if payload.get("explode"):
            raise RuntimeError("the model exploded (on purpose)")
        return torch.tensor(payload["rgb"], dtype=torch.float32)
    if content_type.startswith("image/"):
        try:
            image = Image.open(io.BytesIO(body)).convert("RGB")
        except Exception as exc:
            raise InferenceError(400, f"cannot decode image: {exc}") from exc
        return torch.tensor(list(image.getdata()), dtype=torch.float32).mean(0) / 255
    raise InferenceError(415, f"unsupported content type {content_type!r}")


def predict_fn(data, model):
    net, classes = model
    with torch.no_grad():
        return classes[int(net(data.view(1, 3)).argmax())]


def output_fn(prediction, accept):
    return json.dumps({"predictions": [{"top_k": [{"label": prediction, "probability": 1.0}]}]})
'''

PLAIN_INFERENCE = '''
"""The same model in plain Python: no torch import, so its server is up in well under a second."""
import io
import json
from pathlib import Path

from PIL import Image


def model_fn(model_dir):
    meta = json.loads((Path(model_dir) / "model_meta.json").read_text())
    return json.loads((Path(model_dir) / "weights.json").read_text()), meta["class_names"]


def input_fn(body, content_type):
    pixels = list(Image.open(io.BytesIO(body)).convert("RGB").resize((4, 4)).getdata())
    return [sum(pixel[channel] for pixel in pixels) / len(pixels) / 255 for channel in range(3)]


def predict_fn(data, model):
    weights, classes = model
    scores = [sum(w * x for w, x in zip(row, data)) + b for row, b in zip(weights["weight"], weights["bias"])]
    return classes[scores.index(max(scores))]


def output_fn(prediction, accept):
    return json.dumps({"predictions": [{"top_k": [{"label": prediction, "probability": 1.0}]}]})
'''

BROKEN_INFERENCE = '''
def model_fn(model_dir):
    raise RuntimeError("weights.json is corrupt: a deliberately broken model")
'''
ENTRY_POINTS = {"torch": TINY_INFERENCE, "plain": PLAIN_INFERENCE, "broken": BROKEN_INFERENCE}


def write_tiny_model(model_dir: Path, class_names: list[str], kind: str = "torch") -> Path:
    """A hand-made artifact (`kind` torch, plain or broken) that always predicts the first of `class_names`."""
    (model_dir / "code").mkdir(parents=True, exist_ok=True)
    (model_dir / "code" / "inference.py").write_text(ENTRY_POINTS[kind])
    (model_dir / "model_meta.json").write_text(json.dumps({"class_names": class_names}))
    bias = [10.0] + [0.0] * (len(class_names) - 1)  # the first class wins, whatever the image
    weights = {"weight": [[0.0, 0.0, 0.0] for _ in class_names], "bias": bias}
    (model_dir / "weights.json").write_text(json.dumps(weights))
    return model_dir


def png_bytes(color: tuple[int, int, int] = (200, 30, 30), fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 12), color).save(buffer, format=fmt)
    return buffer.getvalue()


def labels(response) -> list[str]:
    return [entry["label"] for prediction in response.json()["predictions"] for entry in prediction["top_k"]]


@pytest.fixture(scope="module")
def tiny_client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    model_dir = write_tiny_model(tmp_path_factory.mktemp("tiny") / "model", ["cat", "dog"])
    return TestClient(create_app(InferenceHandlers.load(model_dir)))


@pytest.fixture(scope="module", autouse=True)
def _restore_import_state():
    """Loading an entry point in-process puts its code dir on sys.path (as the container does): undo it after."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name.startswith("sagemaker_entry_point_") or name == "helper":
            del sys.modules[name]


@pytest.fixture(scope="module")
def real_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's own scripts/inference.py over an untrained mobilenet_v3_small (the files train.py writes)."""
    import torch

    inference = import_entry_point(SCRIPTS / "inference.py")  # by path: `inference` on sys.path may be a test's
    model_dir = tmp_path_factory.mktemp("real") / "model"
    (model_dir / "code").mkdir(parents=True)
    classes = ["apple", "banana", "cherry"]
    torch.save(inference.build_model("mobilenet_v3_small", len(classes)).state_dict(), model_dir / "model.pth")
    meta = {"arch": "mobilenet_v3_small", "num_classes": len(classes), "class_names": classes, "image_size": 16,
            "mean": list(inference.IMAGENET_MEAN), "std": list(inference.IMAGENET_STD), "framework": "pytorch",
            "torch_version": torch.__version__}
    (model_dir / "model_meta.json").write_text(json.dumps(meta))
    shutil.copyfile(SCRIPTS / "inference.py", model_dir / "code" / "inference.py")
    return model_dir


@pytest.fixture(scope="module")
def real_client(real_model_dir: Path) -> TestClient:
    return TestClient(create_app(InferenceHandlers.load(real_model_dir), max_body_bytes=1024 * 1024))


def test_ping_answers_200_once_loaded_and_503_before(tiny_client: TestClient) -> None:
    assert tiny_client.get("/ping").status_code == 200
    starting = TestClient(create_app(tiny_client.app.state.serving.handlers, ready=False))
    assert starting.get("/ping").status_code == 503


@pytest.mark.parametrize("content_type, fmt", [("image/png", "PNG"), ("application/x-image", "PNG"),
                                               ("image/jpeg", "JPEG")])
def test_images_of_each_content_type_get_class_labels(real_client: TestClient, content_type: str, fmt: str) -> None:
    response = real_client.post("/invocations", content=png_bytes(fmt=fmt),
                                headers={"Content-Type": content_type, "Accept": "application/json"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert set(labels(response)) == {"apple", "banana", "cherry"}  # top 5 of 3 classes: all of them


def test_json_with_base64_images_gets_one_prediction_per_image(real_client: TestClient) -> None:
    encoded = base64.b64encode(png_bytes()).decode()
    response = real_client.post("/invocations", json={"images": [encoded, encoded], "top_k": 1})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2 and all(len(p["top_k"]) == 1 for p in predictions)


@pytest.mark.parametrize("content_type, body, status, words", [
    ("text/csv", b"1,2,3", 415, "unsupported content type"),
    ("image/png", b"not a png at all", 400, "cannot decode image"),
    ("application/json", b"{not json", 400, "not valid JSON"),
    ("application/json", b"[" * 5000 + b"]" * 5000, 400, "nested too deeply"),
    ("application/json", json.dumps({"images": ["aGk="] * 65}).encode(), 413, "at most 64"),
])
def test_handler_errors_answer_their_status_as_json(real_client: TestClient, content_type: str, body: bytes,
                                                    status: int, words: str) -> None:
    response = real_client.post("/invocations", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert words in response.json()["error"]


def test_accept_the_model_cannot_produce_is_406(real_client: TestClient) -> None:
    response = real_client.post("/invocations", content=png_bytes(),
                                headers={"Content-Type": "image/png", "Accept": "text/csv"})
    assert response.status_code == 406


def test_an_exception_is_a_500_and_the_app_answers_on(tiny_client: TestClient) -> None:
    response = tiny_client.post("/invocations", json={"explode": True})
    assert response.status_code == 500
    assert "RuntimeError: the model exploded" in response.json()["error"]
    assert tiny_client.get("/ping").status_code == 200
    ok = tiny_client.post("/invocations", content=png_bytes(), headers={"Content-Type": "image/png"})
    assert ok.status_code == 200 and labels(ok) == ["cat"]


def _asgi_post(app, headers: list[tuple[bytes, bytes]], chunks: int, chunk_size: int) -> tuple[int, int]:
    """Drives the ASGI app directly: (response status, how many body chunks it pulled of `chunks`)."""
    pulled, sent = 0, []

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * chunk_size, "more_body": pulled < chunks}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": headers, "query_string": b"",
             "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1)}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], pulled


def test_a_body_over_the_limit_is_413_before_it_is_all_read(tiny_client: TestClient) -> None:
    app = create_app(tiny_client.app.state.serving.handlers, max_body_bytes=1000)
    declared = [(b"content-type", b"image/png"), (b"content-length", b"100000")]
    assert _asgi_post(app, declared, chunks=100, chunk_size=1000) == (413, 0)  # refused on the header alone
    chunked = [(b"content-type", b"image/png")]
    assert _asgi_post(app, chunked, chunks=100, chunk_size=600) == (413, 2)  # refused at the chunk over the limit


def test_default_handlers_and_helper_modules_of_the_entry_point(tmp_path: Path) -> None:
    code = tmp_path / "model" / "code"
    code.mkdir(parents=True)
    (code / "helper.py").write_text("def double(x):\n    return [2 * v for v in x]\n")
    (code / "inference.py").write_text("import helper\n\ndef model_fn(model_dir):\n    return helper.double\n")
    first, second = InferenceHandlers.load(tmp_path / "model"), InferenceHandlers.load(tmp_path / "model")
    assert first.module is not second.module and first.module.__name__ in sys.modules
    client = TestClient(create_app(first))
    assert client.post("/invocations", json=[1, 2]).json() == [2, 4]
    assert client.post("/invocations", content=b"1,2", headers={"Content-Type": "text/csv"}).status_code == 415


def test_an_entry_point_without_model_fn_does_not_load(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text("x = 1\n")
    with pytest.raises(ModelLoadError, match="no model_fn"):
        InferenceHandlers.load(tmp_path)
    with pytest.raises(ModelLoadError, match="not found"):
        InferenceHandlers.load(tmp_path, "code/serve.py")


def test_the_server_listens_on_loopback_only() -> None:
    assert parse_args(["--model-dir", "m", "--port", "1"]).host == "127.0.0.1"
    with pytest.raises(SystemExit):
        parse_args(["--model-dir", "m", "--port", "1", "--host", "0.0.0.0"])


def test_a_multi_model_server_is_told_its_cache_and_budget(capsys) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--model-dir", "m", "--port", "1", "--multi-model", "--cache-dir", "c"])
    assert "--multi-model needs --cache-dir and --memory-budget-mb" in capsys.readouterr().err
    args = parse_args(["--model-dir", "m", "--port", "1", "--multi-model", "--cache-dir", "c",
                       "--memory-budget-mb", "64"])
    assert (args.multi_model, args.memory_budget_mb) == (True, 64)
