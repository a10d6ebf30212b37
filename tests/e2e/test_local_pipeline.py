"""The whole pipeline on the local target, through the real CLI: upsert, start, inspect, invoke, approve, re-deploy,
delete. One workspace for the module, one full run shared by the tests; they run in file order (later ones change
what earlier ones look at: a second run, an approval, a deleted endpoint)."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

PIPELINE_ARN = "arn:aws:sagemaker:us-east-1:000000000000:pipeline/image-classifier"
ENDPOINT = "image-classifier"
HAPPY_STEPS = ("PrepareData", "TuneHyperparameters", "TrainModel", "EvaluateModel", "ExplainModel",
               "CheckAccuracy", "ImageClassifier-RegisterModel", "ServingModel-CreateModel", "EndpointConfig",
               "Endpoint", "BatchTransform")
RUN_TIMEOUT_S = 300  # a whole run at the tiny settings takes well under a minute on 2 idle cores


def steps_by_name(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in summary["steps"]}


def class_names(data_dir: Path) -> set[str]:
    return {p.name for p in data_dir.iterdir() if p.is_dir()}


class Deployed:
    """What the module's first run left: its CLI, the upsert output and the `start --json` summary."""

    def __init__(self, cli: Any, data: Path, upsert_out: str, started: dict[str, Any]) -> None:
        self.cli, self.data, self.upsert_out, self.started = cli, data, upsert_out, started

    @property
    def execution_arn(self) -> str:
        return self.started["arn"]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, make_cli, tiny_config_with_batch: Path, digits_input: Path):
    cli = make_cli(tmp_path_factory.mktemp("pipeline") / "ws", tiny_config_with_batch)
    try:
        upsert_out = cli.run("upsert").stdout
        started = cli.json("start", "--wait", "--json", "--param", f"InputDataUrl={digits_input}",
                           timeout=RUN_TIMEOUT_S)
        yield Deployed(cli, digits_input, upsert_out, started)
    finally:
        cli.shut_down()


def port_accepts(url: str) -> bool:
    parsed = urlparse(url)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        return sock.connect_ex((parsed.hostname, parsed.port)) == 0


def test_upsert_prints_the_local_pipeline_arn(deployed):
    assert deployed.upsert_out.strip().splitlines()[-1] == PIPELINE_ARN


def test_start_wait_json_reports_the_execution_and_every_step_succeeded(deployed):
    summary = deployed.started
    assert summary["status"] == "Succeeded", summary.get("failure_reason")
    assert summary["failure_reason"] is None
    assert re.fullmatch(rf"{re.escape(PIPELINE_ARN)}/execution/[a-z0-9]+", summary["arn"])
    steps = steps_by_name(summary)
    assert set(steps) == set(HAPPY_STEPS)  # and no AccuracyTooLow: the gate passed
    assert {name: steps[name]["status"] for name in HAPPY_STEPS} == dict.fromkeys(HAPPY_STEPS, "Succeeded")
    assert summary["parameters"]["InputDataUrl"] == str(deployed.data)
    assert summary["parameters"]["ImageSize"] == 16 and summary["parameters"]["AccuracyThreshold"] == 0.0
    assert steps["CheckAccuracy"]["details"] == {"Outcome": True}
    best = steps["TuneHyperparameters"]["details"]["BestTrainingJob"]
    assert set(best["TunedHyperParameters"]) == {"lr", "batch_size", "epochs"}
    assert 0 <= steps["TrainModel"]["details"]["Metrics"]["validation:accuracy"] <= 1


def test_status_json_of_the_latest_execution_agrees_with_start(deployed):
    status = deployed.cli.json("status", "--json")
    started = deployed.started
    assert (status["arn"], status["status"]) == (started["arn"], "Succeeded")
    assert [(s["name"], s["status"]) for s in status["steps"]] == [(s["name"], s["status"]) for s in started["steps"]]
    by_arn = deployed.cli.json("status", started["arn"], "--json")
    assert by_arn["arn"] == started["arn"] and by_arn["status"] == "Succeeded"


def test_executions_json_lists_the_execution_as_succeeded(deployed):
    rows = deployed.cli.json("executions", "--json")
    assert [(row["arn"], row["status"]) for row in rows] == [(deployed.execution_arn, "Succeeded")]
    table = deployed.cli.run("executions").stdout
    assert deployed.execution_arn.rsplit("/", 1)[-1] in table and "Succeeded" in table


def test_models_json_shows_one_pending_version_with_its_test_accuracy(deployed):
    models = deployed.cli.json("models", "--json")
    assert len(models) == 1, models
    model = models[0]
    registered = steps_by_name(deployed.started)["ImageClassifier-RegisterModel"]["details"]
    assert model["arn"] == registered["ModelPackageArn"]
    assert model["approval"] == "PendingManualApproval" == registered["ModelApprovalStatus"]
    assert isinstance(model["accuracy"], float) and 0 <= model["accuracy"] <= 1


