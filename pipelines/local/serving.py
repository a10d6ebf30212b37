"""The process behind one local endpoint: SageMaker's model-serving contract over the model's own `code/inference.py`.

    GET  /ping          200 once the model is loaded and this process takes traffic
    POST /invocations   body + Content-Type -> input_fn -> predict_fn -> output_fn(prediction, Accept)

Like the PyTorch serving container, the entry point is imported from the model directory (with `model/code` on
sys.path) and its `model_fn`, `input_fn`, `predict_fn`, `output_fn` (or `transform_fn`) are called by position. An
exception with an HTTP `status` (`InferenceError`) answers that status with `{"error": message}`; anything else is a
logged 500: a request never kills the server.

Run as `python -m pipelines.local.serving --model-dir DIR --port N --host 127.0.0.1 [--health-port M]`. The model
is loaded before the socket is bound, and the socket is bound with SO_REUSEPORT, so a new model's process can join
the port of the live one and take over without a refused connection (see `pipelines.local.endpoints`). On SIGTERM
it drains: `Connection: close` on every response for `DRAIN_S`, then uvicorn's graceful shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import importlib.util
import json
import logging
import os
import signal
import socket
import struct
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipelines.local.inference_thread import InferenceThread

log = logging.getLogger("pipelines.local.serving")

JSON_TYPE = "application/json"
DEFAULT_ENTRY_POINT = "code/inference.py"
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker's real-time invocation limit
LISTEN_BACKLOG = 128
GRACEFUL_SHUTDOWN_S = 30
# After SIGTERM, answer this long with `Connection: close` before closing idle keep-alive connections: a busy
# keep-alive client learns from a response to reconnect (to the new server) instead of racing our close.
DRAIN_S = 1.0
LOOPBACK = "127.0.0.1"
# Linux's SO_ATTACH_REUSEPORT_CBPF (asm-generic/socket.h); Python's socket module does not export it.
SO_ATTACH_REUSEPORT_CBPF = 51


class HandlerError(Exception):
    """A client error raised by the default handlers, shaped like the model's own `InferenceError`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ModelLoadError(Exception):
    """The entry point is missing, does not import, or its `model_fn` failed."""


# ---------------------------------------------------------------------------------------------- the model's handlers
def import_entry_point(path: Path) -> ModuleType:
    """Imports `path` under a unique module name, its folder on sys.path (for its own helper modules)."""
    if not path.is_file():
        raise ModelLoadError(f"entry point {path} not found")
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    name = f"sagemaker_entry_point_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    # dataclasses and pickle look a class's module up in sys.modules while the module runs.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def default_input_fn(body: bytes, content_type: str) -> Any:
    if (content_type or "").split(";")[0].strip().lower() != JSON_TYPE:
        raise HandlerError(415, f"unsupported content type {content_type!r}: the model defines no input_fn")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise HandlerError(400, f"body is not valid JSON: {exc}") from exc


def default_predict_fn(data: Any, model: Any) -> Any:
    return model(data)


def default_output_fn(prediction: Any, accept: str) -> bytes:
    if hasattr(prediction, "tolist"):
        prediction = prediction.tolist()
    return json.dumps(prediction).encode("utf-8")


