"""The rules over system metrics that watch a GPU: CPUBottleneck, IOBottleneck, LowGPUUtilization, BatchSize,
GPUMemoryIncrease.

Each needs GPU samples to fire, exactly like SageMaker's: their conditions are "the GPU waits" or "the GPU has
room". On a machine without a GPU SageMaker's rules find no GPUUtilization events and end NoIssuesFound; so do these,
saying so and what the CPU did instead (ProfilerReport's recommendations cover a CPU-bound job).
"""

from __future__ import annotations

from itertools import accumulate

import numpy as np

from pipelines.local.profiling.rules import (
    ISSUES,
    NO_GPU,
    NO_ISSUES,
    Evidence,
    Finding,
    ProfilerRule,
    gpu_series,
    patience_note,
    quantile,
    scan_ends,
    when,
)
from pipelines.local.profiling.timeline import Sample

SCAN_US = 60 * 1000 * 1000


class _GpuStarved(ProfilerRule):
    """A datapoint is a bottleneck when some core's `dimension` is above `<limit>` while some GPU is below
    gpu_threshold; the rule fires once it has seen more than `patience` datapoints and more than `threshold`
    percent of them were bottlenecks (smdebug's cpu_bottleneck.py / io_bottleneck.py)."""

    dimension: str
    limit: str
    what: str

    def values(self, sample: Sample) -> dict[str, float]:
        raise NotImplementedError

    def bottleneck(self, sample: Sample) -> bool:
        starved = any(v < self["gpu_threshold"] for v in sample.GPUUtilization.values())
        return starved and any(v > self[self.limit] for v in self.values(sample).values())

    def check(self, evidence: Evidence) -> Finding:
        samples = evidence.sampled.samples
        counts = list(accumulate(int(self.bottleneck(s)) for s in samples))
        stamps = [s.Timestamp for s in samples]
        for end in scan_ends(stamps, self["scan_interval_us"]):
            share = 100.0 * counts[end - 1] / end
            if end > self["patience"] and share > self["threshold"]:
                return self.finding(ISSUES, f"{counts[end - 1]} of {end} datapoints ({share:.0f}%) had a core's "
                                            f"{self.what} above {self[self.limit]}% while a GPU was below "
                                            f"{self['gpu_threshold']}% (threshold {self['threshold']}%), by "
                                            f"{when(evidence, stamps[end - 1])}", end, counts[end - 1])
        n, found = len(samples), counts[-1]
        peak = max((max(self.values(s).values(), default=0.0) for s in samples), default=0.0)
        if not evidence.sampled.gpu_names:
            detail = (f"{NO_GPU}: {self.name} looks for a GPU waiting on the {self.what}, nothing to check "
                      f"(the {self.what} peaked at {peak:.0f}% on a core)")
        elif n <= self["patience"]:
            detail = f"{patience_note(n, self['patience'])}; {found} bottlenecks so far"
        else:
            detail = f"{found} of {n} datapoints ({100 * found / n:.0f}%) were bottlenecks, not above " \
                     f"{self['threshold']}%"
        return self.finding(NO_ISSUES, detail, n, found)


class CPUBottleneck(_GpuStarved):
    """GPU under-used because the CPU cannot feed it: a core above cpu_threshold (90%) while a GPU is below
    gpu_threshold (10%), in more than threshold (50%) of the datapoints, after patience (1000) datapoints."""

    name = "CPUBottleneck"
    defaults = {"threshold": 50, "gpu_threshold": 10, "cpu_threshold": 90, "patience": 1000,
                "scan_interval_us": SCAN_US}
    recommendation = ("CPU bottlenecks can happen when data preprocessing is very compute intensive: consider "
                      "more data-loader processes or pre-fetching")
    limit, what = "cpu_threshold", "CPU utilization"

    def values(self, sample: Sample) -> dict[str, float]:
        return sample.CPUUtilization


