"""render_html: a self-contained page with every section, or the reason a section is empty; and the `report`
command on both targets (local: a workspace written by report_runs.LocalRuns; sagemaker: moto)."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws
from PIL import Image
from report_runs import DEFINITION, PIPELINE, LocalRuns

import pipeline
from pipelines.report import render_html
from pipelines.report.model import ReportData, StepNode

SECTION_IDS = ("steps", "tuning", "training", "rules", "profiler", "evaluation", "explain", "deployment")
# Every attribute or CSS value that could make a browser fetch something.
REFERENCE = re.compile(r"""(?:\bsrc|\bhref|\baction|\bposter|\bdata)\s*=\s*["']([^"']*)["']|url\(\s*["']?([^"')]*)""")


def references(page: str) -> list[str]:
    return [a or b for a, b in REFERENCE.findall(page)]


def images(page: str) -> list[Image.Image]:
    found = []
    for uri in re.findall(r'<img[^>]*\ssrc="([^"]*)"', page):
        assert uri.startswith("data:image/png;base64,"), uri[:60]
        image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1], validate=True)))
        image.verify()  # a truncated or corrupt PNG raises here
        found.append(image)
    return found


@pytest.fixture
def full_page(succeeded_report: tuple[LocalRuns, ReportData, str]) -> str:
    return succeeded_report[2]


def test_full_page_has_every_section_and_loads_nothing_from_elsewhere(full_page: str) -> None:
    for anchor in SECTION_IDS:
        assert f'<section id="{anchor}">' in full_page
    assert all(ref.startswith(("data:", "#")) for ref in references(full_page)), references(full_page)
    assert "<script" not in full_page.lower() and "@import" not in full_page
    assert 'class="missing"' not in full_page  # nothing was left out


def test_full_page_images_are_valid_pngs(full_page: str) -> None:
    found = images(full_page)
    # tuning scatter, training curves, system timeline, the job's confusion matrix, the class balance; overlays:
    # 6 samples, the top-loss image, the confused pair's example
    assert len(found) == 13
    assert all(image.format == "PNG" and image.size[0] > 10 for image in found)


def test_full_page_shows_what_a_person_looks_for(full_page: str) -> None:
    text = " ".join(re.sub(r"<[^>]+>", " ", full_page).split())
    for expected in ("goodrun00001", "IssuesFound", "loss did not decrease for 3 steps", "not evaluated",
                     "2 cores, 0 dataloader workers", "104% of a core", "★ 001-abc", "95.0%", "gate ≥ 0.900", "passed",
                     "model-package/image-classifier/1", "PendingManualApproval", "ml.m5.large", "if true", "else",
                     "CheckAccuracy was true", "30.5 s"):
        assert expected in text, expected
    assert 'data-status="NotRun"' in full_page and 'stroke-dasharray' in full_page  # the branch not taken


def test_failed_execution_page_says_why_each_section_is_empty(local_runs: LocalRuns) -> None:
    local_runs.add_failed_at_prepare()
    page = render_html(local_runs.target().report_data("badrun000001"))

    assert images(page) == []
    assert page.count('class="missing"') >= 8
    assert "<b>No tuning results</b>: TuneHyperparameters did not run: the execution failed before it" in page
    assert "<b>No evaluation</b>: EvaluateModel did not run: the execution failed before it" in page
    assert 'No S3 objects found under S3 URL &quot;s3://x/&lt;input&gt;&quot;' in page  # escaped, not markup
    assert '<div class="alert"><b>Failure reason:</b> Step PrepareData failed' in page


def test_minimal_data_renders_with_every_reason() -> None:
    data = ReportData(target="sagemaker", pipeline_name="p<1>", execution_arn="arn:x/execution/e1",
                      execution_id="e1", status="Executing", generated_at="now",
                      steps=[StepNode(name="A", type="Processing", status="Unknown")],
                      missing={"steps": "ListPipelineExecutionSteps failed (not implemented)",
                               "tuning": "the pipeline has no tuning step"})
    page = render_html(data)

    assert "<h1>p&lt;1&gt; " in page and "still running" in page
    assert "ListPipelineExecutionSteps failed (not implemented)" in page
    assert "the pipeline has no tuning step" in page
    # steps, tuning, training, both kinds of rules, system metrics, recommendations, evaluation, explanation, model,
    # endpoint, batch transform
    assert page.count('class="missing"') == 12


