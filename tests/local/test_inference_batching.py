"""The local endpoint's inference thread and dynamic batching: batched answers are the answers each request gets
alone, one request's error stays its own, and only requests already waiting are batched."""

from __future__ import annotations

import json
import shutil
import threading

import pytest
from test_serving import SCRIPTS, _restore_import_state, png_bytes  # noqa: F401 (autouse: undoes sys.path)

from pipelines.local.inference_handlers import InferenceHandlers, import_entry_point
from pipelines.local.inference_thread import InferenceThread


@pytest.fixture(scope="module")
def handlers(tmp_path_factory: pytest.TempPathFactory) -> InferenceHandlers:
    """scripts/inference.py over an untrained resnet18, 16 px, four classes."""
    import torch

    inference = import_entry_point(SCRIPTS / "inference.py")
    model_dir = tmp_path_factory.mktemp("batching") / "model"
    (model_dir / "code").mkdir(parents=True)
    classes = ["a", "b", "c", "d"]
    torch.manual_seed(0)
    torch.save(inference.build_model("resnet18", len(classes)).state_dict(), model_dir / "model.pth")
    meta = {"arch": "resnet18", "num_classes": len(classes), "class_names": classes, "image_size": 16,
            "mean": list(inference.IMAGENET_MEAN), "std": list(inference.IMAGENET_STD), "framework": "pytorch",
            "torch_version": torch.__version__}
    (model_dir / "model_meta.json").write_text(json.dumps(meta))
    shutil.copyfile(SCRIPTS / "inference.py", model_dir / "code" / "inference.py")
    return InferenceHandlers.load(model_dir)


def predictions(outcome: tuple[bytes, str]) -> list[list[tuple[str, float]]]:
    body, media_type = outcome
    assert media_type == "application/json"
    return [[(p["label"], p["probability"]) for p in row["top_k"]] for row in json.loads(body)["predictions"]]


def test_a_batch_answers_each_request_as_it_would_be_answered_alone(handlers: InferenceHandlers) -> None:
    import base64

    two = json.dumps({"images": [base64.b64encode(png_bytes((10, 200, 30))).decode(),
                                 base64.b64encode(png_bytes((90, 90, 250))).decode()], "top_k": 2}).encode()
    requests = [(png_bytes((200, 30, 30)), "image/png", "application/json"),
                (b"not an image", "image/png", "application/json"),
                (two, "application/json", "application/json"),
                (png_bytes((30, 30, 30), "JPEG"), "image/jpeg", "*/*"),
                (b"{}", "text/csv", "application/json")]
    batched = handlers.invoke_many(requests)
    assert [type(o).__name__ for o in batched] == ["tuple", "InferenceError", "tuple", "tuple", "InferenceError"]
    assert (batched[1].status, batched[4].status) == (400, 415)
    for request, outcome in zip(requests, batched, strict=True):
        if isinstance(outcome, tuple):
            alone = predictions(handlers.invoke(*request))
            together = predictions(outcome)
            assert [[label for label, _ in row] for row in together] == [[label for label, _ in row] for row in alone]
            for row_a, row_b in zip(alone, together, strict=True):
                assert [p for _, p in row_b] == pytest.approx([p for _, p in row_a], abs=1e-4)
    assert [len(row) for row in predictions(batched[2])] == [2, 2]  # its own top_k, not the batch's


def test_a_batch_the_model_rejects_falls_back_to_one_request_at_a_time(handlers: InferenceHandlers,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(batch, model):
        raise RuntimeError("batch failed")

    monkeypatch.setattr(handlers.module, "predict_batch_fn", broken)
    requests = [(png_bytes(), "image/png", "application/json")] * 3
    assert all(isinstance(o, tuple) for o in handlers.invoke_many(requests))


class RecordingHandlers:
    def __init__(self) -> None:
        self.batches: list[int] = []

    def invoke_many(self, requests):
        self.batches.append(len(requests))
        return [ValueError(body) if body == b"bad" else (body.upper(), accept) for body, _, accept in requests]


def test_the_thread_batches_only_requests_already_waiting_and_routes_each_answer() -> None:
    inference, handlers, release = InferenceThread(max_batch=4), RecordingHandlers(), threading.Event()
    assert inference.call(lambda: threading.current_thread().name).result(5) == "inference"
    lone = inference.invoke(handlers, b"first", "t", "a")
    assert lone.result(5) == (b"FIRST", "a") and handlers.batches == [1]  # alone at once, no wait for company
    blocked = inference.call(release.wait, 5)
    futures = [inference.invoke(handlers, body, "t", "a") for body in (b"x", b"bad", b"y", b"z", b"w")]
    release.set()
    assert blocked.result(5) is True
    assert [f.exception(5) is not None for f in futures] == [False, True, False, False, False]
    assert [f.result(5)[0] for f in futures if f.exception() is None] == [b"X", b"Y", b"Z", b"W"]
    assert handlers.batches == [1, 4, 1]  # the four that waited (max_batch), then the fifth


def test_interleaved_requests_for_several_models_go_through_one_pass_per_model() -> None:
    """A multi-model endpoint's clients send round-robin: the waiting requests are grouped by model, not cut into
    a batch at every change of model."""
    inference, release = InferenceThread(max_batch=4), threading.Event()
    first, second = RecordingHandlers(), RecordingHandlers()
    blocked = inference.call(release.wait, 5)
    futures = [inference.invoke(handlers, body, "t", "a")
               for body in (b"a", b"b", b"c", b"d", b"e", b"f") for handlers in (first, second)]
    release.set()
    assert blocked.result(5) is True
    assert [f.result(5)[0] for f in futures] == [b"A", b"A", b"B", b"B", b"C", b"C", b"D", b"D", b"E", b"E", b"F",
                                                 b"F"]
    assert (first.batches, second.batches) == ([4, 2], [4, 2])
