"""Fixtures of the report tests: a workspace of local executions (report_runs.LocalRuns), and one succeeded run
collected and rendered once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from report_runs import LocalRuns

from pipelines.report import ReportData, render_html


def clear_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's PIPELINE_* settings must not reach the configuration these tests load."""
    for name in list(os.environ):
        if name.startswith("PIPELINE_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_settings(monkeypatch)


@pytest.fixture(scope="session")
def succeeded_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalRuns, ReportData, str]:
    """One succeeded run, collected and rendered once for all the tests (a full page takes a second)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        clear_settings(monkeypatch)
        runs = LocalRuns(tmp_path_factory.mktemp("report") / "ws")
        runs.add_succeeded()
        data = runs.target().report_data("goodrun00001")
    return runs, data, render_html(data)


@pytest.fixture
def local_runs(tmp_path: Path) -> LocalRuns:
    return LocalRuns(tmp_path / "ws")
