"""The PyTorch framework our training and serving jobs run: its version pair, and SageMaker's rule for running
it distributed with torchrun. Kept free of the SDK at import time: configuration checks read it."""

from __future__ import annotations

from typing import Any

# The newest PyTorch pair the SDK (2.257) accepts for both training and inference images.
FRAMEWORK_VERSION = "2.6.0"
PY_VERSION = "py312"
TORCH_DISTRIBUTED: dict[str, Any] = {"torch_distributed": {"enabled": True}}


def torch_distributed_refusal(training_type: str) -> str | None:
    """Why SageMaker's Python SDK refuses the torch_distributed distribution for `training_type` with our PyTorch
    version (its own rule, `validate_torch_distributed_distribution`), or None when it accepts it."""
    from sagemaker.fw_utils import validate_torch_distributed_distribution

    try:
        # Our estimators pass image_uri, which makes the SDK skip this check: ask it without one.
        validate_torch_distributed_distribution(training_type, TORCH_DISTRIBUTED, FRAMEWORK_VERSION, PY_VERSION,
                                                None, "train.py")
    except ValueError as exc:
        return " ".join(str(exc).split())
    return None