def test_the_registered_version_has_bias_and_explainability_reports_that_exist_and_parse(deployed):
    [model] = deployed.cli.json("models", "--json")
    assert set(model["metrics"]) == {"ModelQuality.Statistics", "Bias.Report", "Explainability.Report"}
    execution_id = deployed.execution_arn.rsplit("/", 1)[-1]
    output = deployed.cli.workspace / "s3" / "local-pipeline" / "image-classifier" / execution_id / "ExplainModel" / \
        "output"
    reports = {"Bias": json.loads((output / "bias" / "bias.json").read_text()),
               "Explainability": json.loads((output / "explainability" / "explainability.json").read_text())}
    assert model["metrics"]["Bias.Report"] == reports["Bias"]  # the registry keeps what the job wrote
    assert model["metrics"]["Explainability.Report"] == reports["Explainability"]
    classes = class_names(deployed.data)
    assert {facet["value_or_threshold"] for facet in
            reports["Bias"]["pre_training_bias_metrics"]["facets"]["class"]} == classes
    assert {sample["class_name"] for sample in reports["Explainability"]["samples"]} == classes
    assert all((output / "explainability" / sample["overlay"]).is_file()
               for sample in reports["Explainability"]["samples"])
    assert model["bias"] == reports["Bias"]["summary"]


def test_the_report_shows_an_overlay_of_every_class_and_the_bias_verdict(deployed, tmp_path):
    page = tmp_path / "report.html"
    deployed.cli.run("report", "-o", str(page))
    html = page.read_text()
    section = html[html.index('<section id="explain">'):]
    section = section[:section.index("</section>")]
    shown = set(re.findall(r'<img class="chart" src="data:image/png;base64,[^"]+" alt="overlay of ([^/"]+)/', section))
    assert shown == class_names(deployed.data)
    assert 'class="missing"' not in section
    assert deployed.cli.json("models", "--json")[0]["bias"].replace("'", "&#x27;") in section


def test_endpoints_json_shows_the_endpoint_in_service_on_loopback(deployed):
    endpoints = deployed.cli.live_endpoints()
    assert [e["name"] for e in endpoints] == [ENDPOINT]
    endpoint = endpoints[0]
    assert endpoint["status"] == "InService"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", endpoint["url"]), endpoint["url"]
    assert steps_by_name(deployed.started)["Endpoint"]["details"]["Url"] == endpoint["url"]
    assert port_accepts(endpoint["url"])


def test_invoke_with_a_digit_png_prints_a_class_name(deployed):
    image = sorted((deployed.data / "3-three").glob("*.png"))[0]
    out = deployed.cli.run("invoke", "--endpoint", ENDPOINT, str(image)).stdout
    labels = re.findall(r"^\s+(\S+)\s+([01]\.\d{3})$", out, flags=re.MULTILINE)
    assert labels, out
    assert {label for label, _ in labels} <= class_names(deployed.data)


def workspace_path(deployed, uri: str) -> Path:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return deployed.cli.workspace / "s3" / bucket / key


def top_label(response_text: str) -> str:
    return json.loads(response_text)["predictions"][0]["top_k"][0]["label"]


