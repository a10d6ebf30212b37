"""`python pipeline.py`: build, check, deploy and run the image-classification pipeline on SageMaker or locally.

Imports of the SageMaker SDK are deferred into the commands: `--help` answers at once, and a user mistake is
reported before seconds of imports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipelines.cli_app import App, PipelineCLI, configure_logging, console, err_console
from pipelines.cli_report import report
from pipelines.cli_run import RUN_COMMANDS
from pipelines.cli_serving import SERVING_COMMANDS
from pipelines.config import TARGETS


@click.group(cls=PipelineCLI, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--target", type=click.Choice(TARGETS), help="where to run (default: [project] target, i.e. local)")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file over pipeline.toml")
@click.option("--region", help="AWS region")
@click.option("--role-arn", help="the pipeline's execution role (sagemaker target)")
@click.option("--bucket", help="S3 bucket for code, data and artifacts (sagemaker target)")
@click.option("--pipeline-name", help="pipeline name")
@click.option("-v", "--verbose", is_flag=True, help="show the SageMaker SDK's own log lines")
@click.pass_context
def cli(ctx: click.Context, target, config_file, region, role_arn, bucket, pipeline_name, verbose) -> None:
    """Train, tune, debug, gate, register and deploy an image classifier - on SageMaker, or on this machine."""
    overrides = {
        "project.target": target,
        "project.region": region,
        "project.role_arn": role_arn,
        "project.bucket": bucket,
        "project.pipeline_name": pipeline_name,
    }
    configure_logging(verbose)
    ctx.obj = App({k: v for k, v in overrides.items() if v is not None}, config_file, verbose)


@cli.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="write to FILE, not stdout")
@click.pass_obj
def definition(app: App, output: str | None) -> None:
    """Print the pipeline definition JSON (offline: nothing is uploaded)."""
    import json

    built = app.build()
    text = json.dumps(built.definition, indent=2)
    if output:
        Path(output).write_text(text + "\n")
        err_console.print(f"definition written to {output}")
    else:
        click.echo(text)
    for problem in built.problems:
        err_console.print(f"warning: {problem}", markup=False, highlight=False)


def _report_problems(problems: list) -> None:
    err_console.print(f"[red]the definition has {len(problems)} problem(s):[/red]")
    for problem in problems:
        err_console.print(f"  - {problem}", markup=False, highlight=False, soft_wrap=True)


@cli.command()
@click.pass_obj
def validate(app: App) -> None:
    """Check the definition against SageMaker's API shapes, references and limits, offline."""
    from pipelines.validation import iter_steps

    built = app.build()
    if built.problems:
        _report_problems(built.problems)
        sys.exit(1)
    count = sum(1 for _ in iter_steps(built.definition["Steps"]))
    console.print(f"[green]valid[/green]: {built.pipeline.name}, {count} steps, "
                  f"{len(built.definition['Parameters'])} parameters")


@cli.command()
@click.pass_obj
def upsert(app: App) -> None:
    """Validate, then create or update the pipeline; prints its ARN."""
    target = app.target()
    code = target.code_uploads()  # recorded while the definition is built, stored only once it is valid
    built = app.build(code)
    if built.problems:
        _report_problems(built.problems)
        err_console.print("nothing was uploaded or changed")
        sys.exit(1)
    description = f"Image classifier: tune, train, evaluate, gate on accuracy, register, deploy ({app.config.source})"
    click.echo(target.upsert(built.text, description, code))


for command in (*RUN_COMMANDS, *SERVING_COMMANDS, report):
    cli.add_command(command)

if __name__ == "__main__":
    cli()
