"""The CLI's commands for what a pipeline leaves behind: registered model versions and endpoints, on both targets
(the local registry and endpoints answer what ListModelPackages, ListEndpoints and InvokeEndpoint do)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from pipelines.cli_app import App, console, err_console
from pipelines.try_it import DEFAULT_PORT


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
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
@click.pass_obj
def models(app: App, as_json: bool) -> None:
    """List registered model versions (Model Registry) with approval status, test accuracy and bias verdict."""
    from pipelines.progress import print_json

    rows = app.target().list_models()
    if as_json:
        print_json(console, rows)
        return
    table = Table("model package", "approval", "accuracy", "created", "bias")
    for row in rows:
        accuracy = row.get("accuracy")
        table.add_row(row["arn"], row["approval"], f"{accuracy:.4f}" if accuracy is not None else "",
                      str(row.get("created", "")), row.get("bias") or "")
    console.print(table)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
@click.pass_obj
def endpoints(app: App, as_json: bool) -> None:
    """List endpoints: name, model, address, status; for a multi-model endpoint, the models it has loaded."""
    from pipelines.progress import print_json

    rows = app.target().list_endpoints()
    if as_json:
        print_json(console, rows)
        return
    table = Table("endpoint", "status", "model", "url")
    for row in rows:
        table.add_row(row["name"], row["status"], _served(row), row.get("url", ""))
    console.print(table)


def _served(row: dict) -> str:
    """The model column: the model, and for a multi-model endpoint what it has loaded now (when it says)."""
    model = row.get("model") or ""
    if row.get("mode") != "MultiModel":
        return model
    loaded = row.get("loaded_models")
    if loaded is None:
        return f"{model} (multi-model: {row.get('model_data_prefix', '')})"
    keys = ", ".join(entry["target_model"] for entry in loaded) or "none yet"
    return f"{model} (multi-model, loaded: {keys})"


@click.command("delete-endpoint")
@click.argument("name")
@click.pass_obj
def delete_endpoint(app: App, name: str) -> None:
    """Stop and delete an endpoint."""
    app.target().delete_endpoint(name)
    console.print(f"deleted endpoint {name}")


@click.command()
@click.option("--endpoint", "endpoint_name", required=True, help="endpoint name")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--target-model", metavar="KEY",
              help="multi-model endpoint: the model to answer, a path under its prefix (v3.tar.gz for version 3)")
@click.option("--json", "as_json", is_flag=True, help="print the raw responses as JSON")
@click.pass_obj
def invoke(app: App, endpoint_name: str, files: tuple[Path, ...], target_model: str | None, as_json: bool) -> None:
    """Send images to an endpoint; prints the top labels and probabilities."""
    from pipelines.progress import print_json

    results = app.target().invoke(endpoint_name, list(files), target_model)
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


@click.command()
@click.option("--endpoint", "endpoint_name", help="endpoint name (default: [project] endpoint_name)")
@click.option("--remove", is_flag=True, help="delete the policy and deregister the variants instead")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.pass_obj
def autoscale(app: App, endpoint_name: str | None, remove: bool, as_json: bool) -> None:
    """Apply [deployment]'s autoscaling to an endpoint: each variant scales between min_instances and max_instances
    to hold target_invocations_per_instance. Safe to run again; kept through re-deploys of a new model."""
    from pipelines.progress import print_json

    name = endpoint_name or app.config.project.endpoint_name
    result = app.target().autoscale(name, remove)
    if as_json:
        print_json(console, result)
        return
    if not result["applicable"]:
        console.print(f"{name}: autoscaling {result['reason']}", highlight=False, markup=False)
        return
    if remove:
        removed = ", ".join(result["removed"]) or "none had a policy"
        console.print(f"{name}: autoscaling removed from variants: {removed}", highlight=False, markup=False)
        return
    for applied in result["applied"]:
        console.print(f"{name}/{applied['variant']}: {applied['min_instances']}..{applied['max_instances']} "
                      f"instances, target {applied['target_invocations_per_instance']} invocations per instance "
                      f"per minute ({applied['policy_arn']})", soft_wrap=True, highlight=False)


@click.command()
@click.argument("input_url", metavar="INPUT")
@click.option("--model-package", "model_package_arn", metavar="ARN",
              help="the registered model version to score with (default: the newest in the group)")
@click.option("--output", "output_url", metavar="S3_URL",
              help="where the .out files go (default: s3://<bucket>/<pipeline>/batch/<job>)")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="follow a SageMaker job to its end (a local one always runs to its end)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object: job, status, input, output")
@click.pass_obj
def batch(app: App, input_url: str, model_package_arn: str | None, output_url: str | None, wait: bool,
          as_json: bool) -> None:
    """Score every image under INPUT (a folder here, or an S3 prefix) with a registered model, as a Batch Transform
    job: one <image>.out per image, holding the model's JSON answer. Prints where they went."""
    from pipelines.progress import print_json

    result = app.target().batch_transform(model_package_arn, input_url, output_url, wait, progress=err_console.print)
    if as_json:
        print_json(console, result)
        return
    if "outputs" in result:
        err_console.print(f"{result['outputs']} .out file(s) from {result['model_package']} in "
                          f"{result['local_output']}", soft_wrap=True, highlight=False)
    else:
        err_console.print(f"transform job {result['job']}: {result['status']}", highlight=False)
    click.echo(result["output"])


@click.command()
@click.option("--endpoint", "endpoint_name", help="endpoint name (default: [project] endpoint_name)")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="port on 127.0.0.1 (0: any free one)")
@click.option("--target-model", metavar="KEY", help="multi-model endpoint: the model to answer (as for invoke)")
@click.pass_obj
def ui(app: App, endpoint_name: str | None, port: int, target_model: str | None) -> None:
    """Serve a try-it page on 127.0.0.1: drop an image, see the endpoint's top labels with probabilities and, for a
    local endpoint, its attribution overlay ([explain] method). Runs until Ctrl+C."""
    from pipelines.try_it import TryIt, TryItServer

    try_it = TryIt(app.target(), endpoint_name or app.config.project.endpoint_name, target_model,
                   overlay_method=app.config.explain.method)
    endpoint = try_it.check_endpoint()
    server = TryItServer(try_it, port, on_request=err_console.print if app.verbose else None)
    console.print(f"try-it page for endpoint {try_it.endpoint} ({endpoint.get('status', '')}): {server.url}  "
                  "(Ctrl+C to stop)", soft_wrap=True, highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped", highlight=False)
    finally:
        server.server_close()


SERVING_COMMANDS = (approve, models, invoke, endpoints, delete_endpoint, batch, autoscale, ui)
