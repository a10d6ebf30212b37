"""`report [EXECUTION] [-o FILE]`: an execution's HTML report (DAG, tuning, curves, rules, profiler, evaluation,
model, endpoint), written next to you by default."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli_app import App


@click.command()
@click.argument("execution", required=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="where to write the page (default: report-<execution id>.html here)")
@click.pass_obj
def report(app: App, execution: str | None, output: Path | None) -> None:
    """Write a self-contained HTML report of an execution (id or ARN; the latest by default); prints its path."""
    from pipelines.report import render_html

    data = app.target().report_data(execution)
    path = output or Path(f"report-{data.execution_id}.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(data), encoding="utf-8")
    click.echo(str(path))
