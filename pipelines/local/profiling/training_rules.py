"""The rules about the job as a whole and its training loop: OverallSystemUsage, StepOutlier, Dataloader."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from pipelines.local.profiling.rules import (
    ISSUES,
    NO_ISSUES,
    Evidence,
    Finding,
    ProfilerRule,
    quantile,
    stats,
)

SCAN_US = 60 * 1000 * 1000
MIN_STEPS = 100  # smdebug's step_outlier.py judges a phase only once it has more than 100 step durations
_PHASES = {"TRAIN": "TRAIN", "EVAL": "EVAL", "MODEKEYS.TRAIN": "TRAIN", "MODEKEYS.EVAL": "EVAL",
           "STEP:MODEKEYS.TRAIN": "TRAIN", "STEP:MODEKEYS.EVAL": "EVAL"}


class OverallSystemUsage(ProfilerRule):
    """A summary, never a finding: max/p99/p95/p50/min per node of CPU (mean over cores), memory, I/O wait, GPU and
    GPU memory, plus (locally) the job's own CPU and RSS. SageMaker's rule "does not take any threshold parameters
    into account nor can it trigger" (smdebug's overall_system_usage.py); this one can only end NoIssuesFound, or
    Error when sampling failed."""

    name = "OverallSystemUsage"
    defaults = {"scan_interval_us": SCAN_US}

    def check(self, evidence: Evidence) -> Finding:
        timeline = evidence.sampled
        samples = timeline.samples
        details = {
            "CPU": stats([s.cpu_average for s in samples]),
            "CPU memory": stats([s.MemoryUsedPercent for s in samples]),
            "I/O": stats([_mean(s.IOWaitPercentage.values()) for s in samples]),
            "Job CPU": stats([s.JobCPUPercent for s in samples]),
            "Job RSS bytes": stats([float(s.JobRSSBytes) for s in samples]),
        }
        if timeline.gpu_names:
            details["GPU"] = stats([_mean(s.GPUUtilization.values()) for s in samples if s.GPUUtilization])
            details["GPU memory"] = stats([_mean(s.GPUMemoryUtilization.values()) for s in samples
                                           if s.GPUMemoryUtilization])
        per_host = {metric: {"algo-1": values} for metric, values in details.items() if values}
        return self.finding(NO_ISSUES, summary(evidence), len(samples), details=per_host)


def summary(evidence: Evidence) -> str:
    """'2 cores: CPU p50 45% p95 98% max 100%; memory p95 41%; ...': the timeline in one line."""
    timeline = evidence.sampled
    samples = timeline.samples

    def line(label: str, values: list[float]) -> str:
        return f"{label} p50 {quantile(values, 0.5):.0f}% p95 {quantile(values, 0.95):.0f}% max {max(values):.0f}%"

    parts = [f"{len(samples)} samples over {len(timeline.cores)} core(s): "
             + line("CPU", [s.cpu_average for s in samples]),
             line("memory", [s.MemoryUsedPercent for s in samples]),
             line("I/O wait", [_mean(s.IOWaitPercentage.values()) for s in samples]),
             line("job CPU (100% = one core)", [s.JobCPUPercent for s in samples]),
             f"job RSS max {max(s.JobRSSBytes for s in samples) / 2**20:.0f} MiB, up to "
             f"{max(s.JobChildProcesses for s in samples)} child processes"]
    for gpu in timeline.gpu_names:
        parts.append(line(gpu, [s.GPUUtilization[gpu] for s in samples if gpu in s.GPUUtilization]))
    if not timeline.gpu_names:
        parts.append("no GPU")
    return "; ".join(parts)


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0


class StepOutlier(ProfilerRule):
    """Step durations that stand out: per phase (TRAIN, EVAL; `mode` picks one, None both) with more than 100
    steps, a step is an outlier when it took longer than mean + stddev (3) x standard deviation; the rule fires when
    there are more than n_outliers (10) (smdebug's step_outlier.py). The durations are the job's own
    `train_step_seconds=` / `eval_step_seconds=` log lines (see joblog.py)."""

    name = "StepOutlier"
    defaults = {"stddev": 3, "mode": None, "n_outliers": 10, "scan_interval_us": SCAN_US}
    recommendation = "check for bottlenecks: a stall (I/O, a checkpoint, another process) or a slow first step"

    def evaluate(self, evidence: Evidence) -> Finding:
        # Steps come from the job's log, not from the sampler: judged even when sampling failed.
        return self.check(evidence)

    def check(self, evidence: Evidence) -> Finding:
        phases = evidence.facts.step_seconds
        wanted = None if self["mode"] is None else _PHASES.get(str(self["mode"]).upper(), str(self["mode"]))
        notes = []
        for phase, epochs in phases.items():
            if wanted is not None and phase != wanted:
                continue
            values = np.asarray([seconds for epoch in epochs for seconds in epoch], dtype=float)
            if len(values) <= MIN_STEPS:
                notes.append(f"{phase}: {len(values)} steps, the rule needs more than {MIN_STEPS}")
                continue
            mean, std = float(values.mean()), float(values.std())
            limit = mean + self["stddev"] * std
            outliers = np.flatnonzero(values > limit)
            text = (f"{phase}: {len(outliers)} of {len(values)} steps took longer than {limit:.3g} s (mean "
                    f"{mean:.3g} s + {self['stddev']} x std {std:.3g} s)")
            if len(outliers) > self["n_outliers"]:
                slowest = int(outliers[np.argmax(values[outliers])])
                return self.finding(ISSUES, f"{text}, more than n_outliers={self['n_outliers']}; the slowest "
                                            f"{values[slowest]:.3g} s at step {slowest + 1} "
                                            f"(epoch {_epoch_of(epochs, slowest)})", len(values), len(outliers),
                                    {"step_details": {"algo-1": {"phase": phase, "number_of_outliers": len(outliers),
                                                                 "step_numbers": (outliers + 1).tolist()}}})
            notes.append(f"{text}, not more than n_outliers={self['n_outliers']}")
        if not notes:
            return self.finding(NO_ISSUES, "the job logged no step durations (train_step_seconds=...): nothing "
                                           "to check")
        return self.finding(NO_ISSUES, "; ".join(notes), sum(len(e) for p in phases.values() for e in p))


def _epoch_of(epochs: list[list[float]], step: int) -> int:
    for number, epoch in enumerate(epochs, start=1):
        if step < len(epoch):
            return number
        step -= len(epoch)
    return len(epochs)


class Dataloader(ProfilerRule):
    """DataLoader workers vs cores: fires when the workers running in parallel are fewer than min_threshold (70%)
    or more than max_threshold (200%) of the cores (smdebug's dataloader.py, which counted them from PyTorch's
    DataLoader events). Locally the workers are what the job logged (`dataloader_workers=`), else its child
    processes (median while it had any); the cores are those the engine gave the job. A job that caches its data in
    memory (`input=cached`) needs no workers and is not judged."""

    name = "Dataloader"
    defaults = {"min_threshold": 70, "max_threshold": 200, "scan_interval_us": SCAN_US}
    recommendation = "increase or decrease the number of data-loader processes"

    def workers(self, evidence: Evidence) -> tuple[int | None, str]:
        facts = evidence.facts
        if facts.input_mode == "cached":
            return None, "the data is cached in memory: no DataLoader workers needed"
        if facts.dataloader_workers is not None:
            return facts.dataloader_workers, "as the job logged"
        children = [s.JobChildProcesses for s in evidence.sampled.samples if s.JobChildProcesses]
        if children:
            return int(np.median(children)), "seen as child processes"
        return None, "no DataLoader seen (no dataloader_workers= in the log, no child processes)"

    def check(self, evidence: Evidence) -> Finding:
        cores = len(evidence.sampled.cores)
        workers, how = self.workers(evidence)
        if workers is None:
            return self.finding(NO_ISSUES, how)
        low, high = cores * self["min_threshold"] / 100, cores * self["max_threshold"] / 100
        head = f"{cores} core{'s' * (cores != 1)}, {workers} dataloader worker{'s' * (workers != 1)} ({how})"
        details = {"cores": cores, "dataloaders": workers}
        if workers < low:
            return self.finding(ISSUES, f"{head}, fewer than min_threshold {self['min_threshold']}% of the cores: "
                                        f"raise num_workers (to about {cores})", 1, 1, details)
        if workers > high:
            return self.finding(ISSUES, f"{head}, more than max_threshold {self['max_threshold']}% of the cores: "
                                        f"lower num_workers (to about {cores})", 1, 1, details)
        return self.finding(NO_ISSUES, f"{head}: within {self['min_threshold']}-{self['max_threshold']}% of the "
                                       f"cores", 1, 0, details)
