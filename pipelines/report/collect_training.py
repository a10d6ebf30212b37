"""The training step's sections: the job, its curves, its Debugger and Profiler rules, the system timeline.

Where the files are, on both targets (the local engine keeps SageMaker's layout):
- curves: `history.json` in `<OutputDataConfig.S3OutputPath>/<job>/output/output.tar.gz`; locally also in the job's
  directory (`opt_ml/output/data/history.json`), and the engine's `metrics.json` (the MetricDefinitions values);
- system metrics: Debugger's JSON lines under `<ProfilerConfig.S3OutputPath>/<job>/profiler-output/system/`;
  locally also `system_metrics.json` in the job's directory;
- ProfilerReport's per-rule findings: `<...>/<job>/rule-output/**/profiler-reports/<Rule>.json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from pipelines.report.artifacts import Files, join_uri, parse_json, tar_member
from pipelines.report.execution_view import ExecutionView
from pipelines.report.model import Curves, SystemMetrics
from pipelines.report.profiling import parse_system_metrics, recommendations, rules_section, system_metrics
from pipelines.report.sections import curves_from_history, curves_from_metrics, training_section

TRAINING_SECTIONS = ("training", "debugger", "profiler", "system")  # what a training job that did not run leaves empty
MAX_METRIC_FILES = 500  # Debugger writes one file a minute or so; more than a day's worth is not plotted


def add_training(view: ExecutionView, files: Files) -> None:
    name, run = view.find("Training")
    if run is None or name is None:
        view.data.missing.update(dict.fromkeys(TRAINING_SECTIONS, view.absent(name, run, "training")))
        return
    described = view.described(name, run)
    job = described.get("TrainingJobName") or (files.job_names(name) or [""])[-1]
    if not job:
        why = f"{name} {run.status.lower()}, but its training job could not be described"
        view.data.missing.update(dict.fromkeys(TRAINING_SECTIONS, why))
        return
    described["TrainingJobName"] = job
    described.setdefault("TrainingJobStatus", _job_status(run.status))
    training = training_section(described)
    training.failure_reason = training.failure_reason or run.failure_reason
    training.curves, training.curves_missing = _curves(name, job, described, files)
    view.data.training = training
    _add_rules(view, described, training.status)
    _add_system_metrics(view, name, job, described, files)
    reports = _profiler_reports(job, described, files)
    view.data.recommendations = recommendations(view.data.profiler_rules, reports)


def _job_status(step_status: str) -> str:
    return {"Succeeded": "Completed", "Executing": "InProgress", "Starting": "InProgress"}.get(step_status, step_status)


def _output_prefix(described: Mapping[str, Any], job: str) -> str | None:
    base = (described.get("OutputDataConfig") or {}).get("S3OutputPath")
    return join_uri(base, job) if isinstance(base, str) and job else None


def _curves(step: str, job: str, described: Mapping[str, Any], files: Files) -> tuple[Curves | None, str | None]:
    history = files.job_file(step, job, "opt_ml/output/data/history.json")
    if history is not None:
        curves = curves_from_history(parse_json(history), "history.json in the job's output data")
        if curves:
            return curves, None
    prefix = _output_prefix(described, job)
    archive_uri = join_uri(prefix, "output/output.tar.gz") if prefix else None
    if archive_uri:
        curves = curves_from_history(parse_json(tar_member(files.read(archive_uri), "history.json")),
                                     f"history.json in {archive_uri}")
        if curves:
            return curves, None
    curves = curves_from_metrics(parse_json(files.job_file(step, job, "metrics.json")),
                                 "the metric values parsed from the job's log")
    if curves:
        return curves, None
    where = f"history.json in {archive_uri}" if archive_uri else "the job's output"
    return None, f"no per-epoch values were found (looked for {where})"


def _add_rules(view: ExecutionView, described: Mapping[str, Any], job_status: str) -> None:
    data = view.data
    data.debugger_rules = rules_section("Debugger", described.get("DebugRuleConfigurations"),
                                        described.get("DebugRuleEvaluationStatuses"), job_status)
    data.profiler_rules = rules_section("Profiler", described.get("ProfilerRuleConfigurations"),
                                        described.get("ProfilerRuleEvaluationStatuses"), job_status)
    if not data.debugger_rules:
        data.missing["debugger"] = "no Debugger rules are configured for this training job ([debugger] in " \
                                   "pipeline.toml: enabled, rules)"
    if not data.profiler_rules:
        data.missing["profiler"] = "no Profiler rules are configured for this training job ([profiler] in " \
                                   "pipeline.toml: enabled, rules)"


def _profiler_prefix(described: Mapping[str, Any], job: str) -> str | None:
    config = described.get("ProfilerConfig") or {}
    base = config.get("S3OutputPath") or (described.get("OutputDataConfig") or {}).get("S3OutputPath")
    return join_uri(base, job) if isinstance(base, str) and job else None


def _add_system_metrics(view: ExecutionView, step: str, job: str, described: Mapping[str, Any],
                        files: Files) -> None:
    metrics = system_metrics(parse_system_metrics(files.job_file(step, job, "system_metrics.json")),
                             "system_metrics.json in the job's directory")
    prefix = _profiler_prefix(described, job)
    if metrics is None and prefix:
        metrics = _metrics_from_files(files, join_uri(prefix, "profiler-output/system"))
    view.data.system_metrics = metrics
    if metrics is not None:
        return
    if (described.get("ProfilerConfig") or {}).get("DisableProfiler") or not described.get("ProfilerConfig"):
        view.data.missing["system"] = "system monitoring is off for this training job (no ProfilerConfig, or " \
                                      "DisableProfiler; [profiler] enabled in pipeline.toml)"
    else:
        where = join_uri(prefix, "profiler-output/system") if prefix else "the profiler output path"
        view.data.missing["system"] = f"no system metrics were recorded for {job or 'the job'} (looked in {where})"


def _metrics_from_files(files: Files, prefix: str) -> SystemMetrics | None:
    uris = [uri for uri in files.list(prefix) if uri.endswith(".json")][:MAX_METRIC_FILES]
    return system_metrics((point for uri in uris for point in parse_system_metrics(files.read(uri))), prefix)


def _profiler_reports(job: str, described: Mapping[str, Any], files: Files) -> dict[str, Any]:
    """{rule: its profiler-reports/<rule>.json, "ProfilerReport": profiler-report.json}, wherever the
    ProfilerReport rule wrote them for this job."""
    prefixes = {p for p in (_profiler_prefix(described, job), _output_prefix(described, job)) if p}
    reports: dict[str, Any] = {}
    for prefix in sorted(prefixes):
        for uri in files.list(join_uri(prefix, "rule-output")):
            path = PurePosixPath(uri)
            if path.parent.name == "profiler-reports" and path.suffix == ".json":
                name = path.stem
            elif path.name == "profiler-report.json":
                name = "ProfilerReport"
            else:
                continue
            document = parse_json(files.read(uri))
            if document is not None:
                reports[name] = document
    return reports
