"""The try-it page (`pipeline.py ui`) in headless Chromium, in front of a real local endpoint: a person's upload
through the page's file input gets the same labels `pipeline.py invoke` prints, and the model's Grad-CAM overlay;
a file that is no image gets the endpoint's reason, in words, on the page.

The endpoint serves an untrained resnet18 at 32 px as train.py writes it (these tests check the plumbing, not the
model), started by the local EndpointManager as a deployment does.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from artifacts import model_meta, write_model_dir
from headless_page import HeadlessPage, find_chromium
from inference import build_model
from overlays import CAPTION_HEIGHT

from pipelines.config import load_config
from pipelines.local.endpoints import EndpointManager
from pipelines.local.state import StateStore
from pipelines.local.target import LocalTarget
from pipelines.local.workspace import Workspace
from pipelines.try_it import TryIt, TryItServer, top_k_of

ENDPOINT = "digits-page"
LABELS = "[...document.querySelectorAll('#labels li')].map(li => [li.dataset.label, Number(li.dataset.probability)])"
OVERLAY = "(i => i.hidden ? null : [i.complete, i.naturalWidth, i.naturalHeight])(document.getElementById('overlay'))"


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium); test_try_it.py checked the server")
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, small_digits_dir: Path):
    """(the page's server, the LocalTarget behind it) with a live single-model endpoint in a fresh workspace."""
    root = tmp_path_factory.mktemp("try_it")
    classes = sorted(p.name for p in small_digits_dir.iterdir() if p.is_dir())
    torch.manual_seed(0)
    write_model_dir(root / "model", build_model("resnet18", len(classes)), model_meta("resnet18", 32, classes))
    workspace = Workspace.open(root / "ws")
    store = StateStore(workspace.state_db)
    manager = EndpointManager(workspace, store, ready_timeout=120)
    manager.deploy(ENDPOINT, f"{ENDPOINT}-1", root / "model", model_name="digits")
    target = LocalTarget(load_config(environ={}), workspace)
    try_it = TryIt(target, ENDPOINT, overlay_method="gradcam")
    try_it.check_endpoint()
    server = TryItServer(try_it, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, target
    server.shutdown()
    server.server_close()
    manager.delete(ENDPOINT)
    store.close()


@pytest.fixture()
def page(chromium: str, tmp_path: Path):
    browser = HeadlessPage(chromium, tmp_path / "profile")
    yield browser
    browser.close()


def test_an_image_uploaded_through_the_page_shows_the_endpoints_labels_and_its_overlay(
        served, page: HeadlessPage, small_digits_dir: Path) -> None:
    server, target = served
    image = sorted(next(p for p in sorted(small_digits_dir.iterdir()) if p.is_dir()).glob("*.png"))[0]
    page.open(server.url)
    assert page.evaluate("document.title") == f"Try {ENDPOINT}"
    page.upload("#file", image)
    assert page.wait_for("document.body.dataset.state === 'done' || document.body.dataset.state === 'error'")
    assert page.evaluate("document.body.dataset.state") == "done", page.evaluate("message.textContent")

    [expected] = target.invoke(ENDPOINT, [image])  # what `pipeline.py invoke` prints for the same file
    shown = page.evaluate(LABELS)
    assert [label for label, _ in shown] == [e["label"] for e in top_k_of(expected["response"])]
    assert [p for _, p in shown] == pytest.approx([e["probability"] for e in top_k_of(expected["response"])])
    assert len(shown) >= 3 and sum(p for _, p in shown) <= 1.0 + 1e-6

    complete, width, height = page.wait_for(OVERLAY)
    assert complete and width > 0, "the overlay did not decode"
    assert width == 2 * (height - CAPTION_HEIGHT)  # two square panels (input, input under its heat) and a caption
    assert "Grad-CAM" in page.evaluate("document.getElementById('overlay-note').textContent")


def test_a_file_that_is_no_image_gets_the_endpoints_reason_on_the_page(served, page: HeadlessPage,
                                                                      tmp_path: Path) -> None:
    server, _ = served
    notes = tmp_path / "holiday notes.txt"
    notes.write_text("not a picture")
    page.open(server.url)
    page.upload("#file", notes)
    page.wait_for("document.body.dataset.state === 'error'")
    message = page.evaluate("document.getElementById('message').textContent")
    assert "holiday_notes.txt" in message and "HTTP 400" in message and "send a JPEG, PNG" in message, message
    assert "try-it-" not in message and "BytesIO" not in message  # not the server's temporary copy, nor Pillow's
    assert page.evaluate(LABELS) == [] and page.evaluate(OVERLAY) is None
