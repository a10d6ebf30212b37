"""Endpoint latency and throughput: the local endpoint against the bare cost of the same work in-process.

The endpoint is deployed the way the pipeline's Endpoint step deploys it (`EndpointManager.deploy`: a serving
process on 127.0.0.1 over the model's own `code/inference.py`). The bare cost is that same `inference.py`, imported
into this process, running `input_fn` -> `predict_fn` -> `output_fn` on the same PNG bytes: decode, preprocess,
forward, JSON. Latency blocks alternate bare / HTTP so both see the same load; p50 HTTP / p50 bare is the ratio.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import Result, Table, median, percentile, ratio, sample_splits
from benchmarks.loadgen import Client, closed_loop, timed_invoke

CONTENT_TYPE = "image/png"
TARGET_P50_RATIO = 1.25
CONCURRENCY = (1, 4, 16)


def test_images(split: Path, count: int = 50) -> list[bytes]:
    files = sorted(p for p in (split / "test").rglob("*.png"))
    step = max(1, len(files) // count)
    return [p.read_bytes() for p in files[::step][:count]]


def ensure_model(workdir: Path, split: Path) -> Path:
    """The training benchmark's last model; else a one-epoch train.py model (latency does not need accuracy)."""
    model = workdir / "model"
    if (model / "model.pth").is_file():
        return model
    from benchmarks.training import default_settings, keep_model, trainpy_run

    settings = default_settings(epochs=1)
    trainpy_run(split, settings, workdir / "runs" / "endpoint-model")
    keep_model(workdir / "runs" / "endpoint-model" / "model", model)
    return model


def bare_handler(model_dir: Path) -> Callable[[bytes], bytes]:
    """The artifact's inference.py loaded the way the server loads it; one call = the server's work, no HTTP."""
    from pipelines.local.inference_handlers import InferenceHandlers

    handlers = InferenceHandlers.load(model_dir)
    return lambda body: handlers.invoke(body, CONTENT_TYPE, "application/json")[0]


@contextlib.contextmanager
def deployed(model_dir: Path) -> Iterator[str]:
    """A live local endpoint serving `model_dir`, deleted afterwards; yields its URL."""
    from pipelines.local.endpoints import EndpointManager
    from pipelines.local.state import StateStore
    from pipelines.local.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="bench-endpoint-") as root:
        workspace = Workspace.open(Path(root))
        manager = EndpointManager(workspace, StateStore(workspace.state_db))
        summary = manager.deploy("bench-endpoint", "bench-endpoint-config", model_dir)
        try:
            yield summary["url"]
        finally:
            manager.delete("bench-endpoint")


def interleaved_latency(bare: Callable[[bytes], bytes], url: str, bodies: list[bytes], rounds: int,
                        block: int) -> tuple[list[float], list[float]]:
    """Seconds per request, bare and over HTTP, in alternating blocks of `block` requests."""
    client, bare_s, http_s = Client(url), [], []
    for body in bodies[:5]:  # warm both paths
        bare(body)
        timed_invoke(client, body, CONTENT_TYPE)
    for r in range(rounds):
        for i in range(block):
            body = bodies[(r * block + i) % len(bodies)]
            started = time.perf_counter()
            bare(body)
            bare_s.append(time.perf_counter() - started)
        for i in range(block):
            seconds, ok = timed_invoke(client, bodies[(r * block + i) % len(bodies)], CONTENT_TYPE)
            if ok:
                http_s.append(seconds)
    client.close()
    return bare_s, http_s


def latency_table(bare_s: list[float], http_s: list[float]) -> Table:
    table = Table(["path", "requests", "p50 ms", "p95 ms", "p99 ms", "x bare p50"])
    base = median(bare_s)
    for label, values in (("bare in-process (decode + preprocess + forward + JSON)", bare_s),
                          ("local endpoint over HTTP, concurrency 1", http_s)):
        table.add(label, len(values), 1000 * median(values), 1000 * percentile(values, 95),
                  1000 * percentile(values, 99), ratio(median(values), base))
    return table


def run(workdir: Path, quick: bool) -> Result:
    split = sample_splits(workdir)
    model_dir, bodies = ensure_model(workdir, split), test_images(split)
    bare = bare_handler(model_dir)
    rounds, block = (6, 25) if quick else (16, 25)
    max_requests, max_seconds = (300, 8.0) if quick else (1500, 30.0)
    with deployed(model_dir) as url:
        bare_s, http_s = interleaved_latency(bare, url, bodies, rounds, block)
        loads = [closed_loop(url, bodies, CONTENT_TYPE, c, max_requests, max_seconds) for c in CONCURRENCY]
    bare_rps = ratio(1.0, median(bare_s))
    result = Result("endpoint", "Endpoint latency and throughput (the local endpoint vs the same work in-process)")
    result.tables.append(("Latency, concurrency 1 (bare and HTTP blocks alternate):", latency_table(bare_s, http_s)))
    result.tables.append(("Throughput (closed loop, one keep-alive connection per client):",
                          throughput_table(loads, bare_rps)))
    p50_ratio = ratio(median(http_s), median(bare_s))
    rps = [load.requests_per_s for load in loads]
    result.figures = {"bare_p50_ms": 1000 * median(bare_s), "http_p50_ms": 1000 * median(http_s),
                      "http_p95_ms": 1000 * percentile(http_s, 95), "http_p99_ms": 1000 * percentile(http_s, 99),
                      "p50_ratio": p50_ratio, "requests_per_s": dict(zip(CONCURRENCY, rps, strict=True)),
                      "bare_requests_per_s": bare_rps, "errors": sum(load.errors for load in loads)}
    result.targets[f"p50 <= {TARGET_P50_RATIO}x bare ({p50_ratio:.2f}x)"] = p50_ratio <= TARGET_P50_RATIO
    result.targets["throughput grows with concurrency (" + " -> ".join(f"{r:.0f}" for r in rps) + " req/s)"] = (
        rps[1] > rps[0] and rps[2] >= 0.95 * rps[1])
    return result


def throughput_table(loads: list[Any], bare_rps: float) -> Table:
    table = Table(["concurrency", "requests", "errors", "req/s", "x concurrency 1", "p50 ms", "p99 ms"])
    base = loads[0].requests_per_s
    for load in loads:
        table.add(load.concurrency, len(load.latencies_s), load.errors, load.requests_per_s,
                  ratio(load.requests_per_s, base), 1000 * median(load.latencies_s),
                  1000 * percentile(load.latencies_s, 99))
    table.add("bare, 1 in-process caller", "", "", bare_rps, ratio(bare_rps, base), "", "")
    return table
