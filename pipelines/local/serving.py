"""The process behind one local endpoint: SageMaker's model-serving contract over the model's own `code/inference.py`.

    GET  /ping          200 once the model is loaded and this process takes traffic
    POST /invocations   body + Content-Type -> input_fn -> predict_fn -> output_fn(prediction, Accept)
    GET  /models        multi-model: the loaded models, least recently used first (`endpoints` shows them)

With `--multi-model`, `--model-dir` is the folder of a `Mode: MultiModel` model's archives and each invocation names
one with the `X-Amzn-SageMaker-Target-Model` header (`pipelines.local.model_cache` loads and evicts them).

The model's handlers are called as the PyTorch serving container calls them (`inference_handlers`). An
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
import logging
import os
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipelines.local.inference_handlers import (
    DEFAULT_ENTRY_POINT,
    JSON_TYPE,
    InferenceHandlers,
    error_status,
)
from pipelines.local.inference_thread import InferenceThread
from pipelines.local.model_cache import MB, TARGET_MODEL_HEADER, ModelCache, TargetModelError
from pipelines.local.ports import LOOPBACK

log = logging.getLogger("pipelines.local.serving")

DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker's real-time invocation limit
LISTEN_BACKLOG = 128
GRACEFUL_SHUTDOWN_S = 30
# After SIGTERM, answer this long with `Connection: close` before closing idle keep-alive connections: a busy
# keep-alive client learns from a response to reconnect (to the new server) instead of racing our close.
DRAIN_S = 1.0
# Linux's SO_ATTACH_REUSEPORT_CBPF (asm-generic/socket.h); Python's socket module does not export it.
SO_ATTACH_REUSEPORT_CBPF = 51


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
    handlers: InferenceHandlers | None  # the one model; None on a multi-model endpoint
    cache: ModelCache | None  # the models of a multi-model endpoint
    max_body_bytes: int
    ready: bool
    draining: bool = False

    def headers(self) -> dict[str, str] | None:
        return {"Connection": "close"} if self.draining else None


def create_app(models: InferenceHandlers | ModelCache, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               ready: bool = True, inference: InferenceThread | None = None) -> Starlette:
    """The app over one model's loaded handlers, or a multi-model endpoint's `ModelCache`; with `ready=False`,
    /ping says 503 until `app.state.serving.ready` is set. Loads and predictions run on `inference` (the thread
    that loaded the model, ideally: see inference_thread.py)."""
    cache = models if isinstance(models, ModelCache) else None
    state = ServingState(None if cache else models, cache, max_body_bytes, ready)  # type: ignore[arg-type]
    inference = inference or InferenceThread()

    async def handlers_for(request: Request) -> InferenceHandlers:
        key = request.headers.get(TARGET_MODEL_HEADER)
        if state.cache is None:
            if key is not None:
                raise TargetModelError(400, f"this endpoint serves one model and takes no TargetModel (got "
                                            f"{key[:200]!r}): leave --target-model out, or deploy with [deployment] "
                                            'mode = "multi-model"')
            return state.handlers  # type: ignore[return-value]
        if not key:
            raise TargetModelError(400, "this is a multi-model endpoint: name the model with TargetModel (`invoke "
                                        f"--target-model KEY`, header {TARGET_MODEL_HEADER}); models under "
                                        f"{state.cache.prefix_url}: {', '.join(state.cache.available()) or 'none'}")
        loaded = state.cache.loaded_handlers(key)
        return loaded if loaded is not None else await asyncio.wrap_future(inference.call(state.cache.get, key))

    async def models_route(request: Request) -> Response:
        if state.cache is None:
            return JSONResponse({"mode": "SingleModel"}, headers=state.headers())
        return JSONResponse({"mode": "MultiModel", "prefix": state.cache.prefix_url, "loaded": state.cache.loaded(),
                             "memory_budget_mb": round(state.cache.budget / MB, 3), "evictions": state.cache.evictions},
                            headers=state.headers())

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
            handlers = await handlers_for(request)
            # On the inference thread: a slow prediction must not stall /ping or the reading of other requests.
            future = inference.invoke(handlers, body, content_type, accept)
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
                            Route("/invocations", invocations, methods=["POST"]),
                            Route("/models", models_route, methods=["GET"])])
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
    multi = parser.add_argument_group("multi-model endpoint (--model-dir is then the folder of the model archives)")
    multi.add_argument("--multi-model", action="store_true", help="serve every archive under --model-dir by key")
    multi.add_argument("--model-prefix-url", default="", help="the S3 prefix --model-dir stands for (messages)")
    multi.add_argument("--cache-dir", type=Path, help="where loaded archives are unpacked")
    multi.add_argument("--memory-budget-mb", type=int, help="loaded models beyond it evict the LRU ([local] "
                                                              "endpoint_memory_mb)")
    args = parser.parse_args(argv)
    if args.multi_model and (args.cache_dir is None or args.memory_budget_mb is None):
        parser.error("--multi-model needs --cache-dir and --memory-budget-mb")
    return args


def load_models(args: argparse.Namespace, inference: InferenceThread) -> InferenceHandlers | ModelCache:
    """The one model, loaded now on the inference thread; or a multi-model endpoint's empty cache."""
    if args.multi_model:
        return ModelCache(args.model_dir, args.model_prefix_url or str(args.model_dir), args.cache_dir,
                          args.memory_budget_mb * MB, args.entry_point)
    return inference.call(InferenceHandlers.load, args.model_dir, args.entry_point).result()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    try:
        # Loaded before binding: until the model is ready, the port's traffic stays with the live server. Loaded on
        # the thread that will predict: one OpenMP team (see inference_thread.py).
        inference = InferenceThread()
        models = load_models(args, inference)
    except Exception:
        log.exception("the model failed to load from %s", args.model_dir)
        return 1
    app = create_app(models, max_body_bytes=args.max_body_bytes, ready=False, inference=inference)
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
        what = f"the models under {args.model_dir} (multi-model)" if args.multi_model else str(args.model_dir)
        log.info("serving %s on http://%s:%d (pid %d%s)", what, args.host, args.port, os.getpid(),
                 ", new connections steered here" if steered else "")

    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    _Server(config, app.state.serving, on_started=started).run(sockets=sockets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
