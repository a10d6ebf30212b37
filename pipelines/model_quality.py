"""What `models` and `endpoints` show on both targets: a model package's test accuracy, an endpoint's address."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def accuracy_of(statistics: Mapping[str, Any] | None) -> float | None:
    """Test accuracy from a model-quality statistics document (evaluation.json: multiclass or binary), if any."""
    if not isinstance(statistics, Mapping):
        return None
    for problem in ("multiclass_classification_metrics", "binary_classification_metrics"):
        value = ((statistics.get(problem) or {}).get("accuracy") or {}).get("value")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def sagemaker_endpoint_url(region: str, name: str) -> str:
    """Where a SageMaker endpoint answers (InvokeEndpoint); DescribeEndpoint has no URL, only the ARN."""
    return f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{name}/invocations"
