"""The CLI's run-and-operate commands: start, status, executions, schedule, upload-data, models, endpoints, ..."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pipelines.cli_app import App, UserError, console, err_console
from pipelines.cli_report import report
from pipelines.targets import ExecutionSummary

FAILED_STATUSES = ("Failed", "Stopped")


def _finish(summary: ExecutionSummary, as_json: bool) -> None:
    from pipelines.progress import print_execution, print_json

    if as_json:
        print_json(console, summary.to_json())
    else:
        print_execution(console, summary)
    if summary.status in FAILED_STATUSES:
        sys.exit(1)


@click.command()
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="override a pipeline parameter")
@click.option("--wait/--no-wait", default=None, help="follow the execution to its end (default: local waits)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object: ARN, status, failure, steps")
@click.pass_obj
def start(app: App, params: tuple[str, ...], wait: bool | None, as_json: bool) -> None:
    """Start an execution; with --wait, exit non-zero if it fails."""
    from pipelines.parameters import parse_parameter_overrides
    from pipelines.progress import LiveExecutionView

    parameters = parse_parameter_overrides(params)  # refused before anything is sent
    wait = app.is_local if wait is None else wait
    target = app.target()
    with LiveExecutionView(err_console, enabled=wait and not as_json) as view:
        summary = target.start(parameters, wait=wait, on_progress=view.update)
    _finish(summary, as_json)
    if app.is_local and summary.status == "Succeeded" and not as_json:
        _print_invoke_hint(app)


def _print_invoke_hint(app: App) -> None:
    endpoint = app.config.project.endpoint_name
    console.print(f"\nThe endpoint [bold]{endpoint}[/bold] is live. Try it:\n"
                  f"  python pipeline.py invoke --endpoint {endpoint} path/to/image.png\n"
                  f"  python pipeline.py endpoints")


@click.command()
@click.argument("execution_arn", required=False)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.pass_obj
def status(app: App, execution_arn: str | None, as_json: bool) -> None:
    """Show an execution (the latest when no ARN is given) and its steps."""
    from pipelines.progress import print_execution, print_json

    summary = app.target().describe_execution(execution_arn)
    if as_json:
        print_json(console, summary.to_json())
    else:
        print_execution(console, summary)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
@click.pass_obj
def executions(app: App, as_json: bool) -> None:
    """List the pipeline's executions, newest first."""
    from rich.table import Table

    from pipelines.progress import print_json

    rows = app.target().list_executions()
    if as_json:
        print_json(console, [row.to_json() for row in rows])
        return
    table = Table("execution", "status", "started", "failure reason")
    for row in rows:
        table.add_row(row.arn, row.status, row.started or "", row.failure_reason or "")
    console.print(table)


@click.command()
@click.option("--cron", help="six-field EventBridge cron expression, e.g. '0 3 * * ? *'")
@click.option("--rate", help="'N unit', e.g. '1 day' or '12 hours'")
@click.option("--name", help="schedule name (default: <pipeline>-schedule)")
@click.option("--disabled", is_flag=True, help="create the schedule switched off")
@click.option("--describe", "describe_name", metavar="NAME", help="show a schedule")
@click.option("--delete", "delete_name", metavar="NAME", help="delete a schedule")
@click.pass_obj
def schedule(app: App, cron, rate, name, disabled, describe_name, delete_name) -> None:
    """Run the pipeline on a schedule (EventBridge Scheduler; sagemaker target)."""
    from pipelines.schedules import VALID_FORMS, cron_problem, parse_rate

    chosen = [x for x in (cron, rate, describe_name, delete_name) if x]
    if len(chosen) != 1:
        raise UserError(f"give exactly one of --cron, --rate, --describe NAME, --delete NAME; the forms: {VALID_FORMS}")
    if app.is_local:
        raise UserError("schedules run on AWS (EventBridge Scheduler): use --target sagemaker")
    if cron and (problem := cron_problem(cron)):
        raise UserError(f"bad --cron {cron!r}: {problem}. Valid forms: {VALID_FORMS}")
    try:
        rate_value = parse_rate(rate) if rate else None
    except ValueError as err:
        raise UserError(f"bad --rate: {err}. Valid forms: {VALID_FORMS}") from None
    from pipelines.cloud import aws_errors

    pipeline = app.build().pipeline
    with aws_errors("schedule"):
        if describe_name:
            from pipelines.progress import print_json

            print_json(console, pipeline.describe_trigger(describe_name))
        elif delete_name:
            pipeline.delete_triggers([delete_name])
            console.print(f"deleted schedule {delete_name}")
        else:
            _put_schedule(app, pipeline, cron, rate_value, name, disabled)


