"""How executions look in a terminal: a live step table while running, tables and JSON after."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from pipelines.target_base import ExecutionSummary

STATUS_STYLES = {
    "Succeeded": "green", "Completed": "green", "Executing": "yellow", "Starting": "yellow",
    "Failed": "red", "Stopped": "magenta", "Stopping": "magenta",
}


def _elapsed(started: str | None, ended: str | None) -> str:
    if not started:
        return ""
    try:
        begin = datetime.fromisoformat(started)
        end = datetime.fromisoformat(ended) if ended else datetime.now(begin.tzinfo)
    except ValueError:
        return ""
    seconds = max(0.0, (end - begin).total_seconds())
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _styled(status: str) -> str:
    style = STATUS_STYLES.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def execution_table(summary: ExecutionSummary) -> Table:
    title = f"{summary.arn}  {_styled(summary.status)}  {_elapsed(summary.started, summary.ended)}"
    table = Table(title=title, title_justify="left", expand=False)
    for column in ("step", "type", "status", "time", "detail"):
        table.add_column(column, overflow="fold")
    for step in summary.steps or []:
        detail = "; ".join(part for part in (_retry_text(step.details), step.failure_reason or
                                             _detail_text(step.details)) if part)
        table.add_row(step.name, step.type, _styled(step.status), _elapsed(step.started, step.ended), detail)
    if summary.steps is None:
        table.add_row("(this target does not list steps)", "", "", "", "")
    return table


def _short(value: Any) -> str:
    text = str(value).strip('"')
    try:
        return f"{float(text):.4g}" if "." in text or "e" in text.lower() else text
    except ValueError:
        return text


def _retry_text(details: dict[str, Any]) -> str:
    """"attempt 3 (retried after SageMaker.CAPACITY_ERROR)" for a step its RetryPolicies ran again."""
    retries = details.get("Retries")
    if not isinstance(retries, list) or not retries:
        return ""
    kinds = ", ".join(sorted({str(retry.get("ExceptionType")) for retry in retries}))
    return f"attempt {details.get('AttemptCount', len(retries) + 1)} (retried after {kinds})"


def _detail_text(details: dict[str, Any]) -> str:
    """One line a person reads at a glance; `--json` carries every detail."""
    parts = []
    hit = details.get("CacheHitResult")
    if isinstance(hit, dict):
        parts.append(f"cache hit: {str(hit.get('SourcePipelineExecutionArn', '')).rsplit('/', 1)[-1]}'s result")
    best = details.get("BestTrainingJob")
    if isinstance(best, dict):
        tuned = " ".join(f"{k}={_short(v)}" for k, v in best.get("TunedHyperParameters", {}).items())
        objective = best.get("FinalHyperParameterTuningJobObjectiveMetric", {})
        parts.append(f"best: {tuned} -> {objective.get('MetricName', '')}={_short(objective.get('Value'))}")
    metrics = details.get("Metrics")
    if isinstance(metrics, dict) and "validation:accuracy" in metrics:
        parts.append(f"validation:accuracy={_short(metrics['validation:accuracy'])}")
    for label in ("DebuggerRules", "ProfilerRules"):
        rules = details.get(label)
        if isinstance(rules, dict):
            found = [name for name, status in rules.items() if status == "IssuesFound"]
            errors = [name for name, status in rules.items() if status == "Error"]
            quiet = sum(1 for status in rules.values() if status == "NoIssuesFound")
            parts.append(f"{label}: {quiet} no issues" + (f", issues: {', '.join(found)}" if found else "")
                         + (f", could not evaluate: {', '.join(errors)}" if errors else ""))
    if "Outcome" in details:
        parts.append(f"outcome: {str(details['Outcome']).lower()}")
    if "ModelPackageArn" in details:
        parts.append(f"{details['ModelPackageArn'].split(':')[-1]} ({details.get('ModelApprovalStatus', '')})")
    if "Url" in details:
        parts.append(str(details["Url"]))
    return "; ".join(parts)


def print_execution(console: Console, summary: ExecutionSummary) -> None:
    console.print(execution_table(summary))
    for step in summary.steps or []:
        for label in ("DebuggerRulesDetails", "ProfilerRulesDetails"):
            for rule, detail in (step.details.get(label) or {}).items():
                status = (step.details.get(label.removesuffix("Details")) or {}).get(rule, "")
                console.print(f"[yellow]{step.name} {rule} {status}:[/yellow] ", end="")
                console.print(detail, markup=False, highlight=False)
    if summary.failure_reason:
        console.print(f"[red]failure reason:[/red] {summary.failure_reason}")


def print_json(console: Console, payload: Any) -> None:
    # Plain print: rich would wrap long lines and break the JSON for a reader like jq.
    console.file.write(json.dumps(payload, indent=2, default=str) + "\n")


class LiveExecutionView:
    """A rich Live table that `on_progress` callbacks update; a no-op when output is not a terminal."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled and console.is_terminal
        self._live: Live | None = None
        self._last_status: dict[str, str] = {}

    def __enter__(self) -> LiveExecutionView:
        if self.enabled:
            self._live = Live(console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, summary: ExecutionSummary) -> None:
        if self._live is not None:
            self._live.update(execution_table(summary))
            return
        # Not a terminal (CI, a pipe): one line per step status change instead of a redrawn table.
        for step in summary.steps or []:
            if self._last_status.get(step.name) != step.status:
                self._last_status[step.name] = step.status
                self.console.print(f"{step.name}: {step.status}" + (f" - {step.failure_reason}"
                                                                     if step.failure_reason else ""))