def test_render_is_pure(succeeded_report: tuple[LocalRuns, ReportData, str]) -> None:
    _, data, page = succeeded_report
    assert render_html(data) == page  # the same data, the same page: nothing else is read


# ---------------------------------------------------------------------------------------------- the command
def test_report_command_writes_the_page_named_after_the_execution(local_runs: LocalRuns, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    local_runs.add_succeeded()
    monkeypatch.setenv("PIPELINE_LOCAL_WORKSPACE", str(local_runs.workspace.root))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(pipeline.cli, ["report"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "report-goodrun00001.html"
    assert (tmp_path / "report-goodrun00001.html").read_text().startswith("<!DOCTYPE html>")

    local_runs.add_failed_at_prepare()  # the latest now; a page without pictures is quicker to make
    out = tmp_path / "sub" / "r.html"
    result = CliRunner().invoke(pipeline.cli, ["report", "badrun000001", "-o", str(out)])
    assert result.exit_code == 0 and result.stdout.strip() == str(out) and out.is_file()


def test_report_command_refuses_an_unknown_execution(local_runs: LocalRuns, monkeypatch: pytest.MonkeyPatch) -> None:
    local_runs.add_succeeded()
    monkeypatch.setenv("PIPELINE_LOCAL_WORKSPACE", str(local_runs.workspace.root))
    result = CliRunner().invoke(pipeline.cli, ["report", "nope"])
    assert result.exit_code == 2
    assert "no local execution 'nope'" in result.stderr and "Traceback" not in result.output


def test_report_command_on_sagemaker_from_moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto runs nothing and cannot list steps: the page has the execution, the graph and says why the rest is
    missing."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    role = "arn:aws:iam::123456789012:role/PipelineExecution"
    with mock_aws():
        client = boto3.client("sagemaker", region_name="us-east-1")
        client.create_pipeline(PipelineName=PIPELINE, PipelineDefinition=json.dumps(DEFINITION), RoleArn=role)
        arn = client.start_pipeline_execution(PipelineName=PIPELINE, PipelineParameters=[
            {"Name": "AccuracyThreshold", "Value": "0.8"}])["PipelineExecutionArn"]
        result = CliRunner().invoke(pipeline.cli, ["--target", "sagemaker", "--role-arn", role, "--bucket", "b",
                                                   "report"])
    assert result.exit_code == 0, result.output
    execution_id = arn.rsplit("/", 1)[1]
    page = (tmp_path / f"report-{execution_id}.html").read_text()
    assert arn in page and "AccuracyThreshold" in page and "0.8" in page
    assert "ListPipelineExecutionSteps failed" in page
    assert page.count('data-status="Unknown"') == 12  # every step of the definition, both branches included


def test_a_data_parallel_training_job_shows_its_instance_count() -> None:
    from pipelines.report.render_ml import training_html
    from pipelines.report.sections import training_section

    described = {"TrainingJobName": "trainmodel-x", "TrainingJobStatus": "Completed",
                 "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 2},
                 "HyperParameters": {"lr": "0.01", "sagemaker_instance_count": "2"}}
    data = ReportData(target="local", pipeline_name="p", execution_arn="arn:x/execution/e1", execution_id="e1",
                      status="Succeeded", generated_at="now", training=training_section(described))
    text = " ".join(re.sub(r"<[^>]+>", " ", training_html(data)).split())
    assert "Instances 2 (data-parallel)" in text and "ml.g5.xlarge" in text
    assert "sagemaker_instance_count" not in text  # the SDK's hyperparameters stay out of the table
    one = training_section({**described, "ResourceConfig": {"InstanceType": "ml.m5.xlarge"}})
    assert one.instance_count is None
