"""`python pipeline.py report`: one self-contained HTML page per execution.

Collection and rendering are apart: `collect_report(target, execution)` builds a `ReportData` from the local
engine's state database and workspace, or from SageMaker's Describe*/List* responses and S3; `render_html(data)`
turns it into a page and reads nothing else.
"""

from __future__ import annotations

from typing import Any

from pipelines.report.model import ReportData
from pipelines.report.render import render_html

__all__ = ["ReportData", "collect_report", "render_html"]


def collect_report(target: Any, execution: str | None) -> ReportData:
    """`target`: the CLI's target (LocalTarget or SageMakerTarget); `execution`: id or ARN, None for the latest."""
    if target.name == "local":
        from pipelines.report.local import collect_local

        return collect_local(target, execution)
    from pipelines.report.sagemaker import collect_sagemaker

    return collect_sagemaker(target, execution)
