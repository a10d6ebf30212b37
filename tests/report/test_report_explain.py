"""The report's explainability and bias section: ExplainModel's two reports and overlays, read from the step's own
outputs, and what the page says when any of them is missing."""

from __future__ import annotations

import json
import re

from report_runs import BIAS_VERDICT, BUCKET, DEFINITION, PIPELINE, PIPELINE_ARN, LocalRuns

from pipelines.report import collect_explain, render_html
from steps import explain


def text_of(page: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def explain_section(page: str) -> str:
    start = page.index('<section id="explain">')
    return page[start:page.index("</section>", start)]


def test_the_report_finds_the_reports_where_explain_model_writes_them() -> None:
    assert (collect_explain.EXPLAINABILITY_OUTPUT, collect_explain.EXPLAINABILITY_FILE) == \
        (explain.EXPLAINABILITY_OUTPUT, explain.EXPLAINABILITY_FILE)
    assert (collect_explain.BIAS_OUTPUT, collect_explain.BIAS_FILE) == (explain.BIAS_OUTPUT, explain.BIAS_FILE)


def test_the_section_shows_the_verdict_the_balance_the_overlays_and_the_confused_pairs(local_runs: LocalRuns) -> None:
    local_runs.add_succeeded()
    data = local_runs.target().report_data("goodrun00001")
    explanation = data.explanation
    assert explanation is not None and "explain" not in data.missing
    assert explanation.verdict == BIAS_VERDICT + " (+1 more)"
    assert explanation.class_counts["train"] == {"0-zero": 40, "1-one": 40, "2-two": 4}
    assert [s.image for s in explanation.samples] == [f"{c}/{n}.png" for c in ("0-zero", "1-one", "2-two")
                                                      for n in ("a", "b")]
    assert all(s.overlay and s.overlay.startswith(b"\x89PNG") for s in explanation.samples)
    section = explain_section(render_html(data))
    text = text_of(section)
    for expected in (BIAS_VERDICT, "class 2-two is 4.8% of training but 33.3% of test", "Grad-CAM",
                     "2-two taken for 0-zero: 2 test image(s)", "2-two → 0-zero (70.0%)", "0.410",
                     "Highest-loss test images"):
        assert expected in text, expected
    assert 'class="verdict act"' in section  # findings: the verdict asks for action
    assert section.count('<figure class=wrong>') == 2  # the mistake, in the top-loss grid and in its pair
    assert 'class="missing"' not in section


def test_a_lost_overlay_is_named_and_the_rest_still_show(local_runs: LocalRuns) -> None:
    local_runs.add_succeeded(lost_overlay="1-one/b.png")
    section = explain_section(render_html(local_runs.target().report_data("goodrun00001")))
    assert section.count('class="missing"') == 1
    assert "overlay of 1-one/b.png</b>: its overlay PNG could not be read" in section
    assert section.count("<img") == 1 + 5 + 2  # the balance chart, the other samples, the mistake twice


def test_an_unreadable_explainability_report_keeps_the_bias_verdict(local_runs: LocalRuns) -> None:
    local_runs.add_succeeded()
    local_runs.write(f"{BUCKET}/goodrun00001/ExplainModel/output/explainability/explainability.json", "{not json")
    data = local_runs.target().report_data("goodrun00001")
    section = explain_section(render_html(data))
    assert BIAS_VERDICT in section
    assert "<b>No attribution overlays</b>: s3://local-pipeline/image-classifier/goodrun00001/ExplainModel/output/" \
           "explainability/explainability.json could not be read" in section


def test_a_run_whose_explain_step_did_not_run_says_why(local_runs: LocalRuns) -> None:
    local_runs.add_succeeded(explained=False)
    data = local_runs.target().report_data("goodrun00001")
    assert data.explanation is None
    assert data.missing["explain"].startswith("ExplainModel did not run")
    assert "<b>No explanation</b>: ExplainModel did not run" in render_html(data)


def test_a_pipeline_without_explain_model_says_it_has_none(local_runs: LocalRuns) -> None:
    definition = json.loads(json.dumps(DEFINITION))
    definition["Steps"] = [s for s in definition["Steps"] if s["Name"] != "ExplainModel"]
    local_runs.store.upsert_pipeline(PIPELINE, PIPELINE_ARN, json.dumps(definition), None)
    local_runs.add_succeeded(explained=False)
    with local_runs.store.transaction() as db:
        db.execute("UPDATE executions SET definition = ?", (json.dumps(definition),))
    data = local_runs.target().report_data("goodrun00001")
    assert data.missing["explain"] == \
        "the pipeline has no explain (a Processing step with explainability and bias outputs) step"
