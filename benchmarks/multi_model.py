"""A local multi-model endpoint against the single-model endpoint over the same artifact (loopback, bounded).

Three versions of one trained model (the same weights, their own class names, so each answer shows which model
gave it) are published under one prefix as `v1..v3.tar.gz`, the way PublishModel publishes them, and served by one
multi-model endpoint; the single-model endpoint serves the artifact itself. Both are deployed as the Endpoint step
deploys them (`EndpointManager.deploy`) and run side by side.

- warm latency: blocks alternate single / multi (TargetModel v1, already loaded), so both see the same load;
  p50 multi / p50 single is the ratio (target <= 1.1x).
- cold load: the first request for each model (unpack + import + model_fn), and the load time the server reports.
- throughput with requests spread round-robin over the 3 models: with a budget that holds all 3 (no evictions), and
  with one that holds 2 (LRU's worst case: round-robin over one more model than fits misses every time).
- memory: the server's resident memory with the 3 models loaded, beside the budget's count (their unpacked sizes).
"""

from __future__ import annotations

import contextlib
import json
import math
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import Result, Table, median, percentile, ratio, sample_splits
from benchmarks.endpoint import CONTENT_TYPE, ensure_model, test_images
from benchmarks.loadgen import Client, closed_loop, timed_invoke

TARGET_P50_RATIO = 1.1
KEYS = ("v1.tar.gz", "v2.tar.gz", "v3.tar.gz")
HEADER = "X-Amzn-SageMaker-Target-Model"
PREFIX_URL = "s3://local-pipeline/bench/multi-model/"


def publish_versions(model_dir: Path, prefix: Path) -> int:
    """v1..v3.tar.gz under `prefix`, each with its own class names; returns one model's unpacked bytes."""
    meta = json.loads((model_dir / "model_meta.json").read_text())
    prefix.mkdir(parents=True, exist_ok=True)
    for number, key in enumerate(KEYS, start=1):
        renamed = {**meta, "class_names": [f"v{number}-{name}" for name in meta["class_names"]]}
        with tarfile.open(prefix / key, "w:gz") as tar:
            for path in sorted(model_dir.rglob("*")):
                if path.is_file() and path.name != "model_meta.json" and "__pycache__" not in path.parts:
                    tar.add(path, arcname=path.relative_to(model_dir).as_posix())
            meta_file = prefix / f".{key}.meta.json"
            meta_file.write_text(json.dumps(renamed))
            tar.add(meta_file, arcname="model_meta.json")
            meta_file.unlink()
    return sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


@contextlib.contextmanager
def endpoints(model_dir: Path, budget_mb: int) -> Iterator[tuple[Any, dict[str, Any], dict[str, Any], Path]]:
    """(manager, single summary, multi summary, prefix): both endpoints live, deleted afterwards."""
    from pipelines.local.endpoints import EndpointManager
    from pipelines.local.state import StateStore
    from pipelines.local.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="bench-multi-model-") as root:
        workspace = Workspace.open(Path(root))
        manager = EndpointManager(workspace, StateStore(workspace.state_db), memory_budget_mb=budget_mb)
        prefix = workspace.path_for(PREFIX_URL)
        publish_versions(model_dir, prefix)
        single = manager.deploy("bench-single", "bench-single-config", model_dir)
        try:
            multi = manager.deploy("bench-multi", "bench-multi-config", prefix, multi_model_url=PREFIX_URL)
            try:
                yield manager, single, multi, prefix
            finally:
                manager.delete("bench-multi")
        finally:
            manager.delete("bench-single")


def redeploy_multi(manager: Any, prefix: Path, config: str, budget_mb: int) -> dict[str, Any]:
    manager.memory_budget_mb = budget_mb
    return manager.deploy("bench-multi", config, prefix, multi_model_url=PREFIX_URL)


def cold_loads(url: str, body: bytes) -> list[tuple[str, float, bool]]:
    client = Client(url)
    loads = []
    for key in KEYS:
        seconds, ok = timed_invoke(client, body, CONTENT_TYPE, {HEADER: key})
        loads.append((key, seconds, ok))
    client.close()
    return loads


def interleaved(single_url: str, multi_url: str, bodies: list[bytes], rounds: int,
                block: int) -> tuple[list[float], list[float]]:
    single, multi = Client(single_url), Client(multi_url)
    single_s: list[float] = []
    multi_s: list[float] = []
    picked = {HEADER: KEYS[0]}
    for body in bodies[:5]:
        timed_invoke(single, body, CONTENT_TYPE)
        timed_invoke(multi, body, CONTENT_TYPE, picked)
    for r in range(rounds):
        for client, out, headers in ((single, single_s, None), (multi, multi_s, picked)):
            for i in range(block):
                seconds, ok = timed_invoke(client, bodies[(r * block + i) % len(bodies)], CONTENT_TYPE, headers)
                if ok:
                    out.append(seconds)
    single.close()
    multi.close()
    return single_s, multi_s