def _put_schedule(app: App, pipeline, cron, rate_value, name, disabled) -> None:
    from sagemaker.workflow.triggers import PipelineSchedule

    name = name or f"{app.config.project.pipeline_name}-schedule"
    trigger = PipelineSchedule(name=name, cron=cron, rate=rate_value, enabled=not disabled)
    try:
        arns = pipeline.put_triggers([trigger], role_arn=app.config.project.role_arn)
    except RuntimeError as err:  # the SDK's word for "upsert the pipeline first"
        raise UserError(str(err)) from None
    console.print(f"schedule {name} ({'disabled' if disabled else 'enabled'}): {', '.join(arns)}", soft_wrap=True)


@click.command("upload-data")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--to", "destination", metavar="S3_URL",
              help="S3 prefix to upload to (default: where the pipeline reads InputDataUrl: [data] input_data_url, "
                   "else s3://<bucket>/<pipeline>/input-data)")
@click.pass_obj
def upload_data(app: App, source: Path, destination: str | None) -> None:
    """Upload a dataset folder or archive exactly to the pipeline's InputDataUrl (or --to); prints the S3 URL."""
    from pipelines.parameters import builtin_input_data_url, default_input_data_url
    from pipelines.s3_urls import parse_s3_url

    reads = default_input_data_url(app.config)
    if destination is not None and (destination.startswith("s3://") or not app.is_local):
        parse_s3_url(destination, "--to")  # a mistake named after the option that made it
    if destination is None and reads == builtin_input_data_url(app.config) and not app.is_local:
        from pipelines.building import require_cloud_settings

        require_cloud_settings(app.config, needs_role=False)  # the built-in location is in the project's bucket
    url = app.target().upload_data(source, destination or reads, progress=err_console.print)
    if url != reads.rstrip("/"):
        err_console.print(f"the pipeline reads {reads} by default: start it with --param InputDataUrl={url}, or set "
                          f"[data] input_data_url", soft_wrap=True, highlight=False)
    click.echo(url)


@click.command()
@click.argument("model_package_arn")
@click.option("--status", "approval", type=click.Choice(["Approved", "Rejected", "PendingManualApproval"]),
              default="Approved", show_default=True)
@click.pass_obj
def approve(app: App, model_package_arn: str, approval: str) -> None:
    """Set a registered model version's approval status."""
    app.target().approve(model_package_arn, approval)
    console.print(f"{model_package_arn}: {approval}", soft_wrap=True)  # an ARN folded at 80 columns is no ARN


@click.command()
@click.option("--endpoint", "endpoint_name", required=True, help="endpoint name")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the raw responses as JSON")
@click.pass_obj
def invoke(app: App, endpoint_name: str, files: tuple[Path, ...], as_json: bool) -> None:
    """Send images to an endpoint; prints the top labels and probabilities."""
    from pipelines.progress import print_json

    results = app.target().invoke(endpoint_name, list(files))
    if as_json:
        print_json(console, results)
        return
    for result in results:
        console.print(f"[bold]{result['file']}[/bold]")
        try:
            predictions = json.loads(result["response"])["predictions"]
        except (KeyError, TypeError, ValueError):
            console.print(f"  {result['response']}")
            continue
        for prediction in predictions:
            for entry in prediction.get("top_k", []):
                console.print(f"  {entry['label']:<24} {entry['probability']:.3f}")


def register_commands(group: click.Group) -> None:
    for command in (start, status, executions, schedule, upload_data, approve, invoke, report):
        group.add_command(command)
    from pipelines.cli_local import LOCAL_COMMANDS

    for command in LOCAL_COMMANDS:
        group.add_command(command)
