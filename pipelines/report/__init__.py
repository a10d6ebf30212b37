"""`python pipeline.py report`: one self-contained HTML page per execution.

Collection and rendering are apart: each target's `report_data(execution)` builds a `ReportData` — the local
engine's from its state database and workspace (`local.py`), SageMaker's from its Describe*/List* responses and S3
(`sagemaker.py`), both through `assemble.build_report`; `render_html(data)` turns it into a page and reads nothing
else.
"""

from __future__ import annotations

from pipelines.report.model import ReportData
from pipelines.report.render import render_html

__all__ = ["ReportData", "render_html"]
