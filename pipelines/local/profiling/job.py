"""The profiler around one training job: `watch(pid)` samples while the job runs, `properties()` judges after.

Where the results land, as on SageMaker:
- the timeline: `<job dir>/system_metrics.json` (timeline.py) and, from `ProfilerConfig.S3OutputPath`,
  `<S3OutputPath>/<job>/profiler-output/system/incremental/...` in the profiler agent's own format;
- the rules: `ProfilerRuleEvaluationStatuses` (and `ProfilingStatus`) in the step's properties;
  `<job dir>/profiler_report.json` (every rule's finding and report, ProfilerReport's recommendations) and, for a
  ProfilerReport rule, its per-rule reports under `<OutputDataConfig.S3OutputPath>/<job>/rule-output/
  <RuleConfigurationName>/profiler-output/profiler-reports/<Rule>.json`, where SageMaker's rule container puts them.

Profiling never fails a job: every failure here becomes the rules' Error status with the reason.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil

from pipelines.local.container import DEFAULT_REGION
from pipelines.local.profiling.evaluation import RuleResult, run_rules, status_items
from pipelines.local.profiling.rules import ERROR, Finding
from pipelines.local.profiling.sampler import DEFAULT_INTERVAL_MS, GpuProbe, SystemSampler
from pipelines.local.profiling.timeline import Timeline
from pipelines.local.workspace import Workspace

SYSTEM_METRICS = "system_metrics.json"
PROFILER_REPORT = "profiler_report.json"


class JobProfiler:
    """Profiling for one CreateTrainingJob request; inert when the request has no ProfilerConfig and no rules."""

    def __init__(self, request: Mapping[str, Any], workspace: Workspace, job_name: str, job_dir: Path,
                 region: str = DEFAULT_REGION, gpu_probe: GpuProbe | None = None) -> None:
        self.request, self.workspace, self.job_name, self.job_dir = request, workspace, job_name, job_dir
        self.region, self.gpu_probe = region, gpu_probe
        self.config: dict[str, Any] = dict(request.get("ProfilerConfig") or {})
        self.rules = list(request.get("ProfilerRuleConfigurations") or [])
        self.enabled = "ProfilerConfig" in request and not self.config.get("DisableProfiler", False)
        self.timeline: Timeline | None = None

    @contextlib.contextmanager
    def watch(self, pid: int) -> Iterator[None]:
        """Samples process `pid` and its children for as long as the block runs (JobProcess's `monitor`)."""
        sampler = self._start(pid) if self.enabled else None
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # profiling never fails (or hides the failure of) the job
                if sampler is not None:
                    self.timeline = sampler.stop()
                if self.timeline is not None:
                    self._save_timeline(self.timeline)

    def _start(self, pid: int) -> SystemSampler | None:
        interval = self.config.get("ProfilingIntervalInMilliseconds") or DEFAULT_INTERVAL_MS
        try:
            return SystemSampler(pid, interval, self.gpu_probe).start()
        except psutil.NoSuchProcess:  # the job ended before the sampler could look: nothing to sample
            self.timeline = Timeline(cores=[], interval_ms=int(interval), job_pid=pid)
        except Exception as exc:
            self.timeline = Timeline(cores=[], interval_ms=int(interval), job_pid=pid,
                                     error=f"the sampler did not start: {type(exc).__name__}: {exc}")
        return None

    def properties(self) -> dict[str, Any]:
        """`ProfilingStatus` and `ProfilerRuleEvaluationStatuses` to merge into DescribeTrainingJob's properties."""
        if not self.config and not self.rules:
            return {}
        properties: dict[str, Any] = {"ProfilingStatus": "Enabled" if self.enabled else "Disabled"}
        if not self.rules:
            return properties
        try:
            results = run_rules(self.request, self.timeline, self.job_dir, self._why_no_timeline())
        except Exception as exc:  # reading the job's log failed, say: every rule says so
            reason = f"the local profiler failed: {type(exc).__name__}: {exc}"
            results = [RuleResult(rule.get("RuleConfigurationName", ""), "", Finding(ERROR, reason))
                       for rule in self.rules]
        with contextlib.suppress(Exception):  # the statuses matter more than the files
            self._save_reports(results)
        properties["ProfilerRuleEvaluationStatuses"] = status_items(results, self.job_name, self.region)
        return properties

    def _why_no_timeline(self) -> str:
        if not self.enabled:
            return "the profiler is off (ProfilerConfig.DisableProfiler, or no ProfilerConfig): no system " \
                   "metrics were collected for this job"
        return "the job's process was never sampled: no system metrics were collected for this job"

    # ------------------------------------------------------------------------------------------ files
    def _save_timeline(self, timeline: Timeline) -> None:
        with contextlib.suppress(OSError, ValueError):
            timeline.write(self.job_dir / SYSTEM_METRICS)
        uri = self.config.get("S3OutputPath")
        if uri:
            with contextlib.suppress(OSError, ValueError):  # a URI outside the workspace: the job dir copy stays
                timeline.write_sagemaker_layout(self._path(uri, "profiler-output"))

    def _save_reports(self, results: list[RuleResult]) -> None:
        rules = [{"RuleConfigurationName": r.configuration_name, "RuleName": r.rule_name,
                  "RuleEvaluationStatus": r.finding.status, "StatusDetails": r.finding.detail,
                  "Report": r.finding.report} for r in results]
        _write_json(self.job_dir / PROFILER_REPORT, {"TrainingJobName": self.job_name, "Rules": rules,
                                                     "SystemMetrics": SYSTEM_METRICS})
        output = (self.request.get("OutputDataConfig") or {}).get("S3OutputPath")
        for result in results:
            if result.rule_name != "ProfilerReport" or not output:
                continue
            folder = self._path(output, "rule-output", result.configuration_name, "profiler-output")
            for name, report in (result.finding.report.get("Details") or {}).get("Rules", {}).items():
                _write_json(folder / "profiler-reports" / f"{name}.json", report)
            _write_json(folder / "profiler-report.json", rules[results.index(result)])

    def _path(self, uri: str, *parts: str) -> Path:
        return self.workspace.path_for("/".join([uri.rstrip("/"), self.job_name, *parts]))


def _write_json(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2, default=str) + "\n")