def loaded_models(url: str) -> dict[str, Any]:
    import httpx

    return httpx.get(f"{url}/models", timeout=5, trust_env=False).json()


def resident_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def run(workdir: Path, quick: bool) -> Result:
    split = sample_splits(workdir)
    model_dir, bodies = ensure_model(workdir, split), test_images(split)
    rounds, block = (6, 25) if quick else (16, 25)
    max_requests, max_seconds = (300, 8.0) if quick else (1200, 25.0)
    thrash_requests = 30 if quick else 90
    one_model_mb = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file()) / 2**20
    fits_all, fits_two = math.ceil(3 * one_model_mb) + 8, math.ceil(2.5 * one_model_mb)
    with endpoints(model_dir, fits_all) as (manager, single, multi, prefix):
        started = time.perf_counter()
        cold = cold_loads(multi["url"], bodies[0])
        cold_wall = time.perf_counter() - started
        reported = {m["target_model"]: m["load_seconds"] for m in loaded_models(multi["url"])["loaded"]}
        rss = resident_mb(multi["pid"])
        single_s, multi_s = interleaved(single["url"], multi["url"], bodies, rounds, block)
        spread = [{HEADER: key} for key in KEYS]
        single_load = closed_loop(single["url"], bodies, CONTENT_TYPE, 4, max_requests, max_seconds)
        spread_load = closed_loop(multi["url"], bodies, CONTENT_TYPE, 4, max_requests, max_seconds, spread)
        evictions_fitting = loaded_models(multi["url"])["evictions"]
        thrash = redeploy_multi(manager, prefix, "bench-multi-config-2", fits_two)
        thrash_load = closed_loop(thrash["url"], bodies, CONTENT_TYPE, 1, thrash_requests, max_seconds, spread)
        evictions_thrash = loaded_models(thrash["url"])["evictions"]

    result = Result("multi_model", "Multi-model endpoint vs the single-model endpoint (same artifact, loopback)")
    latency = Table(["endpoint", "requests", "p50 ms", "p95 ms", "p99 ms", "x single p50"])
    for label, values in (("single-model", single_s), ("multi-model, TargetModel v1 (warm)", multi_s)):
        latency.add(label, len(values), 1000 * median(values), 1000 * percentile(values, 95),
                    1000 * percentile(values, 99), ratio(median(values), median(single_s)))
    result.tables.append(("Warm latency, concurrency 1 (single and multi blocks alternate):", latency))
    loads = Table(["model", "first request ms", "load s (server)", "ok"])
    for key, seconds, ok in cold:
        loads.add(key, 1000 * seconds, reported.get(key, float("nan")), ok)
    result.tables.append((f"Cold loads (unpack + import + model_fn; one model's unpacked size {one_model_mb:.1f} "
                          f"MB; server resident memory with all 3 loaded {rss:.0f} MB):", loads))
    throughput = Table(["endpoint", "memory budget MB", "requests", "errors", "req/s", "evictions", "p50 ms"])
    throughput.add("single-model, concurrency 4", "", len(single_load.latencies_s), single_load.errors,
                   single_load.requests_per_s, "", 1000 * median(single_load.latencies_s))
    throughput.add("multi-model, 3 models round-robin, concurrency 4", fits_all, len(spread_load.latencies_s),
                   spread_load.errors, spread_load.requests_per_s, evictions_fitting,
                   1000 * median(spread_load.latencies_s))
    throughput.add("multi-model, 3 models round-robin over a budget for 2, concurrency 1", fits_two,
                   len(thrash_load.latencies_s), thrash_load.errors, thrash_load.requests_per_s, evictions_thrash,
                   1000 * median(thrash_load.latencies_s))
    result.tables.append(("Throughput (closed loop, keep-alive connections):", throughput))
    p50_ratio = ratio(median(multi_s), median(single_s))
    result.figures = {"single_p50_ms": 1000 * median(single_s), "multi_p50_ms": 1000 * median(multi_s),
                      "p50_ratio": p50_ratio, "cold_first_request_ms": {k: 1000 * s for k, s, _ in cold},
                      "cold_wall_s": cold_wall, "resident_mb_3_models": rss, "one_model_mb": one_model_mb,
                      "spread_requests_per_s": spread_load.requests_per_s,
                      "single_requests_per_s": single_load.requests_per_s, "thrash_evictions": evictions_thrash,
                      "errors": single_load.errors + spread_load.errors + thrash_load.errors}
    result.targets[f"warm TargetModel p50 <= {TARGET_P50_RATIO}x single-model p50 ({p50_ratio:.2f}x)"] = (
        p50_ratio <= TARGET_P50_RATIO)
    result.targets["no errors, no evictions while the 3 models fit"] = (
        result.figures["errors"] == 0 and evictions_fitting == 0 and all(ok for _, _, ok in cold))
    return result
