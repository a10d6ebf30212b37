"""The models of a local multi-model endpoint: loaded on first use, the least recently used evicted over a budget.

As on SageMaker, a request names its model with `TargetModel` (header `X-Amzn-SageMaker-Target-Model`): a path under
the model's `ModelDataUrl` prefix, e.g. `v3.tar.gz`. The first request for it extracts the archive into
`<cache dir>/<hash>/model` (SageMaker's `/opt/ml/models/<hash>/model`) and loads it with its own `code/`; later
requests find it loaded. Before a load would take the loaded models over the memory budget, the least recently used
are unloaded. A model's footprint is its unpacked artifact's size: for a state dict, the memory its weights take
once loaded (benchmarks/multi_model.py measures the process's resident memory beside it).

An unknown TargetModel is a 404, a malformed one a 400, one that cannot be extracted or loaded a 500 naming it,
one bigger than the whole budget a 507: none of them unloads another model or stops the endpoint.

`get` and `unload` run on the endpoint's one inference thread (pipelines.local.inference_thread), so loads,
evictions and predictions never overlap; `loaded_handlers` and `loaded` may be called from the server's event loop.
"""

from __future__ import annotations

import gc
import hashlib
import shutil
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipelines.local.container import extract_tar_gz
from pipelines.local.inference_handlers import ENTRY_MODULE_PREFIX, HandlerError, InferenceHandlers
from pipelines.local.step_api import StepFailed

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"
MAX_KEY_LENGTH = 1024  # InvokeEndpoint's TargetModel limit
MB = 1024 * 1024


class TargetModelError(HandlerError):
    """A request's TargetModel cannot be served: `status` is the HTTP answer, the message says why."""


@dataclass
class LoadedModel:
    key: str
    handlers: InferenceHandlers
    footprint: int  # bytes: the unpacked artifact
    load_seconds: float
    loaded_at: float
    last_used: float
    invocations: int = 0

    def describe(self) -> dict[str, Any]:
        return {"target_model": self.key, "footprint_bytes": self.footprint,
                "load_seconds": round(self.load_seconds, 3), "invocations": self.invocations,
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at))}


def megabytes(size: int) -> str:
    return f"{size / MB:.1f} MB" if size >= MB / 10 else f"{size} bytes"


def directory_size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


