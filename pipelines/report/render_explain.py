"""The report's explainability and bias section (an HTML fragment from ReportData.explanation): the verdict a
person can act on, the class balance per split, the overlays in a grid, the most-confused pairs."""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.config_schema import EXPLAIN_METHOD_NAMES
from pipelines.report import charts
from pipelines.report.html_parts import esc, fmt, image, missing, pct, table
from pipelines.report.model import ExplainedImage, Explanation, ReportData


def explanation_html(data: ReportData) -> str:
    explanation = data.explanation
    if explanation is None:
        return missing("No explanation", data.missing.get("explain"))
    return (_verdict(explanation) + _balance(explanation) + _overlays(explanation) + _confused(explanation)
            + f"<small>from {esc(explanation.source)}</small>")


def _verdict(explanation: Explanation) -> str:
    if "bias" in explanation.missing:
        return missing("No bias verdict", explanation.missing["bias"])
    headline = f'<div class="verdict{" act" if explanation.findings else ""}">{esc(explanation.verdict)}</div>'
    more = "".join(f"<li>{esc(text)}</li>" for text in explanation.findings[1:])
    return headline + (f'<ul class="recs">{more}</ul>' if more else "")


def _balance(explanation: Explanation) -> str:
    chart = image(charts.class_balance_chart(explanation.class_counts), "class balance per split",
                  "bias.json has no class counts")
    names = sorted({name for by_class in explanation.class_counts.values() for name in by_class})
    splits = list(explanation.class_counts)
    rows = [(f"<b>{esc(name)}</b>", *(esc(explanation.class_counts[split].get(name, 0)) for split in splits),
             fmt(explanation.recall.get(name), 3)) for name in names]
    counts = table(("class", *splits, "test recall"), rows, numeric=tuple(range(1, len(splits) + 2))) if rows else ""
    return f'<div class="grid2"><div><h3>Class balance</h3>{chart}</div><div><h3>Images per class</h3>{counts}</div>' \
           "</div>"


def _overlays(explanation: Explanation) -> str:
    if "explainability" in explanation.missing:
        return missing("No attribution overlays", explanation.missing["explainability"])
    method = EXPLAIN_METHOD_NAMES.get(explanation.method or "", explanation.method or "attribution")
    rows = [(f"<b>{esc(c.name)}</b>", esc(c.images),
             "not judged" if c.mean_object_share is None else pct(c.mean_object_share), pct(c.mean_focus_area))
            for c in explanation.per_class]
    per_class = table(("class", "explained", "attribution on the object", "area holding half of it"), rows,
                      numeric=(1, 2, 3)) if rows else ""
    return (f"<h3>What the model looks at ({esc(method)}, for the predicted class)</h3>"
            + overlay_grid(explanation.samples, "no test image was explained") + per_class
            + "<h3>Highest-loss test images</h3>"
            + overlay_grid(explanation.top_loss, "top_loss is 0: none asked for"))


def _confused(explanation: Explanation) -> str:
    if "explainability" in explanation.missing:
        return ""
    if not explanation.confused:
        return "<h3>Most-confused pairs</h3>" + missing("No confusion", "every explained test image was classified "
                                                        "right: no class was mistaken for another")
    parts = ["<h3>Most-confused pairs</h3>"]
    for pair in explanation.confused:
        parts.append(f"<h4>{esc(pair.actual)} taken for {esc(pair.predicted)}: {esc(pair.count)} test image(s)</h4>"
                     + overlay_grid(pair.examples, "no example overlay"))
    return "".join(parts)


def overlay_grid(images: Sequence[ExplainedImage], why_none: str) -> str:
    if not images:
        return missing("No overlays", why_none)
    figures = []
    for explained in images:
        wrong = explained.predicted != explained.class_name
        picture = image(charts.png_uri(explained.overlay) if explained.overlay else None,
                        f"overlay of {explained.image}", "its overlay PNG could not be read")
        caption = (f"<b>{esc(explained.class_name)}</b> → {esc(explained.predicted)} "
                   f"({pct(explained.probability)})<br><code>{esc(explained.image)}</code>")
        figures.append(f'<figure{" class=wrong" if wrong else ""}>{picture}<figcaption>{caption}</figcaption>'
                       "</figure>")
    return f'<div class="overlays">{"".join(figures)}</div>'
