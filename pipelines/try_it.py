"""The try-it page (`pipeline.py ui`): a web page on 127.0.0.1 where a person drops an image and sees what an
endpoint says about it, top-k labels with probabilities, and, for a local endpoint, where the model looked.

The page's server talks to the endpoint only through the target (`Target.invoke`, as `pipeline.py invoke` does, and
`Target.attribution_overlay`), so it shows what a client of the endpoint gets. Connections get a thread each (a
browser's idle preconnect must not hold the page up), predictions one at a time: it is one person's page, and the
local target's overlay model is loaded once and kept.
"""

from __future__ import annotations

import base64
import html
import json
import re
import tempfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipelines.config_schema import EXPLAIN_METHOD_NAMES
from pipelines.targets import Target, TargetError
from pipelines.try_it_page import PAGE_TEMPLATE

HOST = "127.0.0.1"  # never beyond this machine: the page has no authentication
DEFAULT_PORT = 8765
MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # a phone photo is a few MB; more is not an image a classifier wants
UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")


class TryItError(Exception):
    """What was wrong with one request, said to the page (HTTP 400, {"error": message})."""


def upload_name(raw: str | None) -> str:
    """The uploaded file's name kept as far as it is safe (its suffix tells the endpoint the image type)."""
    path = Path(Path(raw or "").name)
    stem = UNSAFE_NAME_CHARACTERS.sub("_", path.stem).strip("._") or "upload"
    return stem + UNSAFE_NAME_CHARACTERS.sub("", path.suffix)


def check_size(name: str, size: int) -> None:
    if size > MAX_UPLOAD_BYTES:
        raise TryItError(f"{name} is {size / 2**20:.1f} MiB, over the page's {MAX_UPLOAD_BYTES // 2**20} MiB: send a "
                         "smaller image")


def top_k_of(response_text: str) -> list[dict[str, Any]]:
    """The first prediction's top-k entries from the endpoint's JSON answer (scripts/inference.py's output_fn)."""
    try:
        entries = json.loads(response_text)["predictions"][0]["top_k"]
        return [{"label": str(e["label"]), "probability": float(e["probability"])} for e in entries]
    except (ValueError, KeyError, IndexError, TypeError):
        raise TryItError(f"the endpoint answered something other than predictions: {response_text[:300]}") from None


class TryIt:
    """The page's work, apart from HTTP: `page()` is the HTML, `predict(name, body)` the answer to one upload."""

    def __init__(self, target: Target, endpoint: str, target_model: str | None = None, *,
                 overlay_method: str) -> None:
        """`overlay_method` is what the target's overlays show ([explain] method), named in the page's caption."""
        self.target, self.endpoint, self.target_model = target, endpoint, target_model
        self.overlay_method = overlay_method
        self._one_at_a_time = threading.Lock()

    def check_endpoint(self) -> dict[str, Any]:
        """The endpoint's row from the target; an unknown one is a TargetError naming the known ones."""
        rows = self.target.list_endpoints()
        row = next((r for r in rows if r["name"] == self.endpoint), None)
        if row is None:
            known = ", ".join(r["name"] for r in rows) or "none"
            raise TargetError(f"no endpoint {self.endpoint!r} on the {self.target.name} target (known: {known}); "
                              "deploy one with `pipeline.py start`, or pass --endpoint NAME")
        return row

    def page(self) -> str:
        hint = ", and, since the endpoint is local, where the model looked" if self.target.name == "local" else ""
        return PAGE_TEMPLATE.format(endpoint=html.escape(self.endpoint), target=html.escape(self.target.name),
                                    overlay_hint=hint)

    def predict(self, name: str, body: bytes) -> dict[str, Any]:
        if not body:
            raise TryItError(f"{name} is empty: drop an image file")
        check_size(name, len(body))
        with self._one_at_a_time, tempfile.TemporaryDirectory(prefix="try-it-") as folder:
            path = Path(folder) / name
            path.write_bytes(body)
            try:
                [result] = self.target.invoke(self.endpoint, [path], self.target_model)
            except TargetError as err:
                raise TryItError(str(err).replace(str(path), name)) from None
            answer: dict[str, Any] = {"file": name, "top_k": top_k_of(result["response"]), "overlay": None,
                                      "overlay_note": None}
            try:
                png = self.target.attribution_overlay(self.endpoint, body)
                answer["overlay"] = "data:image/png;base64," + base64.b64encode(png).decode()
                method = EXPLAIN_METHOD_NAMES.get(self.overlay_method, self.overlay_method)
                answer["overlay_note"] = f"{method}: where the model looked for its top label"
            except TargetError as err:
                answer["overlay_note"] = str(err)
        return answer


class _Handler(BaseHTTPRequestHandler):
    server: TryItServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if urlsplit(self.path).path not in ("/", "/index.html"):
            self._send(HTTPStatus.NOT_FOUND, "application/json", {"error": f"no page {self.path}: open /"})
            return
        self._send(HTTPStatus.OK, "text/html; charset=utf-8", self.server.try_it.page())

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path != "/predict":
            self._send(HTTPStatus.NOT_FOUND, "application/json", {"error": f"no endpoint {url.path}: POST /predict"})
            return
        name = upload_name(parse_qs(url.query).get("name", [""])[0])
        try:
            answer = self.server.try_it.predict(name, self._read_body(name))
        except TryItError as err:
            self.close_connection = True
            self._send(HTTPStatus.BAD_REQUEST, "application/json", {"error": str(err)})
            return
        except Exception as exc:  # the page keeps serving, and says what broke instead of a dropped connection
            self.server.on_request(f"POST /predict failed: {type(exc).__name__}: {exc}")
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "application/json",
                       {"error": f"the try-it server failed on {name}: {type(exc).__name__}: {exc} (run `pipeline.py "
                                 "-v ui` to see its log)"})
            return
        self._send(HTTPStatus.OK, "application/json", answer)

    def _read_body(self, name: str) -> bytes:
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit():
            raise TryItError(f"the upload of {name} has a Content-Length of {length!r}, not a number of bytes")
        check_size(name, int(length))  # said before reading it all
        return self.rfile.read(int(length))

    def _send(self, status: HTTPStatus, content_type: str, payload: Any) -> None:
        body = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        self.server.on_request(format % args)


class TryItServer(ThreadingHTTPServer):
    daemon_threads = True  # Ctrl+C ends the page even while a browser holds a connection open

    def __init__(self, try_it: TryIt, port: int = DEFAULT_PORT, on_request: Any = None) -> None:
        self.try_it, self.on_request = try_it, on_request or (lambda line: None)
        try:
            super().__init__((HOST, port), _Handler)
        except OSError as err:
            raise TargetError(f"the try-it page cannot listen on {HOST}:{port} ({err.strerror}): pass another "
                              "--port, or 0 for any free one") from None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"
