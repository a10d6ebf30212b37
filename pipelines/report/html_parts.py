"""Small HTML builders shared by the report's sections. Every value passes through `esc`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

STATUS_CLASSES = {
    "ok": ("Succeeded", "Completed", "NoIssuesFound", "InService", "Approved", "passed"),
    "bad": ("Failed", "Error", "IssuesFound", "Rejected", "OutOfService", "failed"),
    "run": ("Executing", "InProgress", "Starting", "Creating", "Updating", "SystemUpdating"),
    "warn": ("Stopped", "Stopping", "PendingManualApproval", "Deleting", "RollingBack"),
}


def esc(value: Any) -> str:
    return escape("" if value is None else str(value))


def badge(status: str | None) -> str:
    text = "not run" if status == "NotRun" else (status or "unknown")
    kind = next((k for k, statuses in STATUS_CLASSES.items() if status in statuses), "none")
    return f'<span class="badge {kind}">{esc(text)}</span>'


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return esc(value)


def hyperparameter(value: Any) -> str:
    """A tuned value at 4 significant digits (0.0011555095285472575 -> 0.001156), the exact one on hover."""
    text = "" if value is None else str(value)
    try:
        short = f"{float(text):.4g}" if any(c in text for c in ".eE") else text
    except ValueError:
        short = text
    return f'<code title="{esc(text)}">{esc(short)}</code>'


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], row_classes: Sequence[str] | None = None,
          numeric: Sequence[int] = ()) -> str:
    """Cells are HTML already (escape values with `esc`); `numeric`: column indexes aligned right."""
    head = "".join(f'<th{" class=num" if i in numeric else ""}>{esc(h)}</th>' for i, h in enumerate(headers))
    body = []
    for index, row in enumerate(rows):
        css = f' class="{row_classes[index]}"' if row_classes and row_classes[index] else ""
        cells = "".join(f'<td{" class=num" if i in numeric else ""}>{cell}</td>' for i, cell in enumerate(row))
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def missing(what: str, why: str | None) -> str:
    return f'<div class="missing"><b>{esc(what)}</b>: {esc(why or "not available")}</div>'


def section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>\n{content}\n</section>'


def image(uri: str | None, alt: str, why_not: str = "the picture could not be drawn") -> str:
    if not uri:
        return missing(alt, why_not)
    return f'<img class="chart" src="{uri}" alt="{esc(alt)}">'


def facts(items: Iterable[tuple[str, str]]) -> str:
    """A definition list; values are HTML already. Empty values are left out."""
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items if v)
    return f'<dl class="facts">{rows}</dl>'


def card(label: str, value: str, small: bool = False, note: str = "") -> str:
    """A headline number; `value` and `note` are HTML already."""
    return (f'<div class="card"><div class="label">{esc(label)}</div>'
            f'<div class="value{" small" if small else ""}">{value}</div>'
            f'{f"<div class=note>{note}</div>" if note else ""}</div>')


def key_values(values: dict[str, Any]) -> str:
    rows = "".join(f'<div><span class="k">{esc(k)}</span><code>{esc(v)}</code></div>' for k, v in values.items())
    return f'<div class="params">{rows}</div>'