class IOBottleneck(_GpuStarved):
    """GPU under-used because data arrives slowly from disk: a core's I/O wait above io_threshold (50%) while a GPU
    is below gpu_threshold (10%), in more than threshold (50%) of the datapoints, after patience (1000)."""

    name = "IOBottleneck"
    defaults = {"threshold": 50, "gpu_threshold": 10, "io_threshold": 50, "patience": 1000,
                "scan_interval_us": SCAN_US}
    recommendation = "pre-fetch data or choose a binary file format that reads faster"
    limit, what = "io_threshold", "I/O wait"

    def values(self, sample: Sample) -> dict[str, float]:
        return sample.IOWaitPercentage


class LowGPUUtilization(ProfilerRule):
    """Per GPU, once it has more than patience (1000) values, over the last window (500): fires when the 95th
    percentile is below threshold_p95 (70%: under-used), or above it while the 5th percentile is below
    threshold_p5 (10%: fluctuating) (smdebug's low_gpu_utilization.py)."""

    name = "LowGPUUtilization"
    defaults = {"threshold_p95": 70, "threshold_p5": 10, "window": 500, "patience": 1000,
                "scan_interval_us": SCAN_US}
    recommendation = ("check for bottlenecks, minimize blocking calls, change the distributed training strategy, "
                      "increase the batch size")

    def check(self, evidence: Evidence) -> Finding:
        gpus = evidence.sampled.gpu_names
        if not gpus:
            return self.finding(NO_ISSUES, f"{NO_GPU}: nothing to check")
        notes = []
        for gpu in gpus:
            values, stamps = gpu_series(evidence.sampled.samples, gpu)
            for end in scan_ends(stamps, self["scan_interval_us"]):
                if end <= self["patience"]:
                    continue
                recent = values[max(0, end - self["window"]):end]
                p95, p5 = quantile(recent, 0.95), quantile(recent, 0.05)
                under = p95 < self["threshold_p95"]
                if under or (p95 > self["threshold_p95"] and p5 < self["threshold_p5"]):
                    kind = "under-used" if under else "fluctuating"
                    return self.finding(ISSUES, f"{gpu} {kind}: p95 {p95:.0f}% (threshold_p95 "
                                                f"{self['threshold_p95']}%), p5 {p5:.0f}% (threshold_p5 "
                                                f"{self['threshold_p5']}%) over the last {len(recent)} values, "
                                                f"at {when(evidence, stamps[end - 1])}", len(values), 1,
                                        {gpu: {"gpu_95": p95, "gpu_5": p5, "gpu_max": max(values)}})
            notes.append(f"{gpu} p95 {quantile(values, 0.95):.0f}% p5 {quantile(values, 0.05):.0f}%"
                         + (f" ({patience_note(len(values), self['patience'])})"
                            if len(values) <= self["patience"] else ""))
        return self.finding(NO_ISSUES, "; ".join(notes), len(evidence.sampled.samples))


