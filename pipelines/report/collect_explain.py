"""The explainability and bias section: ExplainModel's explainability.json with its overlay PNGs, and bias.json.

The step is found by what it writes (the two outputs below, docs/container-contract.md), not by its name, so a
pipeline that renames it still gets its section; both reports are read from the step's own output URIs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pipelines.model_quality import bias_summary_of
from pipelines.report.artifacts import Files, join_uri, read_json
from pipelines.report.execution_view import ExecutionView
from pipelines.report.model import ClassAttribution, ConfusedPair, ExplainedImage, Explanation
from pipelines.report.sections import number

# ExplainModel's outputs and files (steps/explain.py; tests/report check they agree).
EXPLAINABILITY_OUTPUT, EXPLAINABILITY_FILE = "explainability", "explainability.json"
BIAS_OUTPUT, BIAS_FILE = "bias", "bias.json"


def add_explanation(view: ExecutionView, files: Files) -> None:
    name, run = _explain_step(view)
    if run is None or name is None or run.status != "Succeeded":
        view.data.missing["explain"] = view.absent(
            name, run, f"explain (a Processing step with {EXPLAINABILITY_OUTPUT} and {BIAS_OUTPUT} outputs)")
        return
    outputs = _output_uris(view.described(name, run))
    explain_uri = join_uri(outputs[EXPLAINABILITY_OUTPUT], EXPLAINABILITY_FILE) \
        if EXPLAINABILITY_OUTPUT in outputs else None
    bias_uri = join_uri(outputs[BIAS_OUTPUT], BIAS_FILE) if BIAS_OUTPUT in outputs else None
    document = read_json(files, explain_uri) if explain_uri else None
    bias = read_json(files, bias_uri) if bias_uri else None
    if not isinstance(document, Mapping) and not isinstance(bias, Mapping):
        view.data.missing["explain"] = (f"{name} succeeded but neither report could be read (looked for "
                                        f"{explain_uri or EXPLAINABILITY_FILE} and {bias_uri or BIAS_FILE})")
        return
    view.data.explanation = explanation_section(
        document if isinstance(document, Mapping) else None, bias if isinstance(bias, Mapping) else None,
        lambda overlay: files.read(join_uri(outputs[EXPLAINABILITY_OUTPUT], overlay)) if overlay else None,
        sources=(explain_uri or EXPLAINABILITY_FILE, bias_uri or BIAS_FILE))


def explanation_section(document: Mapping[str, Any] | None, bias: Mapping[str, Any] | None,
                        read_overlay: Callable[[str], bytes | None], sources: tuple[str, str]) -> Explanation:
    """Pure, but for `read_overlay(relative path) -> PNG bytes | None`."""
    def image(entry: Any) -> ExplainedImage | None:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("image"), str):
            return None
        overlay = entry.get("overlay")
        return ExplainedImage(image=entry["image"], class_name=str(entry.get("class_name", "")),
                              predicted=str(entry.get("predicted", "")), probability=number(entry.get("probability")),
                              overlay=read_overlay(overlay) if isinstance(overlay, str) else None,
                              object_share=number(entry.get("object_share")))

    def images(entries: Any) -> list[ExplainedImage]:
        return [found for found in map(image, entries if isinstance(entries, list) else []) if found]

    explained = document or {}
    pairs = [ConfusedPair(actual=str(p.get("actual", "")), predicted=str(p.get("predicted", "")),
                          count=int(number(p.get("count")) or 0), examples=images(p.get("examples")))
             for p in explained.get("most_confused_pairs") or [] if isinstance(p, Mapping)]
    per_class = [ClassAttribution(name=str(c.get("class_name", "")), images=int(number(c.get("images")) or 0),
                                  mean_object_share=number(c.get("mean_object_share")),
                                  mean_focus_area=number(c.get("mean_focus_area")))
                 for c in explained.get("per_class") or [] if isinstance(c, Mapping)]
    balance = bias or {}
    counts = {str(split): {str(name): int(number(n) or 0) for name, n in by_class.items()}
              for split, by_class in (balance.get("class_counts") or {}).items() if isinstance(by_class, Mapping)}
    missing = {}
    if document is None:
        missing["explainability"] = f"{sources[0]} could not be read"
    if bias is None:
        missing["bias"] = f"{sources[1]} could not be read"
    return Explanation(
        source=" and ".join(sources), method=explained.get("method"), samples=images(explained.get("samples")),
        confused=pairs, top_loss=images(explained.get("top_loss")), per_class=per_class, class_counts=counts,
        recall={str(k): number(v) for k, v in (balance.get("recall") or {}).items()},
        verdict=bias_summary_of(bias),
        findings=[str(f["text"]) for f in balance.get("findings") or [] if isinstance(f, Mapping) and f.get("text")],
        missing=missing)


def _explain_step(view: ExecutionView) -> tuple[str | None, Any]:
    runs = view.facts.runs or {}
    for step in view.definition_steps():
        outputs = ((step.get("Arguments") or {}).get("ProcessingOutputConfig") or {}).get("Outputs") or []
        if step.get("Type") == "Processing" and \
                {EXPLAINABILITY_OUTPUT, BIAS_OUTPUT} <= {o.get("OutputName") for o in outputs}:
            return str(step["Name"]), runs.get(str(step["Name"]))
    return None, None


def _output_uris(described: Mapping[str, Any]) -> dict[str, str]:
    return {str(o.get("OutputName")): o["S3Output"]["S3Uri"]
            for o in (described.get("ProcessingOutputConfig") or {}).get("Outputs") or []
            if isinstance((o.get("S3Output") or {}).get("S3Uri"), str)}
