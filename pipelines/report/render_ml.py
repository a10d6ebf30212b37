"""The report's model sections: tuning, training, rules, profiler, evaluation (HTML fragments from ReportData)."""

from __future__ import annotations

from pipelines.report import charts
from pipelines.report.dag_svg import duration_text
from pipelines.report.html_parts import (
    badge,
    card,
    esc,
    facts,
    fmt,
    hyperparameter,
    image,
    key_values,
    missing,
    pct,
    table,
)
from pipelines.report.model import ReportData, Tuning
from pipelines.report.profiling import NOT_EVALUATED, metrics_summary

PREFERRED_TUNING_AXIS = "lr"


def tuning_html(data: ReportData) -> str:
    tuning = data.tuning
    if tuning is None:
        return missing("No tuning results", data.missing.get("tuning"))
    meta = facts([("Tuning job", f"<code>{esc(tuning.job_name)}</code>"), ("Status", badge(tuning.status)),
                  ("Strategy", esc(tuning.strategy)),
                  ("Objective", esc(f"{tuning.objective_type or ''} {tuning.objective_metric or ''}".strip())),
                  ("Trials", esc(len(tuning.trials)))])
    axis = scatter_axis(tuning)
    chart = image(charts.tuning_chart(tuning, axis), f"{tuning.objective_metric} vs {axis}",
                  "no trial reported an objective yet") if axis else ""
    names = _hyperparameter_names(tuning)
    rows, classes = [], []
    for trial in tuning.trials:
        short = trial.name.removeprefix(f"{tuning.job_name}-")
        label = f"★ <b>{esc(short)}</b> (best)" if trial.best else esc(short)
        status = badge(trial.status) + (f"<br><small>{esc(trial.failure_reason)}</small>"
                                        if trial.failure_reason else "")
        rows.append([label, status, *(hyperparameter(trial.hyperparameters.get(n)) for n in names),
                     fmt(trial.objective)])
        classes.append("best" if trial.best else "")
    trials = table(["trial", "status", *names, tuning.objective_metric or "objective"], rows, classes,
                   numeric=(len(names) + 2,))
    return meta + chart + trials


def scatter_axis(tuning: Tuning) -> str | None:
    """The hyperparameter to plot the objective against: lr when tuned, else the first numeric one that varies."""
    names = _hyperparameter_names(tuning)
    numeric = [n for n in names if all(_is_float(t.hyperparameters.get(n)) for t in tuning.trials)]
    varying = [n for n in numeric if len({t.hyperparameters.get(n) for t in tuning.trials}) > 1]
    for candidates in ([PREFERRED_TUNING_AXIS] if PREFERRED_TUNING_AXIS in numeric else [], varying, numeric):
        if candidates:
            return candidates[0]
    return None


def _hyperparameter_names(tuning: Tuning) -> list[str]:
    names = sorted({name for trial in tuning.trials for name in trial.hyperparameters})
    return sorted(names, key=lambda n: n != PREFERRED_TUNING_AXIS)


