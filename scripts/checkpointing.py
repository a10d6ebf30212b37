"""Checkpoints for managed spot training: one file, replaced atomically every epoch, resumed from on restart.

SageMaker syncs the checkpoint directory to S3 and restores it into a restarted job, so a job interrupted mid-training
picks up where it stopped and still ends after the requested number of epochs.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FILE = "checkpoint.pt"


def checkpoint_path(checkpoint_dir: Path) -> Path:
    return Path(checkpoint_dir) / CHECKPOINT_FILE


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Writes to a temporary file and renames it over ``path``: a kill mid-write leaves the previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The checkpoint at ``path`` (or None) and a reason when there is none to use."""
    if not path.is_file():
        return None, "no checkpoint"
    try:
        return torch.load(path, map_location="cpu", weights_only=True), ""
    except Exception as exc:  # a truncated or foreign file must not stop training: start over instead
        return None, f"unreadable checkpoint {path} ({type(exc).__name__}: {exc})"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [value.tolist() if isinstance(value, np.ndarray) else value for value in np.random.get_state()],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def mismatched_keys(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Configuration keys whose values differ: a checkpoint from another configuration must not be resumed."""
    return sorted(key for key in set(saved) | set(current) if saved.get(key) != current.get(key))
