"""What `models` and `endpoints` show on both targets: a model package's test accuracy and bias verdict, an endpoint's
address."""

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


def bias_summary_of(report: Mapping[str, Any] | None) -> str | None:
    """The one-line verdict of a Bias report (ExplainModel's bias.json), if it has one."""
    summary = report.get("summary") if isinstance(report, Mapping) else None
    return summary if isinstance(summary, str) and summary.strip() else None


def sagemaker_endpoint_url(region: str, name: str) -> str:
    """Where a SageMaker endpoint answers (InvokeEndpoint); DescribeEndpoint has no URL, only the ARN."""
    return f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{name}/invocations"