class ModelCache:
    """The multi-model endpoint's loaded models, in least-recently-used order."""

    def __init__(self, prefix: Path, prefix_url: str, cache_dir: Path, budget_bytes: int, entry_point: str) -> None:
        self.prefix = prefix
        self.prefix_url = prefix_url.rstrip("/") + "/"
        self.cache_dir = cache_dir
        self.budget = budget_bytes
        self.entry_point = entry_point
        self.evictions = 0
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()  # the event loop reads (loaded_handlers, loaded) while the thread loads

    # ------------------------------------------------------------------------------------------ requests
    def loaded_handlers(self, key: str) -> InferenceHandlers | None:
        """`key`'s handlers when it is loaded (counted as a use), else None. Safe from any thread: a request for a
        loaded model does not queue on the inference thread to learn that it is loaded."""
        with self._lock:
            found = self._models.get(key)
            if found is None:
                return None
            self._models.move_to_end(key)
            found.last_used, found.invocations = time.time(), found.invocations + 1
            return found.handlers

    def get(self, key: str) -> InferenceHandlers:
        """The loaded handlers of `key`, loading it (and evicting others) first when it is not loaded."""
        found = self.loaded_handlers(key)
        if found is not None:
            return found
        archive = self.archive(key)
        model_dir = self._extract(key, archive)
        footprint = directory_size(model_dir)
        if footprint > self.budget:
            raise TargetModelError(507, f"model {key!r} needs {megabytes(footprint)} unpacked, more than this "
                                        f"endpoint's whole memory budget of {megabytes(self.budget)}: raise [local] "
                                        "endpoint_memory_mb")
        self._evict_for(footprint)
        started = time.perf_counter()
        try:
            handlers = load_isolated(model_dir, self.entry_point)
        except Exception as exc:
            raise TargetModelError(500, f"model {key!r} ({self.prefix_url}{key}) failed to load: "
                                        f"{type(exc).__name__}: {exc}") from exc
        now = time.time()
        loaded = LoadedModel(key, handlers, footprint, time.perf_counter() - started, now, now, invocations=1)
        with self._lock:
            self._models[key] = loaded
        return handlers

    def archive(self, key: str) -> Path:
        """The artifact `key` names under the prefix; a 400 for a key that is no relative path, a 404 for none."""
        parts = PurePosixPath(key).parts
        if not key or len(key) > MAX_KEY_LENGTH or key.startswith("/") or ".." in parts or "\\" in key:
            raise TargetModelError(400, f"TargetModel {key[:200]!r} must be a path relative to the model prefix "
                                        f"{self.prefix_url}, such as v1.tar.gz (no leading /, no ..)")
        archive = self.prefix.joinpath(*parts)
        if not archive.is_file():
            raise TargetModelError(404, f"model {key!r} not found: there is no {self.prefix_url}{key}. Models under "
                                        f"the prefix: {', '.join(self.available()) or 'none'}")
        return archive

    def available(self, limit: int = 20) -> list[str]:
        """The archives a TargetModel can name (the first `limit`), as keys."""
        if not self.prefix.is_dir():
            return []
        keys = sorted(p.relative_to(self.prefix).as_posix() for p in self.prefix.rglob("*.tar.gz") if p.is_file())
        return keys[:limit]

    def loaded(self) -> list[dict[str, Any]]:
        """The loaded models, least recently used first."""
        with self._lock:
            return [model.describe() for model in self._models.values()]

    def unload(self, key: str) -> bool:
        with self._lock:
            model = self._models.pop(key, None)
        if model is None:
            return False
        forget_module(model.handlers)
        del model
        gc.collect()  # the weights go now, before the next load counts on their memory
        self.evictions += 1
        return True

    # ------------------------------------------------------------------------------------------ inside
    def _evict_for(self, footprint: int) -> None:
        while True:
            with self._lock:
                used = sum(model.footprint for model in self._models.values())
                oldest = next(iter(self._models), None)
            if used + footprint <= self.budget or oldest is None:
                return
            self.unload(oldest)

    def _extract(self, key: str, archive: Path) -> Path:
        # Keyed by name, size and mtime: an archive replaced under the same key is a new model (SageMaker says never
        # to do that; here it at least never serves stale weights after a reload).
        stat = archive.stat()
        digest = hashlib.sha256(f"{key}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:32]
        model_dir = self.cache_dir / digest / "model"
        if model_dir.is_dir():
            return model_dir
        partial = model_dir.with_name(".model.partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            extract_tar_gz(archive, partial)
        except StepFailed as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise TargetModelError(500, f"model {key!r} ({self.prefix_url}{key}) cannot be unpacked: "
                                        f"{exc.reason.removeprefix('ClientError: ')}") from exc
        partial.rename(model_dir)
        return model_dir


def load_isolated(model_dir: Path, entry_point: str) -> InferenceHandlers:
    """`InferenceHandlers.load`, leaving nothing of the model's code/ importable by the next model: every model's
    code/ has its own `inference.py` and helpers (`rgb_conversion`), possibly of another version. (The container
    gives each model its own worker process instead; the entry point's helpers stay bound in its globals.)"""
    code_dir = (model_dir / entry_point).parent.resolve()
    before = set(sys.modules)
    try:
        return InferenceHandlers.load(model_dir, entry_point)
    finally:
        for name in set(sys.modules) - before:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if module_file and Path(module_file).resolve().is_relative_to(code_dir):
                if not name.startswith(ENTRY_MODULE_PREFIX):
                    del sys.modules[name]
        while str(code_dir) in sys.path:
            sys.path.remove(str(code_dir))


def forget_module(handlers: InferenceHandlers) -> None:
    """Drops an unloaded model's entry-point module from sys.modules, so its globals can be freed with it."""
    sys.modules.pop(handlers.module.__name__, None)
