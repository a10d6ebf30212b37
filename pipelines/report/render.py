"""`render_html(data)`: one self-contained HTML page from a ReportData. Pure: it reads nothing but its argument.

The page carries its stylesheet, its pictures (PNG data URIs, the graph as inline SVG) and no script, so it opens
the same from a laptop, a CI artefact or an e-mail, offline.
"""

from __future__ import annotations

from pipelines.report.dag_svg import STATUS_COLOURS, duration_text, render_dag_svg
from pipelines.report.graph import RUNNING
from pipelines.report.html_parts import badge, card, esc, facts, fmt, key_values, missing, pct, section, table
from pipelines.report.model import ReportData
from pipelines.report.render_explain import explanation_html
from pipelines.report.render_ml import evaluation_html, profiler_html, rules_html, training_html, tuning_html
from pipelines.report.style import CSS

NAV = (("steps", "Steps"), ("tuning", "Tuning"), ("training", "Training"), ("rules", "Rules"),
       ("profiler", "Profiler"), ("evaluation", "Evaluation"), ("explain", "Explainability & bias"),
       ("deployment", "Model & endpoint"), ("batch", "Batch transform"))


def render_html(data: ReportData) -> str:
    parts = [
        _header(data),
        "<nav>" + "".join(f'<a href="#{anchor}">{esc(title)}</a>' for anchor, title in NAV) + "</nav>",
        section("steps", "Pipeline steps", _steps(data)),
        section("tuning", "Hyperparameter tuning", tuning_html(data)),
        section("training", "Training", training_html(data)),
        section("rules", "Debugger and Profiler rules", rules_html(data)),
        section("profiler", "Profiler: system timeline and recommendations", profiler_html(data)),
        section("evaluation", "Evaluation on the test split", evaluation_html(data)),
        section("explain", "Explainability and data balance", explanation_html(data)),
        section("deployment", "Registered model and endpoint", _deployment(data)),
        section("batch", "Batch transform", _batch(data)),
        _footer(data),
    ]
    title = f"{data.pipeline_name} · {data.execution_id} · {data.status}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body><main>\n"
            + "\n".join(parts) + "\n</main></body></html>\n")


def _header(data: ReportData) -> str:
    head = (f"<header><h1>{esc(data.pipeline_name)} {badge(data.status)}</h1>"
            f'<div class="subtitle">execution <b>{esc(data.execution_id)}</b> on the {esc(data.target)} target</div>')
    details = facts([
        ("Execution ARN", f"<code>{esc(data.execution_arn)}</code>"),
        ("Started", esc(data.started)),
        ("Ended", esc(data.ended or ("still running" if data.status in RUNNING else ""))),
        ("Duration", esc(duration_text(data.duration_s))),
    ])
    failure = f'<div class="alert"><b>Failure reason:</b> {esc(data.failure_reason)}</div>' \
        if data.failure_reason else ""
    parameters = ("<h3>Parameters</h3>" + key_values(data.parameters)) if data.parameters else ""
    return head + _overview(data) + failure + details + parameters + "</header>"


def _overview(data: ReportData) -> str:
    """The numbers a person looks for first."""
    rules = data.debugger_rules + data.profiler_rules
    evaluated = [r for r in rules if r.status != "not evaluated"]
    issues = [r for r in evaluated if r.status in ("IssuesFound", "Error")]
    best = max((t.objective for t in data.tuning.trials if t.objective is not None), default=None) \
        if data.tuning else None
    cards = [
        card("Status", badge(data.status)),
        card("Duration", esc(duration_text(data.duration_s)) or "–"),
        card("Best tuning objective", fmt(best)),
        card("Test accuracy", pct(data.evaluation.accuracy) if data.evaluation else "–"),
        card("Rules", f"{len(issues)} issue(s) / {len(evaluated)} evaluated" if rules
             else ("none configured" if data.training else "–"), small=True),
        card("Model", f"v{data.model.version} {badge(data.model.approval)}" if data.model else "not registered",
             small=True),
        card("Endpoint", badge(data.endpoint.status) if data.endpoint else "not deployed", small=True),
    ]
    return f'<div class="cards">{"".join(cards)}</div>'