def _is_float(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _instances_text(count: int | None) -> str | None:
    if count is None:
        return None
    return f"{count} (data-parallel)" if count > 1 else "1"


def training_html(data: ReportData) -> str:
    training = data.training
    if training is None:
        return missing("No training job", data.missing.get("training"))
    meta = facts([("Training job", f"<code>{esc(training.job_name)}</code>"), ("Status", badge(training.status)),
                  ("Instance type", esc(training.instance_type)),
                  ("Instances", esc(_instances_text(training.instance_count))),
                  ("Training time", esc(duration_text(training.duration_s)))])
    failure = f'<div class="alert">{esc(training.failure_reason)}</div>' if training.failure_reason else ""
    final = "".join(card(name, fmt(value)) for name, value in training.final_metrics.items())
    parts = [meta, failure, f'<div class="cards">{final}</div>' if final else ""]
    if training.curves:
        parts.append(image(charts.curves_chart(training.curves), "training curves: loss and accuracy per epoch",
                           "no train or validation series to draw"))
        parts.append(f"<small>from {esc(training.curves.source)}</small>")
    else:
        parts.append(missing("No training curves", training.curves_missing))
    if training.hyperparameters:
        parts.append("<h3>Hyperparameters</h3>" + key_values(training.hyperparameters))
    return "".join(parts)


def rules_html(data: ReportData) -> str:
    parts = []
    for kind, rules, key in (("Debugger", data.debugger_rules, "debugger"),
                             ("Profiler", data.profiler_rules, "profiler")):
        parts.append(f"<h3>{kind} rules</h3>")
        if not rules:
            parts.append(missing(f"No {kind} rules", data.missing.get(key)))
            continue
        rows = [(f"<b>{esc(r.name)}</b>", badge(r.status), f'<span class="detail">{esc(r.detail)}</span>',
                 "<br>".join(f'<code class="kv">{esc(k)}={esc(v)}</code>' for k, v in r.parameters.items())
                 or "defaults")
                for r in rules]
        classes = ["issue" if r.status in ("IssuesFound", "Error") else "" for r in rules]
        parts.append(table(("rule", "status", "what it saw", "parameters"), rows, classes))
    return "".join(parts)


def profiler_html(data: ReportData) -> str:
    parts = []
    metrics = data.system_metrics
    if metrics is None:
        parts.append(missing("No system metrics", data.missing.get("system")))
    else:
        summary = metrics_summary(metrics)
        parts.append('<div class="cards">' + "".join(card(label, esc(value)) for label, value in summary.items())
                     + "</div>")
        parts.append(image(charts.system_chart(metrics), "system utilisation over time",
                           "no CPU, memory or GPU series to draw"))
        parts.append(f"<small>from {esc(metrics.source)}</small>")
    parts.append("<h3>Recommendations</h3>")
    if data.recommendations:
        parts.append('<ul class="recs">' + "".join(f"<li>{esc(r)}</li>" for r in data.recommendations) + "</ul>")
    else:
        parts.append(missing("No recommendations", _why_no_recommendations(data)))
    return "".join(parts)


def _why_no_recommendations(data: ReportData) -> str:
    if not data.profiler_rules:
        return data.missing.get("profiler") or "no Profiler rules ran"
    report = next((r for r in data.profiler_rules if r.name.startswith("ProfilerReport")), None)
    if report is None:
        return "the ProfilerReport rule is not configured, and no other Profiler rule found an issue"
    if report.status == NOT_EVALUATED:
        return f"ProfilerReport was not evaluated ({report.detail})"
    return "ProfilerReport found nothing to change"


def evaluation_html(data: ReportData) -> str:
    evaluation = data.evaluation
    if evaluation is None:
        return missing("No evaluation", data.missing.get("evaluation"))
    gate = ""
    if evaluation.threshold is not None:
        verdict = {True: "passed", False: "failed", None: "not decided"}[evaluation.gate_passed]
        gate = f"gate ≥ {fmt(evaluation.threshold, 3)}: {badge(verdict)}"
    cards = [card("Accuracy", pct(evaluation.accuracy), note=gate), card("Macro F1", fmt(evaluation.macro_f1)),
             card("Weighted F1", fmt(evaluation.weighted_f1)), card("Top-5 accuracy", pct(evaluation.top5_accuracy)),
             card("Test images", fmt(evaluation.num_images))]
    rows = [(f"<b>{esc(c.name)}</b>", fmt(c.precision, 3), fmt(c.recall, 3),
             f'{fmt(c.f1, 3)}<div class="bar"><span style="width:{(c.f1 or 0) * 100:.0f}%"></span></div>',
             fmt(c.support)) for c in evaluation.per_class]
    per_class = table(("class", "precision", "recall", "F1", "support"), rows, numeric=(1, 2, 4)) if rows \
        else missing("No per-class metrics", "evaluation.json has no extended_metrics.per_class")
    if evaluation.matrix_png:
        matrix = image(charts.png_uri(evaluation.matrix_png), "confusion matrix")
    elif evaluation.matrix:
        matrix = image(charts.confusion_chart(evaluation.class_names, evaluation.matrix), "confusion matrix")
    else:
        matrix = missing("No confusion matrix", "neither confusion_matrix.json nor evaluation.json has one")
    return (f'<div class="cards">{"".join(cards)}</div><div class="grid2"><div><h3>Per class</h3>{per_class}</div>'
            f"<div><h3>Confusion matrix</h3>{matrix}</div></div><small>from {esc(evaluation.source)}</small>")
