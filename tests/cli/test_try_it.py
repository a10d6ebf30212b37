"""The try-it page's server over HTTP, with a target that answers as each case needs: what every bad request gets
(a 400 or 404 with {"error": what was wrong and what to do}), and how `pipeline.py ui` refuses an unknown endpoint
or a busy port. test_try_it_page.py drives the page in Chromium against a real local endpoint."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from click.testing import CliRunner

from pipelines.cloud import SageMakerTarget
from pipelines.targets import TargetError
from pipelines.try_it import MAX_UPLOAD_BYTES, TryIt, TryItServer, upload_name

ANSWER = json.dumps({"predictions": [{"top_k": [{"label": "cat", "probability": 0.75},
                                                {"label": "dog", "probability": 0.25}]}]})


def fake_target(name: str = "local", overlay: bytes | Exception = b"\x89PNG fake", response: str = ANSWER,
                refuse: str | None = None) -> SimpleNamespace:
    """A target whose endpoint `pets` answers `response` (or refuses with `refuse`, naming the file it was sent)."""
    sent: list[Path] = []
    picked: list[str | None] = []

    def invoke(endpoint: str, files: list[Path], target_model: str | None = None) -> list[dict]:
        sent.extend(files)
        picked.append(target_model)
        if refuse:
            raise TargetError(f"endpoint {endpoint} answered HTTP 400 for {files[0]}: {refuse}")
        return [{"file": str(files[0]), "response": response}]

    def attribution_overlay(endpoint: str, image: bytes) -> bytes:
        if isinstance(overlay, Exception):
            raise overlay
        return overlay

    return SimpleNamespace(name=name, sent=sent, picked=picked, invoke=invoke, attribution_overlay=attribution_overlay,
                           list_endpoints=lambda: [{"name": "pets", "status": "InService"}])


@pytest.fixture()
def serve():
    servers = []

    def start(target: SimpleNamespace, target_model: str | None = None) -> str:
        server = TryItServer(TryIt(target, "pets", target_model, overlay_method="gradcam"), port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_an_upload_gets_the_labels_and_the_overlay_and_the_endpoint_gets_the_file_under_its_name(serve) -> None:
    target = fake_target()
    url = serve(target)
    answer = httpx.post(f"{url}predict?name=IMG_0042.JPG", content=b"jpeg bytes", trust_env=False)
    assert answer.status_code == 200
    body = answer.json()
    assert body["top_k"] == [{"label": "cat", "probability": 0.75}, {"label": "dog", "probability": 0.25}]
    assert body["overlay"] == "data:image/png;base64,iVBORyBmYWtl"
    assert target.sent[0].name == "IMG_0042.JPG"  # the suffix tells the endpoint its content type
    assert not target.sent[0].exists()  # the server's temporary copy is gone


def test_a_multi_model_endpoints_page_asks_the_model_it_was_given(serve) -> None:
    target = fake_target()
    url = serve(target, "v3.tar.gz")
    assert httpx.post(f"{url}predict?name=a.png", content=b"png", trust_env=False).status_code == 200
    assert target.picked == ["v3.tar.gz"]


def test_the_page_is_served_with_the_endpoint_name_escaped(serve) -> None:
    target = fake_target()
    url = serve(target)
    page = httpx.get(url, trust_env=False)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<input type="file" id="file"' in page.text and "Try endpoint <code>pets</code>" in page.text
    target.name = "sagemaker"
    assert "where the model looked" not in httpx.get(url, trust_env=False).text


@pytest.mark.parametrize(("request_kwargs", "status", "error"), [
    ({"url": "predict?name=a.png", "content": b""}, 400, "a.png is empty: drop an image file"),
    ({"url": "predict?name=big.jpg", "content": b"x" * (MAX_UPLOAD_BYTES + 1)}, 400,
     "big.jpg is 25.0 MiB, over the page's 25 MiB: send a smaller image"),
    ({"url": "upload", "content": b"x"}, 404, "no endpoint /upload: POST /predict"),
])
def test_a_bad_request_gets_a_clear_error(serve, request_kwargs: dict, status: int, error: str) -> None:
    url = serve(fake_target())
    answer = httpx.post(url + request_kwargs["url"], content=request_kwargs["content"], trust_env=False)
    assert (answer.status_code, answer.json()) == (status, {"error": error})


def test_a_content_length_that_is_no_number_is_a_400_that_says_so(serve) -> None:
    port = int(serve(fake_target()).rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.sendall(b"POST /predict?name=a.png HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        reply = raw.makefile("rb").read().decode()
    assert reply.startswith("HTTP/1.0 400")
    assert json.loads(reply.split("\r\n\r\n", 1)[1]) == {
        "error": "the upload of a.png has a Content-Length of 'abc', not a number of bytes"}


def test_an_unknown_page_is_a_404_that_says_where_the_page_is(serve) -> None:
    answer = httpx.get(serve(fake_target()) + "favicon.ico", trust_env=False)
    assert (answer.status_code, answer.json()) == (404, {"error": "no page /favicon.ico: open /"})


def test_the_endpoints_refusal_names_the_users_file_not_the_servers_copy(serve) -> None:
    url = serve(fake_target(refuse="cannot decode image: not a format Pillow reads"))
    answer = httpx.post(f"{url}predict?name=../../etc/notes.txt", content=b"text", trust_env=False)
    assert answer.status_code == 400
    assert answer.json()["error"] == ("endpoint pets answered HTTP 400 for notes.txt: cannot decode image: not a "
                                      "format Pillow reads")


def test_a_failure_inside_the_server_is_a_500_that_says_what_broke_and_the_page_keeps_serving(serve) -> None:
    target = fake_target()
    target.invoke = lambda endpoint, files, target_model=None: 1 / 0
    url = serve(target)
    answer = httpx.post(f"{url}predict?name=a.png", content=b"png", trust_env=False)
    assert answer.status_code == 500
    assert answer.json()["error"].startswith("the try-it server failed on a.png: ZeroDivisionError: division by zero")
    assert httpx.get(url, trust_env=False).status_code == 200


def test_an_answer_that_is_not_predictions_is_said_so(serve) -> None:
    url = serve(fake_target(response='{"message": "hello"}'))
    answer = httpx.post(f"{url}predict?name=a.png", content=b"png", trust_env=False)
    assert answer.json() == {"error": 'the endpoint answered something other than predictions: {"message": "hello"}'}


def test_a_sagemaker_endpoint_gets_labels_and_says_where_its_overlays_are(serve) -> None:
    with pytest.raises(TargetError) as refusal:
        SageMakerTarget.attribution_overlay(SimpleNamespace(), "pets", b"png")  # type: ignore[arg-type]
    url = serve(fake_target(name="sagemaker", overlay=refusal.value))
    body = httpx.post(f"{url}predict?name=a.png", content=b"png", trust_env=False).json()
    assert [e["label"] for e in body["top_k"]] == ["cat", "dog"] and body["overlay"] is None
    assert "`pipeline.py report`" in body["overlay_note"] and "--target local" in body["overlay_note"]


@pytest.mark.parametrize(("raw", "kept"), [("IMG 1.jpeg", "IMG_1.jpeg"), ("../../x.png", "x.png"),
                                           ("", "upload"), ("...", "upload"), ("é.webp", "upload.webp"),
                                           ("photo.tar.jpg", "photo.tar.jpg")])
def test_upload_names_keep_only_what_is_safe_in_a_file_name(raw: str, kept: str) -> None:
    assert upload_name(raw) == kept


def test_ui_refuses_an_unknown_endpoint_and_a_busy_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline

    monkeypatch.setenv("PIPELINE_LOCAL_WORKSPACE", str(tmp_path / "ws"))
    result = CliRunner().invoke(pipeline.cli, ["ui", "--endpoint", "nope"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "no endpoint 'nope' on the local target (known: none)" in result.output

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(TargetError, match=rf"cannot listen on 127.0.0.1:{busy.getsockname()[1]} .*--port"):
            TryItServer(TryIt(fake_target(), "pets", overlay_method="gradcam"), port=busy.getsockname()[1])