@dataclass
class InferenceHandlers:
    """The loaded model and the entry point's handler functions (the container toolkit's defaults where absent)."""

    module: ModuleType
    model: Any
    model_dir: Path

    @classmethod
    def load(cls, model_dir: str | Path, entry_point: str = DEFAULT_ENTRY_POINT) -> InferenceHandlers:
        model_dir = Path(model_dir).resolve()
        module = import_entry_point(model_dir / entry_point)
        model_fn = getattr(module, "model_fn", None)
        if not callable(model_fn):
            raise ModelLoadError(f"{entry_point} defines no model_fn(model_dir)")
        return cls(module=module, model=model_fn(str(model_dir)), model_dir=model_dir)

    def _handler(self, name: str, default: Callable[..., Any]) -> Callable[..., Any]:
        found = getattr(self.module, name, None)
        return found if callable(found) else default

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """Runs one request through the handlers; returns (response body, its content type)."""
        transform_fn = getattr(self.module, "transform_fn", None)
        if callable(transform_fn):
            return finish(transform_fn(self.model, body, content_type, accept), accept)
        data = self._handler("input_fn", default_input_fn)(body, content_type)
        prediction = self._handler("predict_fn", default_predict_fn)(data, self.model)
        return finish(self._handler("output_fn", default_output_fn)(prediction, accept), accept)

    def invoke_many(self, requests: list[tuple[bytes, str, str]]) -> list[tuple[bytes, str] | BaseException]:
        """Several (body, content type, accept) requests; one forward pass for all when the entry point has a
        `predict_batch_fn` (see pipelines.local.inference_thread). Each gets its own result or exception, the same
        as `invoke` would give it alone."""
        batch_fn = getattr(self.module, "predict_batch_fn", None)
        if len(requests) == 1 or not callable(batch_fn) or callable(getattr(self.module, "transform_fn", None)):
            return [outcome(self.invoke, *request) for request in requests]
        input_fn = self._handler("input_fn", default_input_fn)
        outcomes: list[Any] = [outcome(input_fn, body, content_type) for body, content_type, _ in requests]
        ready = [i for i, data in enumerate(outcomes) if not isinstance(data, BaseException)]
        try:
            predictions = list(batch_fn([outcomes[i] for i in ready], self.model))
            if len(predictions) != len(ready):
                raise ValueError(f"predict_batch_fn gave {len(predictions)} predictions for {len(ready)} inputs")
        except Exception:  # whichever request broke the batch gets its own error, the others their answers
            for i in ready:
                outcomes[i] = outcome(self.invoke, *requests[i])
            return outcomes
        output_fn = self._handler("output_fn", default_output_fn)
        for i, prediction in zip(ready, predictions, strict=True):
            accept = requests[i][2]
            outcomes[i] = outcome(lambda p, a: finish(output_fn(p, a), a), prediction, accept)
        return outcomes


def finish(result: Any, accept: str) -> tuple[bytes, str]:
    """A handler's result as (body bytes, content type)."""
    if isinstance(result, tuple):  # (body, content type), as the serving toolkit allows
        result, accept = result
    if isinstance(result, str):
        result = result.encode("utf-8")
    return bytes(result), response_type(accept)


