"""Commands for what a pipeline leaves behind: logs, retries, registered models and endpoints.

Each works on both targets where the service offers the same thing (RetryPipelineExecution, ListModelPackages,
ListEndpoints, DeleteEndpoint); `logs` reads the local engine's job logs (SageMaker keeps them in CloudWatch).
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from pipelines.cli_app import App, UserError, console, err_console


@click.command()
@click.argument("step", required=False)
@click.option("--execution", "execution_id", help="execution id or ARN (default: the latest)")
@click.option("--tail", type=int, default=0, help="only the last N lines of each log")
@click.pass_obj
def logs(app: App, step: str | None, execution_id: str | None, tail: int) -> None:
    """Print the job logs of an execution's steps (local target)."""
    if not app.is_local:
        raise UserError("on SageMaker, job logs are in CloudWatch Logs (/aws/sagemaker/TrainingJobs, "
                        "/aws/sagemaker/ProcessingJobs); `logs` reads the local engine's")
    found = app.target().logs(execution_id, step)
    if not found:
        raise UserError(f"no job logs{' for step ' + step if step else ''} in that execution")
    for job, path in found:
        lines = Path(path).read_text(errors="replace").splitlines()
        console.rule(f"{job}  ({path})")
        for line in lines[-tail:] if tail else lines:
            console.out(line, highlight=False)


@click.command()
@click.argument("execution", required=False)
@click.option("--wait/--no-wait", default=None, help="follow the retry to its end (default: local waits)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.pass_obj
def retry(app: App, execution: str | None, wait: bool | None, as_json: bool) -> None:
    """Re-run a failed execution from its failed steps, reusing what succeeded."""
    from pipelines.cli_commands import _finish
    from pipelines.progress import LiveExecutionView

    wait = app.is_local if wait is None else wait
    with LiveExecutionView(err_console, enabled=wait and not as_json) as view:
        summary = app.target().retry(execution, wait=wait, on_progress=view.update)
    _finish(summary, as_json)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
@click.pass_obj
def models(app: App, as_json: bool) -> None:
    """List registered model versions (Model Registry) with approval status and test accuracy."""
    from pipelines.progress import print_json

    rows = app.target().list_models()
    if as_json:
        print_json(console, rows)
        return
    table = Table("model package", "approval", "accuracy", "created")
    for row in rows:
        accuracy = row.get("accuracy")
        table.add_row(row["arn"], row["approval"], f"{accuracy:.4f}" if accuracy is not None else "",
                      str(row.get("created", "")))
    console.print(table)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
@click.pass_obj
def endpoints(app: App, as_json: bool) -> None:
    """List endpoints: name, model, address, status."""
    from pipelines.progress import print_json

    rows = app.target().list_endpoints()
    if as_json:
        print_json(console, rows)
        return
    table = Table("endpoint", "status", "model", "url")
    for row in rows:
        table.add_row(row["name"], row["status"], row.get("model", ""), row.get("url", ""))
    console.print(table)


@click.command("delete-endpoint")
@click.argument("name")
@click.pass_obj
def delete_endpoint(app: App, name: str) -> None:
    """Stop and delete an endpoint."""
    app.target().delete_endpoint(name)
    console.print(f"deleted endpoint {name}")


LOCAL_COMMANDS = (logs, retry, models, endpoints, delete_endpoint)