def test_batch_transform_wrote_one_out_per_test_image_that_agrees_with_invoke(deployed):
    details = steps_by_name(deployed.started)["BatchTransform"]["details"]
    inputs, outputs = workspace_path(deployed, details["TransformInput"]), workspace_path(deployed,
                                                                                        details["TransformOutput"])
    images = sorted(p.relative_to(inputs).as_posix() for p in inputs.rglob("*") if p.is_file())
    written = sorted(p.relative_to(outputs).as_posix() for p in outputs.rglob("*") if p.is_file())
    assert images and written == [f"{image}.out" for image in images]  # SageMaker's naming, class folders kept
    for image in images[:: max(1, len(images) // 3)]:
        [answer] = deployed.cli.json("invoke", "--json", "--endpoint", ENDPOINT, str(inputs / image))
        assert top_label((outputs / f"{image}.out").read_text()) == top_label(answer["response"]), image


def test_batch_scores_a_folder_with_the_registered_model_and_prints_where_the_outputs_went(deployed):
    folder = deployed.data / "3-three"
    result = deployed.cli.run("batch", str(folder))
    output = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"s3://local-pipeline/image-classifier/batch/batch-[a-z0-9]+", output), output
    written = sorted(p.name for p in workspace_path(deployed, output).rglob("*.out"))
    assert written == sorted(f"{p.name}.out" for p in folder.iterdir() if p.is_file())
    assert f"{len(written)} .out file(s) from " in " ".join(result.stderr.split())
    image = sorted(folder.glob("*.png"))[0]
    [answer] = deployed.cli.json("invoke", "--json", "--endpoint", ENDPOINT, str(image))
    assert top_label((workspace_path(deployed, output) / f"{image.name}.out").read_text()) == \
        top_label(answer["response"])


def test_batch_with_an_undecodable_file_fails_naming_it_with_the_handlers_400(deployed, tmp_path):
    folder = tmp_path / "to-score"
    folder.mkdir()
    (folder / "good.png").write_bytes(sorted((deployed.data / "3-three").glob("*.png"))[0].read_bytes())
    (folder / "broken.png").write_bytes(b"half a download")
    result = deployed.cli.run("batch", str(folder), expect_rc=2)
    message = " ".join(result.stderr.split())
    assert "failed: ClientError: broken.png: the model answered HTTP 400:" in message, result.stderr
    assert "cannot decode image" in message and "Traceback" not in result.stderr


def test_batch_of_a_folder_that_does_not_exist_exits_2_saying_so(deployed, tmp_path):
    result = deployed.cli.run("batch", str(tmp_path / "nope"), expect_rc=2)
    assert f"{tmp_path / 'nope'} does not exist: give a folder of images" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_invoke_json_with_a_text_file_exits_2_with_the_handlers_400_message(deployed, tmp_path):
    text_file = tmp_path / "not-an-image.txt"
    text_file.write_text("hello, I am not a picture\n")
    result = deployed.cli.run("invoke", "--json", "--endpoint", ENDPOINT, str(text_file), expect_rc=2)
    message = " ".join(result.stderr.split())
    assert f"endpoint {ENDPOINT} answered HTTP 400 for {text_file}" in message, result.stderr
    assert "cannot decode image" in message, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == ""


def test_logs_of_train_model_print_the_training_log_lines(deployed):
    out = deployed.cli.run("logs", "TrainModel").stdout
    job = steps_by_name(deployed.started)["TrainModel"]["details"]["TrainingJobName"]
    assert job in out
    assert re.search(r"^epoch=1/\d+ train_loss=", out, flags=re.MULTILINE), out[-2000:]
    unknown = deployed.cli.run("logs", "NoSuchStep", expect_rc=2)
    assert "has no step 'NoSuchStep'" in unknown.stderr


def test_approve_with_status_approved_changes_what_models_shows(deployed):
    arn = deployed.cli.json("models", "--json")[0]["arn"]
    out = deployed.cli.run("approve", arn, "--status", "Approved").stdout
    assert f"{arn}: Approved" in out
    assert [(m["arn"], m["approval"]) for m in deployed.cli.json("models", "--json")] == [(arn, "Approved")]


def test_second_identical_start_reuses_every_cacheable_step_and_updates_the_existing_endpoint(deployed):
    before = deployed.cli.live_endpoints()[0]
    second = deployed.cli.json("start", "--wait", "--json", "--param", f"InputDataUrl={deployed.data}",
                               timeout=RUN_TIMEOUT_S)
    assert second["status"] == "Succeeded", second.get("failure_reason")
    assert second["arn"] != deployed.execution_arn
    steps = steps_by_name(second)
    assert {name: steps[name]["status"] for name in HAPPY_STEPS} == dict.fromkeys(HAPPY_STEPS, "Succeeded")
    # The same key as the first run's: no job runs again, each step says whose result it is.
    for name in ("PrepareData", "TuneHyperparameters", "TrainModel", "EvaluateModel", "ExplainModel"):
        hit = steps[name]["details"].get("CacheHitResult")
        assert hit == {"SourcePipelineExecutionArn": deployed.execution_arn}, (name, steps[name]["details"])
    assert "CacheHitResult" not in steps["ImageClassifier-RegisterModel"]["details"]  # no CacheConfig: runs again
    execution_id = second["arn"].rsplit("/", 1)[-1]
    assert steps["EndpointConfig"]["details"]["EndpointConfigName"] == f"{ENDPOINT}-{execution_id}"
    assert steps["Endpoint"]["details"]["EndpointConfigName"] == f"{ENDPOINT}-{execution_id}"
    assert steps["Endpoint"]["details"]["EndpointStatus"] == "InService"
    after = deployed.cli.live_endpoints()
    assert [e["name"] for e in after] == [ENDPOINT]
    assert after[0]["status"] == "InService" and after[0]["config"] == f"{ENDPOINT}-{execution_id}"
    assert after[0]["url"] == before["url"], "a re-deploy keeps the endpoint's address"
    assert after[0]["pid"] != before["pid"] and after[0]["created"] == before["created"]
    seven = next((deployed.data / "7-seven").glob("*.png"))
    out = deployed.cli.run("invoke", "--endpoint", ENDPOINT, str(seven)).stdout
    assert any(name in out for name in class_names(deployed.data)), out
    assert len(deployed.cli.json("models", "--json")) == 2  # each run registers a version


def test_delete_endpoint_stops_it_and_closes_its_port(deployed):
    url = deployed.cli.live_endpoints()[0]["url"]
    out = deployed.cli.run("delete-endpoint", ENDPOINT).stdout
    assert f"deleted endpoint {ENDPOINT}" in out
    assert [e for e in deployed.cli.live_endpoints() if e["name"] == ENDPOINT and e["status"] == "InService"] == []
    assert not port_accepts(url), f"{url} still accepts connections after delete-endpoint"
    gone = deployed.cli.run("invoke", "--endpoint", ENDPOINT, str(next(deployed.data.glob("*/*.png"))), expect_rc=2)
    assert f"no local endpoint '{ENDPOINT}'" in gone.stderr
