"""The CLI's commands that run the pipeline and follow its executions: start, status, executions, retry, logs,
schedule, upload-data. Each works on both targets where the service offers the same thing."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipelines.cli_app import App, UserError, console, err_console
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
@click.option("--no-cache", is_flag=True, help="run every step, even one whose CacheConfig would reuse an earlier "
                                               "result (local target)")
@click.pass_obj
def start(app: App, params: tuple[str, ...], wait: bool | None, as_json: bool, no_cache: bool) -> None:
    """Start an execution; with --wait, exit non-zero if it fails."""
    from pipelines.parameters import split_parameter_pairs
    from pipelines.progress import LiveExecutionView

    parameters = split_parameter_pairs(params)  # the target checks the values against its stored definition
    wait = app.is_local if wait is None else wait
    target = app.target()
    with LiveExecutionView(err_console, enabled=wait and not as_json) as view:
        summary = target.start(parameters, wait=wait, on_progress=view.update, use_cache=not no_cache)
    _finish(summary, as_json)
    if app.is_local and summary.status == "Succeeded" and not as_json:
        _print_invoke_hint(app)


def _print_invoke_hint(app: App) -> None:
    endpoint = app.config.project.endpoint_name
    picked = ""
    if app.config.deployment.mode == "multi-model":  # PublishModel published the newest version as v<version>
        versions = [int(row["arn"].rsplit("/", 1)[-1]) for row in app.target().list_models()
                    if row["arn"].rsplit("/", 1)[-1].isdigit()]
        picked = f" --target-model v{max(versions)}.tar.gz" if versions else " --target-model KEY"
    console.print(f"\nThe endpoint [bold]{endpoint}[/bold] is live. Try it:\n"
                  f"  python pipeline.py invoke --endpoint {endpoint}{picked} path/to/image.png\n"
                  f"  python pipeline.py ui --endpoint {endpoint}{picked}   (a page to drop images on)\n"
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
    if cron and (problem := cron_problem(cron)):
        raise UserError(f"bad --cron {cron!r}: {problem}. Valid forms: {VALID_FORMS}")
    try:
        rate_value = parse_rate(rate) if rate else None
    except ValueError as err:
        raise UserError(f"bad --rate: {err}. Valid forms: {VALID_FORMS}") from None
    target = app.target()
    if describe_name:
        from pipelines.progress import print_json

        print_json(console, target.describe_schedule(describe_name))
    elif delete_name:
        target.delete_schedule(delete_name)
        console.print(f"deleted schedule {delete_name}")
    else:
        name = name or f"{app.config.project.pipeline_name}-schedule"
        arns = target.put_schedule(name, cron, rate_value, enabled=not disabled)
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
@click.argument("execution", required=False)
@click.option("--wait/--no-wait", default=None, help="follow the retry to its end (default: local waits)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.pass_obj
def retry(app: App, execution: str | None, wait: bool | None, as_json: bool) -> None:
    """Re-run a failed execution from its failed steps, reusing what succeeded."""
    from pipelines.progress import LiveExecutionView

    wait = app.is_local if wait is None else wait
    with LiveExecutionView(err_console, enabled=wait and not as_json) as view:
        summary = app.target().retry(execution, wait=wait, on_progress=view.update)
    _finish(summary, as_json)


@click.command()
@click.argument("step", required=False)
@click.option("--execution", "execution_id", help="execution id or ARN (default: the latest)")
@click.option("--tail", type=int, default=0, help="only the last N lines of each log")
@click.option("--host", help="one host of a multi-instance job (algo-1, algo-2, ...); default: every host")
@click.pass_obj
def logs(app: App, step: str | None, execution_id: str | None, tail: int, host: str | None) -> None:
    """Print the job logs of an execution's steps (local target; SageMaker keeps them in CloudWatch)."""
    found = app.target().logs(execution_id, step, host)
    if not found:
        raise UserError(f"no job logs{' for step ' + step if step else ''} in that execution")
    for job, path in found:
        lines = Path(path).read_text(errors="replace").splitlines()
        console.rule(f"{job}  ({path})")
        for line in lines[-tail:] if tail else lines:
            console.out(line, highlight=False)


RUN_COMMANDS = (start, status, executions, retry, logs, schedule, upload_data)
