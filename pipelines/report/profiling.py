"""Debugger and Profiler sections: rule statuses, the system metrics timeline and the recommendations.

Shapes are SageMaker's: DescribeTrainingJob's `DebugRuleConfigurations` / `DebugRuleEvaluationStatuses` (and their
Profiler twins); system metrics as Debugger writes them (JSON lines, one event per line:
`{"Type": "cpu", "Name": "cpu0", "Dimension": "CPUUtilization", "Value": 37.5, "NodeId": "algo-1",
"Timestamp": 1700000000.5}`); and the ProfilerReport rule's `profiler-reports/<Rule>.json` files
(`{"Description", "RuleTriggered", "Violations", "Details", "Recommendation"}`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from pipelines.report.model import MetricSeries, Rule, SystemMetrics
from pipelines.report.sections import number

NOT_EVALUATED = "not evaluated"
MAX_POINTS_PER_SERIES = 2000  # a day at one sample a minute; longer jobs are thinned, the plot cannot show more


def rules_section(kind: str, configurations: Sequence[Mapping[str, Any]] | None,
                  statuses: Sequence[Mapping[str, Any]] | None, job_status: str) -> list[Rule]:
    """Every configured rule with its evaluation status, and those with a status but no configuration."""
    by_name = {s.get("RuleConfigurationName"): s for s in statuses or [] if isinstance(s, Mapping)}
    rules = []
    for config in configurations or []:
        name = config.get("RuleConfigurationName", "")
        parameters = {k: str(v) for k, v in (config.get("RuleParameters") or {}).items() if k != "rule_to_invoke"}
        rules.append(_rule(kind, name, by_name.pop(name, None), parameters, job_status))
    rules += [_rule(kind, name, status, {}, job_status) for name, status in by_name.items() if name]
    return rules


def _rule(kind: str, name: str, status: Mapping[str, Any] | None, parameters: dict[str, str],
          job_status: str) -> Rule:
    if status is None or not status.get("RuleEvaluationStatus"):
        why = ("the training job is still running" if job_status in ("InProgress", "Executing")
               else "no evaluation status was recorded for this training job")
        return Rule(name=name, kind=kind, status=NOT_EVALUATED, detail=why, parameters=parameters)
    return Rule(name=name, kind=kind, status=status["RuleEvaluationStatus"],
                detail=str(status.get("StatusDetails") or ""), parameters=parameters)


# ---------------------------------------------------------------------------------------------- system metrics
Point = tuple[str, str, float, float]  # (kind, name, epoch seconds, value); kinds: see MetricSeries
# The local engine's timeline (pipelines/local/profiling/timeline.py): per-sample dicts of {name: value}.
TIMELINE_SERIES = {"CPUUtilization": "cpu", "I/OWaitPercentage": "io", "GPUUtilization": "gpu",
                   "GPUMemoryUtilization": "gpu_memory"}


def metric_kind(event: Mapping[str, Any]) -> str | None:
    """Which plot a Debugger system-metrics event belongs to (None: not plotted)."""
    dimension, name = str(event.get("Dimension", "")), str(event.get("Name", ""))
    if "MemoryUsedPercent" in (dimension, name):
        return "memory"
    return TIMELINE_SERIES.get(dimension)


def parse_system_metrics(data: bytes | None) -> list[Point]:
    """Debugger's JSON lines (or a JSON list of its events), or the local engine's `system_metrics.json`."""
    if not data:
        return []
    text = data.decode("utf-8", errors="replace").strip()
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, Mapping) and isinstance(whole.get("Samples"), list):
        return list(_timeline_points(whole["Samples"]))
    if isinstance(whole, list):
        return list(_event_points(whole))
    return list(_event_points(_json_lines(text)))


def _json_lines(text: str) -> Iterator[Any]:
    for line in text.splitlines():
        try:
            yield json.loads(line)
        except ValueError:
            continue  # Debugger may be writing the last line right now


def _event_points(events: Iterable[Any]) -> Iterator[Point]:
    for event in events:
        if not isinstance(event, Mapping):
            continue
        kind, timestamp, value = metric_kind(event), number(event.get("Timestamp")), number(event.get("Value"))
        if kind and timestamp is not None and value is not None:
            yield kind, str(event.get("Name") or event.get("Dimension")), timestamp, value


def _timeline_points(samples: Iterable[Any]) -> Iterator[Point]:
    for sample in samples:
        timestamp = number(sample.get("Timestamp")) if isinstance(sample, Mapping) else None
        if timestamp is None:
            continue
        for key, kind in TIMELINE_SERIES.items():
            for name, value in (sample.get(key) or {}).items():
                if number(value) is not None:
                    yield kind, str(name), timestamp, float(value)
        for key, kind in (("MemoryUsedPercent", "memory"), ("JobCPUPercent", "job_cpu")):
            if number(sample.get(key)) is not None:
                yield kind, key, timestamp, float(sample[key])


def system_metrics(points: Iterable[Point], source: str) -> SystemMetrics | None:
    series: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for kind, name, timestamp, value in points:
        series[(kind, name)].append((timestamp, value))
    if not series:
        return None
    start = min(t for values in series.values() for t, _ in values)
    return SystemMetrics(source=source, series=[
        MetricSeries(kind=kind, name=name, points=_thin(sorted((t - start, v) for t, v in values)))
        for (kind, name), values in sorted(series.items())])


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    step = -(-len(points) // MAX_POINTS_PER_SERIES)
    return points[::step] if step > 1 else points


def mean_series(series: Sequence[MetricSeries]) -> list[tuple[float, float]]:
    """The mean over several series (e.g. every core) at each time any of them has a sample."""
    buckets: dict[float, list[float]] = defaultdict(list)
    for one in series:
        for t, v in one.points:
            buckets[round(t, 1)].append(v)
    return [(t, sum(values) / len(values)) for t, values in sorted(buckets.items())]


# ---------------------------------------------------------------------------------------------- recommendations
def recommendations(profiler_rules: Sequence[Rule], reports: Mapping[str, Any]) -> list[str]:
    """What to change: ProfilerReport's advice, then each triggered rule's report's Recommendation.

    `reports` maps a rule name to its `profiler-reports/<Rule>.json`, and "ProfilerReport" to ProfilerReport's own
    report (`profiler-report.json`), whose Details list the recommendations whole; without it they come from the
    rule's status detail ("...; Recommendations: a; b"), which DescribeTrainingJob clips at 1024 characters.
    """
    found: list[str] = []
    own = reports.get("ProfilerReport")
    listed = ((own.get("Report") or own).get("Details") or {}).get("Recommendations") \
        if isinstance(own, Mapping) else None
    if isinstance(listed, list):
        found += [str(item) for item in listed]
    else:
        found += _advice_in_detail(next((r for r in profiler_rules if r.name.startswith("ProfilerReport")), None))
    for name, report in sorted(reports.items()):
        if name != "ProfilerReport" and isinstance(report, Mapping) and (number(report.get("RuleTriggered")) or 0) > 0:
            if report.get("Recommendation"):
                found.append(f"{name}: {report['Recommendation']}")
    return list(dict.fromkeys(found))  # once each, in order


def _advice_in_detail(rule: Rule | None) -> list[str]:
    if rule is None or rule.status == NOT_EVALUATED:
        return []
    _, marker, advice = rule.detail.partition("Recommendations:")
    return [part.strip(" .") for part in advice.split(";") if part.strip(" .")] if marker else []


def metrics_summary(metrics: SystemMetrics) -> dict[str, str]:
    """The timeline in a few numbers: how long, how many cores, how busy, how full."""
    cpu = mean_series(metrics.of("cpu"))
    times = [t for series in metrics.series for t, _ in series.points]
    summary = {"Monitored": f"{max(times, default=0):.0f} s", "CPU cores": str(len(metrics.of("cpu")))}
    if cpu:
        values = sorted(v for _, v in cpu)
        summary["CPU mean"] = f"{sum(values) / len(values):.0f}%"
        summary["CPU p95"] = f"{values[int(0.95 * (len(values) - 1))]:.0f}%"
    memory = [v for series in metrics.of("memory") for _, v in series.points]
    if memory:
        summary["Memory peak"] = f"{max(memory):.0f}%"
    job = sorted(v for series in metrics.of("job_cpu") for _, v in series.points)
    if job:
        summary["Job CPU p95"] = f"{job[int(0.95 * (len(job) - 1))]:.0f}% of a core"
    gpu = [v for series in metrics.of("gpu") for _, v in series.points]
    summary["GPU mean"] = f"{sum(gpu) / len(gpu):.0f}%" if gpu else "no GPU"
    return summary