class BatchSize(ProfilerRule):
    """The batch could be larger: with more than window (500) and patience (1000) datapoints, the 95th percentile
    over the last window of the node's CPU (mean over cores) is below cpu_threshold_p95 (70%) and, for a GPU, its
    utilization p95 is below gpu_threshold_p95 (70%) and its memory p95 below gpu_memory_threshold_p95 (70%)
    (smdebug's batch_size.py)."""

    name = "BatchSize"
    defaults = {"cpu_threshold_p95": 70, "gpu_threshold_p95": 70, "gpu_memory_threshold_p95": 70,
                "patience": 1000, "window": 500, "scan_interval_us": SCAN_US}
    recommendation = "run on a smaller instance type or increase the batch size"

    def check(self, evidence: Evidence) -> Finding:
        samples, batch = evidence.sampled.samples, evidence.facts.batch_size
        cpu = [s.cpu_average for s in samples]
        size = f"batch_size={batch}" if batch else "the batch size"
        if not evidence.sampled.gpu_names:
            return self.finding(NO_ISSUES, f"{NO_GPU}: the rule weighs GPU utilization and memory against the CPU "
                                           f"(the CPU's p95 was {quantile(cpu, 0.95):.0f}%)", len(samples))
        window = self["window"]
        for end in scan_ends([s.Timestamp for s in samples], self["scan_interval_us"]):
            if end <= window or end <= self["patience"]:
                continue
            cpu_p95 = quantile(cpu[end - window:end], 0.95)
            if cpu_p95 >= self["cpu_threshold_p95"]:
                continue
            for gpu in evidence.sampled.gpu_names:
                low = self._low_gpu(samples[:end], gpu)
                if low is not None:
                    return self.finding(ISSUES, f"the machine has room: CPU p95 {cpu_p95:.0f}%, {gpu} p95 "
                                                f"{low[0]:.0f}% and memory p95 {low[1]:.0f}% (thresholds "
                                                f"{self['cpu_threshold_p95']}/{self['gpu_threshold_p95']}/"
                                                f"{self['gpu_memory_threshold_p95']}%) at "
                                                f"{when(evidence, samples[end - 1].Timestamp)}: raise {size} or "
                                                f"use a smaller instance", end, 1)
        n = len(samples)
        note = patience_note(n, self["patience"]) if n <= max(window, self["patience"]) else \
            f"CPU p95 {quantile(cpu, 0.95):.0f}%, no GPU both idle and with free memory"
        return self.finding(NO_ISSUES, note, n)

    def _low_gpu(self, samples: list[Sample], gpu: str) -> tuple[float, float] | None:
        window = self["window"]
        utilization, _ = gpu_series(samples, gpu)
        memory, _ = gpu_series(samples, gpu, memory=True)
        if len(utilization) <= window:
            return None
        gpu_p95, memory_p95 = quantile(utilization[-window:], 0.95), quantile(memory[-window:], 0.95)
        if gpu_p95 < self["gpu_threshold_p95"] and memory_p95 < self["gpu_memory_threshold_p95"]:
            return gpu_p95, memory_p95
        return None


class GPUMemoryIncrease(ProfilerRule):
    """GPU memory growing: per GPU and value, once there are more than window + 1 (10 + 1) values, the mean of the
    last window minus the mean of the window before it (smdebug's slice: values[-window-1:-2]) exceeds increase
    (5 percentage points), with more than patience (1000) values seen (smdebug's gpu_memory_increase.py)."""

    name = "GPUMemoryIncrease"
    defaults = {"increase": 5, "patience": 1000, "window": 10, "scan_interval_us": SCAN_US}
    recommendation = ("choose a larger instance type with more memory (if it is not a memory leak) or apply model "
                      "parallelism")

    def check(self, evidence: Evidence) -> Finding:
        gpus = evidence.sampled.gpu_names
        if not gpus:
            return self.finding(NO_ISSUES, f"{NO_GPU}: nothing to check")
        window, notes = self["window"], []
        for gpu in gpus:
            values, stamps = gpu_series(evidence.sampled.samples, gpu, memory=True)
            largest = 0.0
            for index in range(window + 1, len(values)):
                seen = values[:index + 1]
                diff = float(np.mean(seen[-window:]) - np.mean(seen[-window - 1:-2]))
                largest = max(largest, diff)
                if diff > self["increase"] and len(seen) > self["patience"]:
                    return self.finding(ISSUES, self._fired(gpu, seen, diff, evidence, stamps[index]), len(seen), 1,
                                        {gpu: {"increase": diff, "gpu_max": max(seen)}})
            note = f"{gpu} memory {values[0]:.0f}% -> {values[-1]:.0f}%, largest step {largest:.1f} points"
            if len(values) <= self["patience"]:
                note += f" ({patience_note(len(values), self['patience'])})"
            notes.append(note)
        return self.finding(NO_ISSUES, "; ".join(notes), len(evidence.sampled.samples))

    def _fired(self, gpu: str, seen: list[float], diff: float, evidence: Evidence, stamp: float) -> str:
        return (f"{gpu} memory moving average rose {diff:.1f} points (increase {self['increase']}) to "
                f"{seen[-1]:.0f}% at {when(evidence, stamp)}")
