"""One training step of train.py's model, in variants, interleaved step by step in one process.

A whole training run is too noisy on a shared machine to tell a 5% difference; steps of several variants taken in
turn see the same load, so their medians compare. Run in a child process (``python -m benchmarks.step_variants``),
with OMP_WAIT_POLICY set before torch loads, as train.py does. Prints one JSON object: variant -> seconds per step.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp, as in train.py

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import torch  # noqa: E402
from inference import build_model  # noqa: E402
from modeling import create_optimizer  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.common import usable_cores  # noqa: E402

# name -> (channels_last, bf16 autocast, fused Adam); train.py on CPU is the first below 128 px, the second from it
VARIANTS: dict[str, tuple[bool, bool, bool]] = {
    "contiguous, fp32, fused Adam (train.py below 128 px)": (False, False, True),
    "channels-last (train.py from 128 px)": (True, False, True),
    "for-loop Adam (torch's CPU default)": (False, False, False),
    "bf16 autocast": (False, True, True),
}


def make_step(channels_last: bool, bf16: bool, fused: bool, arch: str, size: int, batch: int) -> Callable[[], None]:
    layout = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    model = build_model(arch, 10).to(memory_format=layout)
    optimizer = (create_optimizer("adam", model, 1e-3, 1e-4, 0.9) if fused
                 else torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4))
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    inputs = torch.randn(batch, 3, size, size).contiguous(memory_format=layout)
    labels = torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = criterion(model(inputs), labels)
        loss.backward()
        optimizer.step()

    return step


def measure(names: list[str], steps: int, warmup: int, arch: str, size: int, batch: int,
            budget_s: float) -> dict[str, list[float]]:
    """Seconds of each step per variant; stops early once `budget_s` is spent (a pathological variant)."""
    made = {name: make_step(*VARIANTS[name], arch, size, batch) for name in names}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    deadline = time.monotonic() + budget_s
    for i in range(warmup + steps):
        for name, step in made.items():
            started = time.perf_counter()
            step()
            if i >= warmup:
                seconds[name].append(time.perf_counter() - started)
        if time.monotonic() > deadline:
            break
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-bf16", action="store_true", help="leave bf16 out: it can take seconds a step")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--budget-s", type=float, default=120)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or usable_cores()))  # as train.py sizes it
    names = [name for name in VARIANTS if not (args.no_bf16 and "bf16" in name)]
    seconds = measure(names, args.steps, args.warmup, args.arch, args.image_size, args.batch_size,
                      args.budget_s)
    print(json.dumps({name: {"median_s": statistics.median(v) if v else None, "steps": len(v),
                             "p90_s": sorted(v)[int(0.9 * (len(v) - 1))] if v else None}
                      for name, v in seconds.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
