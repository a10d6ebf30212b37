"""Runs the benchmarks and prints their tables: `python benchmarks/run.py [--quick] [--only NAME ...] [--json OUT]`.

    training  scripts/train.py vs a notebook-style reference loop: images/s, validation accuracy
    training-real  the same on 500x375 photos at 224 px: ResNet-50/18, frozen backbone and full fine-tuning
    endpoint  the local endpoint vs the same work in-process: p50/p95/p99 latency, requests/s at concurrency 1, 4, 16
    multi_model  a multi-model endpoint vs the single-model one: warm p50, cold loads, throughput over 3 models
    distributed  one training job on 1 vs 2 local hosts (DDP): wall-time ratio, communication share, accuracy
    engine    a full default local run: wall time vs the jobs' own wall times
    cloud     jobs, instance-hours, repack and step caching, from the SageMaker definition alone
    photos    users'-style 500x375 photos on the local defaults vs the former 32 px preset: accuracy, wall time

`--quick` (about 20 minutes on 2 cores, 14 of them training-real): fewer epochs, images, repeats and requests;
the full mode adds ablations.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/run.py` from anywhere

from benchmarks import (  # noqa: E402
    cloud_cost,
    distributed,
    endpoint,
    engine,
    multi_model,
    photos,
    training,
    training_real,
)
from benchmarks.common import Result, load_average, machine  # noqa: E402

ORDER = ("training", "training-real", "endpoint", "multi_model", "distributed", "engine", "cloud", "photos")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/run.py", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few minutes: fewer epochs, repeats, requests")
    parser.add_argument("--only", nargs="+", choices=ORDER, default=list(ORDER), metavar="NAME",
                        help=f"run only these ({', '.join(ORDER)})")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--workdir", type=Path, help="keep data, logs and models here (default: a temporary dir)")
    return parser.parse_args(argv)


def run_one(name: str, workdir: Path, quick: bool, done: dict[str, Result]) -> Result:
    if name == "training":
        return training.run(workdir, quick)
    if name == "training-real":
        return training_real.run(workdir, quick)
    if name == "endpoint":
        return endpoint.run(workdir, quick)
    if name == "multi_model":
        return multi_model.run(workdir, quick)
    if name == "distributed":
        return distributed.run(workdir, quick)
    if name == "engine":
        return engine.run(workdir, quick)
    if name == "photos":
        return photos.run(workdir, quick)
    measured = done["engine"].figures.get("mean_job_s") if "engine" in done else None
    return cloud_cost.run(workdir, quick, measured)


def header(info: dict, quick: bool) -> str:
    gpu = info["gpu"] or "none"
    return (f"# Benchmarks ({'--quick' if quick else 'full'})\n\nmachine: {info['cpu']}, {info['cores']} cores, GPU "
            f"{gpu}; load average {info['load_average_1m']} at the start; Python {info['python']}, torch "
            f"{info['torch']}, {info['platform']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(header(info, args.quick), flush=True)
    results: dict[str, Result] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="benchmarks-") as scratch:
        workdir = (args.workdir or Path(scratch)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        for name in [n for n in ORDER if n in args.only]:
            begun = time.monotonic()
            results[name] = run_one(name, workdir, args.quick, results)
            print(f"\n{results[name].render()}\n\n({name}: {time.monotonic() - begun:.0f} s)", flush=True)
    elapsed = time.monotonic() - started
    print(f"\nall done in {elapsed:.0f} s; load average {load_average():.2f} at the end")
    if args.json:
        summary = {"machine": info, "quick": args.quick, "seconds": elapsed, "load_average_end": load_average(),
                   "results": {name: result.to_json() for name, result in results.items()}}
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
