"""The model dir train.py writes, served by the code SageMaker's PyTorch inference container really runs:
`sagemaker-pytorch-inference`'s HandlerService over `sagemaker-inference`'s Transformer (both from PyPI, the
`containers` extra), with a TorchServe-shaped context.

As in the container, the worker process has only `<model dir>/code` on PYTHONPATH (the toolkit's torchserve.py
puts it there): nothing of this repository, so the artifact must carry every module its handler imports.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ARCH = "shufflenet_v2_x0_5"
# Runs in the worker: one HandlerService, initialized once, every case through handle() as TorchServe calls it.
WORKER = r'''
import json, sys
from sagemaker_pytorch_serving_container.handler_service import HandlerService

class RequestProcessor:
    def __init__(self, headers):
        self.headers = headers
    def get_request_properties(self):
        return self.headers

class Context:
    """The part of TorchServe's ts.context.Context the toolkit uses."""
    def __init__(self, model_dir):
        self.system_properties = {"model_dir": model_dir, "gpu_id": None}
        self.request_processor = [RequestProcessor({})]
        self.status, self.content_type = 200, None
    def set_response_status(self, code=200, phrase="", idx=0):
        self.status = code
    def set_response_content_type(self, idx, value):
        self.content_type = value

model_dir, cases = sys.argv[1], json.load(sys.stdin)
context, service = Context(model_dir), HandlerService()
service.initialize(context)
answers = []
for case in cases:
    context.request_processor = [RequestProcessor(case["headers"])]
    context.status, context.content_type = 200, None
    body = case["body"].encode("latin-1")
    [response] = service.handle([{"body": body}], context)
    text = response.decode() if isinstance(response, bytes) else str(response)
    answers.append({"status": context.status, "content_type": context.content_type, "body": text[:2000]})
print(json.dumps(answers))
'''


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from artifacts import model_meta, write_model_dir
    from inference import build_model

    out = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    write_model_dir(out, build_model(ARCH, 3), model_meta(ARCH, 32, ["cat", "dog", "fox"]))
    return out


def serve(model_dir: Path, cases: list[tuple[bytes, dict[str, str]]]) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(model_dir / "code")
    done = subprocess.run([sys.executable, "-c", WORKER, str(model_dir)], env=env, cwd=model_dir,
                          input=json.dumps([{"body": body.decode("latin-1"), "headers": headers}
                                            for body, headers in cases]),
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_documented_content_type_and_every_bad_input_gets_the_status_our_handlers_mean(model_dir) -> None:
    photo = Image.effect_noise((64, 48), 40).convert("RGB")
    png, jpeg = encoded(photo, "PNG"), encoded(photo, "JPEG")
    b64 = base64.b64encode(png).decode()
    cases = {
        "png": (png, {"Content-Type": "image/png"}, 200),
        "jpeg": (jpeg, {"Content-Type": "image/jpeg", "Accept": "application/json"}, 200),
        "x-image": (png, {"content-type": "application/x-image", "Accept": "*/*"}, 200),
        "json one": (json.dumps({"image": b64}).encode(), {"Content-Type": "application/json"}, 200),
        "json batch": (json.dumps({"images": [b64, b64], "top_k": 2}).encode(),
                       {"Content-Type": "application/json"}, 200),
        "garbage image": (b"not an image at all", {"Content-Type": "image/png"}, 400),
        "bad json": (b"{not json", {"Content-Type": "application/json"}, 400),
        "deep json": (b"[" * 5000 + b"]" * 5000, {"Content-Type": "application/json"}, 400),
        "bad base64": (b'{"image": "@@@"}', {"Content-Type": "application/json"}, 400),
        "too many images": (json.dumps({"images": [b64] * 65}).encode(), {"Content-Type": "application/json"}, 413),
        "csv": (b"1,2,3", {"Content-Type": "text/csv"}, 415),
        "bad accept": (png, {"Content-Type": "image/png", "Accept": "text/csv"}, 406),
    }
    responses = serve(model_dir, [(body, headers) for body, headers, _ in cases.values()])
    answers = dict(zip(cases, responses, strict=True))
    statuses = {name: answer["status"] for name, answer in answers.items()}
    assert statuses == {name: status for name, (_, _, status) in cases.items()}, answers
    ok = json.loads(answers["json batch"]["body"])
    assert len(ok["predictions"]) == 2 and all(len(p["top_k"]) == 2 for p in ok["predictions"])
    assert {answers[name]["content_type"] for name in ("png", "jpeg", "x-image")} == {"application/json"}
    assert "nested too deeply" in answers["deep json"]["body"]
    assert "unsupported content type" in answers["csv"]["body"]


def test_the_shipped_requirements_install_nothing_into_the_inference_image(model_dir: Path) -> None:
    """The image already has torch, torchvision, numpy and Pillow; a requirement here would pull a second torch."""
    requirements = model_dir / "code" / "requirements.txt"
    lines = [line.split("#")[0].strip() for line in requirements.read_text().splitlines()]
    assert [line for line in lines if line] == []
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--report", "-",
                           "-q", "-r", str(requirements)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["install"] == []


def test_in_multi_model_mode_each_published_model_loads_its_own_code_and_answers_with_its_own_classes(
        model_dir: Path, tmp_path: Path) -> None:
    """SAGEMAKER_MULTI_MODEL=true is how the container runs behind a `Mode: MultiModel` endpoint: TorchServe gives
    each model its own worker over `/opt/ml/models/<hash>/model`, and the toolkit's HandlerService (not PYTHONPATH)
    puts that model's code/ on sys.path. Two artifacts that differ only in their class names answer with their own."""
    import shutil

    photo = encoded(Image.effect_noise((64, 48), 40).convert("RGB"), "PNG")
    request = json.dumps([{"body": photo.decode("latin-1"), "headers": {"Content-Type": "image/png"}}])
    workers = {}
    for key, classes in (("v1", ["cat", "dog", "fox"]), ("v2", ["oak", "elm", "ash"])):
        served = tmp_path / "opt_ml" / "models" / f"hash-{key}" / "model"
        shutil.copytree(model_dir, served)
        meta = json.loads((served / "model_meta.json").read_text())
        (served / "model_meta.json").write_text(json.dumps({**meta, "class_names": classes}))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(SAGEMAKER_MULTI_MODEL="true", SAGEMAKER_BASE_DIR=str(tmp_path / "opt_ml"))
        workers[key] = subprocess.Popen([sys.executable, "-c", WORKER, str(served)], env=env, cwd=tmp_path,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)  # both at once, as TorchServe runs one worker per model
    answers = {}
    for key, worker in workers.items():
        stdout, stderr = worker.communicate(request, timeout=180)
        assert worker.returncode == 0, stderr[-4000:]
        [answer] = json.loads(stdout.strip().splitlines()[-1])
        assert answer["status"] == 200, answer
        answers[key] = {entry["label"] for entry in json.loads(answer["body"])["predictions"][0]["top_k"]}
    assert answers["v1"] <= {"cat", "dog", "fox"} and answers["v2"] <= {"oak", "elm", "ash"}, answers