def _steps(data: ReportData) -> str:
    parts = []
    if "steps" in data.missing:
        parts.append(missing("Step statuses", data.missing["steps"]))
    if not data.steps:
        return "".join(parts) or missing("Steps", "the execution's definition could not be read")
    legend = "".join(f'<span><i style="background:{fill};border-color:{border}"></i>'
                     f'{esc("not run" if status == "NotRun" else status)}</span>'
                     for status, (fill, border) in STATUS_COLOURS.items()
                     if any(step.status == status for step in data.steps))
    parts.append(f'<div class="dag-wrap">{render_dag_svg(data.steps)}</div><div class="legend">{legend}</div>')
    rows = [(f"<b>{esc(s.name)}</b>", esc(s.type), badge(s.status), esc(_clock(s.started)),
             esc(duration_text(s.duration_s)),
             f'<span style="color:var(--bad)">{esc(s.failure_reason)}</span>' if s.failure_reason else esc(s.detail))
            for s in data.steps]
    parts.append(table(("step", "type", "status", "started", "duration", "detail"), rows, numeric=(4,)))
    return "".join(parts)


def _clock(iso: str | None) -> str:
    """The time of day of an ISO 8601 timestamp (the header has the dates)."""
    return iso.split("T", 1)[1][:12] if iso and "T" in iso else (iso or "")


def _deployment(data: ReportData) -> str:
    if data.model:
        m = data.model
        model = facts([
            ("Model package", f"<code>{esc(m.arn)}</code>"), ("Group", esc(m.group)),
            ("Version", esc(m.version)), ("Approval", badge(m.approval)), ("Status", badge(m.status)),
            ("Test accuracy", pct(m.accuracy)), ("Model data", f"<code>{esc(m.model_data_url)}</code>"),
            ("Registered", esc(m.created)),
        ])
    else:
        model = missing("Not registered", data.missing.get("model"))
    if data.endpoint:
        e = data.endpoint
        endpoint = facts([
            ("Name", f"<b>{esc(e.name)}</b>"), ("Status", badge(e.status)),
            ("URL", f"<code>{esc(e.url)}</code>" if e.url else ""), ("ARN", f"<code>{esc(e.arn)}</code>"),
            ("Config", esc(e.config_name)), ("Instance type", esc(e.instance_type)),
            ("Failure reason", esc(e.failure_reason)), ("Note", esc(e.note)),
        ])
    else:
        endpoint = missing("Not deployed", data.missing.get("endpoint"))
    return (f'<div class="grid2"><div class="panel"><h3>Registered model</h3>{model}</div>'
            f'<div class="panel"><h3>Endpoint</h3>{endpoint}</div></div>')


def _batch(data: ReportData) -> str:
    batch = data.batch
    if batch is None:
        return missing("No batch transform", data.missing.get("batch"))
    agreement = pct(batch.folder_agreement) if batch.folder_agreement is not None else ""
    summary = facts([
        ("Job", f"<code>{esc(batch.job_name)}</code>"), ("Status", badge(batch.status)),
        ("Input", f"<code>{esc(batch.input_uri)}</code>"), ("Output", f"<code>{esc(batch.output_uri)}</code>"),
        (".out files", esc(batch.outputs)), ("Without a label", esc(batch.unreadable) if batch.unreadable else ""),
        ("Top label = the input's folder", agreement), ("Failure reason", esc(batch.failure_reason)),
    ])
    rows = [(esc(label), esc(count), pct(count / batch.outputs) if batch.outputs else "")
            for label, count in batch.predictions.items()]
    predictions = table(("predicted class", "files", "share"), rows, numeric=(1, 2)) if rows else \
        missing("No predictions read", "the job wrote no .out file with a top label")
    return (f'<div class="grid2"><div class="panel"><h3>Job</h3>{summary}</div>'
            f'<div class="panel"><h3>Predicted classes</h3>{predictions}</div></div>')


def _footer(data: ReportData) -> str:
    return (f"<footer>Generated {esc(data.generated_at)} by <code>python pipeline.py report</code> "
            f"from the {esc(data.target)} target. Self-contained: nothing on this page is loaded from elsewhere."
            "</footer>")