def outcome(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)`, or the exception it raised (one request's failure must not fail its batch)."""
    try:
        return fn(*args)
    except Exception as exc:
        return exc


def response_type(accept: str) -> str:
    """The one concrete media type in Accept, else JSON (the container's default accept)."""
    if accept and "," not in accept and "*" not in accept:
        return accept
    return JSON_TYPE


def error_status(exc: BaseException) -> int | None:
    """The HTTP status an `InferenceError` (or the toolkit's `BaseInferenceToolkitError`) carries, if any."""
    for attribute in ("status", "status_code"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
            return value
    return None


# ---------------------------------------------------------------------------------------------- the ASGI app
class PayloadTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it is known to be over `limit` (header or bytes so far)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"payload of {int(declared)} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"payload is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class ServingState:
    handlers: InferenceHandlers
    max_body_bytes: int
    ready: bool
    draining: bool = False

    def headers(self) -> dict[str, str] | None:
        return {"Connection": "close"} if self.draining else None


def create_app(handlers: InferenceHandlers, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               ready: bool = True, inference: InferenceThread | None = None) -> Starlette:
    """The app over loaded handlers; with `ready=False`, /ping says 503 until `app.state.serving.ready` is set.
    Predictions run on `inference` (the thread that loaded the model, ideally: see inference_thread.py)."""
    state = ServingState(handlers, max_body_bytes, ready)
    inference = inference or InferenceThread()

    async def ping(request: Request) -> Response:
        if not state.ready:
            return JSONResponse({"status": "Starting"}, status_code=503, headers=state.headers())
        return JSONResponse({"status": "Healthy"}, headers=state.headers())

    async def invocations(request: Request) -> Response:
        try:
            body = await read_body(request, state.max_body_bytes)
        except PayloadTooLarge as exc:
            return JSONResponse({"error": str(exc)}, status_code=413, headers=state.headers())
        content_type = request.headers.get("content-type", "")
        accept = request.headers.get("accept", "")
        if not accept or accept.strip() == "*/*":
            accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", JSON_TYPE)
        try:
            # On the inference thread: a slow prediction must not stall /ping or the reading of other requests.
            future = inference.invoke(state.handlers, body, content_type, accept)
            payload, media_type = await asyncio.wrap_future(future)
        except Exception as exc:
            status = error_status(exc)
            if status is None:
                log.exception("invocation failed")
                return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500,
                                    headers=state.headers())
            return JSONResponse({"error": getattr(exc, "message", None) or str(exc)}, status_code=status,
                                headers=state.headers())
        return Response(payload, media_type=media_type, headers=state.headers())

    app = Starlette(routes=[Route("/ping", ping, methods=["GET"]),
                            Route("/invocations", invocations, methods=["POST"])])
    app.state.serving = state
    return app


# ---------------------------------------------------------------------------------------------- the process
def bind_socket(host: str, port: int, shared: bool = True) -> socket.socket:
    """A listening TCP socket; `shared` joins other SO_REUSEPORT listeners on the same port (the live server)."""
    # IPPROTO_TCP, not the default 0: asyncio turns Nagle off (TCP_NODELAY) only on connections whose socket says
    # proto == IPPROTO_TCP. With Nagle on, uvicorn's separate header and body writes wait out the client's delayed
    # ACK: every response took 40+ ms, /ping included (benchmarks/endpoint.py; 5 ms of work).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared and hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    return sock


def steer_new_connections_here(sock: socket.socket) -> bool:
    """Makes the kernel hand every new connection on this SO_REUSEPORT port to `sock` (Linux; False elsewhere).

    Without it the kernel spreads connections over the old and the new server by hash, and one queued in the old
    server's backlog when it closes is reset. A classic BPF program returning 1 picks the second socket of the
    group: this one, since the live server joined first. Once the old one closes, index 1 no longer exists and the
    kernel falls back to its hash over the one socket left.
    """
    if not sys.platform.startswith("linux"):
        return False
    program = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 1))  # BPF_RET | BPF_K, k=1
    fprog = struct.pack("HL", 1, ctypes.addressof(program))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as exc:
        log.warning("cannot steer new connections to this server (%s); the kernel spreads them by hash", exc)
        return False
    return True


class _Server(uvicorn.Server):
    """uvicorn, plus a callback once its listeners accept connections and a drain before a SIGTERM shutdown."""

    def __init__(self, config: uvicorn.Config, state: ServingState, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self.state = state
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.on_started()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.state.draining:
            super().handle_exit(sig, frame)
            return
        self.state.draining = True
        timer = threading.Timer(DRAIN_S, super().handle_exit, args=(sig, frame))
        timer.daemon = True
        timer.start()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.local.serving", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--host", default=LOOPBACK, choices=[LOOPBACK], help="loopback only, never all interfaces")
    parser.add_argument("--health-port", type=int, default=0, help="a second, private port that answers only us")
    parser.add_argument("--entry-point", default=DEFAULT_ENTRY_POINT, help="relative to the model dir")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    try:
        # Loaded before binding: until the model is ready, the port's traffic stays with the live server. Loaded on
        # the thread that will predict: one OpenMP team (see inference_thread.py).
        inference = InferenceThread()
        handlers = inference.call(InferenceHandlers.load, args.model_dir, args.entry_point).result()
    except Exception:
        log.exception("the model failed to load from %s", args.model_dir)
        return 1
    app = create_app(handlers, max_body_bytes=args.max_body_bytes, ready=False, inference=inference)
    try:
        sockets = [bind_socket(args.host, args.port)]
        if args.health_port:
            sockets.append(bind_socket(args.host, args.health_port, shared=False))
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1

    def started() -> None:
        steered = steer_new_connections_here(sockets[0])
        app.state.serving.ready = True
        log.info("serving %s on http://%s:%d (pid %d%s)", args.model_dir, args.host, args.port, os.getpid(),
                 ", new connections steered here" if steered else "")

    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    _Server(config, app.state.serving, on_started=started).run(sockets=sockets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
