"""What the sampler saw: one `Timeline` per job, the data every profiler rule reads.

`system_metrics.json` in the job directory is `Timeline.to_json()`:

    {"Version": 1, "NodeId": "algo-1", "JobPid": 1234, "IntervalMillis": 500,
     "Cores": [0, 1],            # the cores the job may run on (its CPU affinity): its "instance"
     "CpuCount": 2, "GpuCount": 0, "MemoryTotalBytes": 8e9, "StartTime": 1.7e9, "EndTime": 1.7e9,
     "Error": null,              # why sampling stopped early, when it did
     "Samples": [{"Timestamp": 1.7e9,                       # epoch seconds
                  "CPUUtilization": {"cpu0": 55.0, ...},     # per core of "Cores", % busy
                  "I/OWaitPercentage": {"cpu0": 0.0, ...},   # per core, % of time waiting for I/O
                  "MemoryUsedPercent": 41.2,                 # the machine's memory
                  "JobCPUPercent": 150.0,                    # the job's process tree; 100 = one core busy
                  "JobRSSBytes": 5.1e8, "JobReadBytesPerSecond": 0.0, "JobWriteBytesPerSecond": 1024.0,
                  "JobProcesses": 3, "JobChildProcesses": 2, "JobThreads": 12,
                  "GPUUtilization": {"gpu0": 80.0}, "GPUMemoryUtilization": {"gpu0": 30.0}}]}

The same samples are also written the way SageMaker's profiler agent writes them, one JSON event per line under
`<ProfilerConfig.S3OutputPath>/<job>/profiler-output/system/incremental/<YYYYMMDDHH>/<minute>.algo-1.json`, which
smdebug's `LocalSystemMetricsReader` reads (the job-level extras stay in system_metrics.json only).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NODE_ID = "algo-1"
VERSION = 1


@dataclass
class Sample:
    """One snapshot of the machine and the job, taken every ProfilingIntervalInMilliseconds."""

    Timestamp: float
    CPUUtilization: dict[str, float] = field(default_factory=dict)
    IOWaitPercentage: dict[str, float] = field(default_factory=dict)
    MemoryUsedPercent: float = 0.0
    JobCPUPercent: float = 0.0
    JobRSSBytes: int = 0
    JobReadBytesPerSecond: float = 0.0
    JobWriteBytesPerSecond: float = 0.0
    JobProcesses: int = 0
    JobChildProcesses: int = 0
    JobThreads: int = 0
    GPUUtilization: dict[str, float] = field(default_factory=dict)
    GPUMemoryUtilization: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        # SageMaker's dimension name has a slash, which no Python attribute can.
        data["I/OWaitPercentage"] = data.pop("IOWaitPercentage")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        data = dict(data)
        data["IOWaitPercentage"] = data.pop("I/OWaitPercentage", {})
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})

    @property
    def cpu_average(self) -> float:
        """The node's CPU utilization: the mean over its cores, as SageMaker's BatchSize rule computes it."""
        values = list(self.CPUUtilization.values())
        return sum(values) / len(values) if values else 0.0


@dataclass
class Timeline:
    cores: list[int]
    interval_ms: int
    samples: list[Sample] = field(default_factory=list)
    cpu_count: int = 0
    gpu_count: int = 0
    memory_total_bytes: int = 0
    job_pid: int | None = None
    start_time: float = field(default_factory=time.time)
    end_time: float | None = None
    # Why sampling stopped before the job ended (or never started); the rules then report Error with it.
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "Version": VERSION, "NodeId": NODE_ID, "JobPid": self.job_pid, "IntervalMillis": self.interval_ms,
            "Cores": self.cores, "CpuCount": self.cpu_count, "GpuCount": self.gpu_count,
            "MemoryTotalBytes": self.memory_total_bytes, "StartTime": self.start_time, "EndTime": self.end_time,
            "Error": self.error, "Samples": [sample.to_json() for sample in self.samples],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Timeline:
        return cls(cores=list(data.get("Cores") or []), interval_ms=int(data.get("IntervalMillis") or 0),
                   samples=[Sample.from_json(s) for s in data.get("Samples") or []],
                   cpu_count=int(data.get("CpuCount") or 0), gpu_count=int(data.get("GpuCount") or 0),
                   memory_total_bytes=int(data.get("MemoryTotalBytes") or 0), job_pid=data.get("JobPid"),
                   start_time=float(data.get("StartTime") or 0.0), end_time=data.get("EndTime"),
                   error=data.get("Error"))

    @classmethod
    def read(cls, path: Path) -> Timeline:
        return cls.from_json(json.loads(path.read_text()))

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(self.to_json()) + "\n")
        partial.replace(path)  # a report reading it never sees half a file
        return path

    def write_sagemaker_layout(self, profiler_output: Path) -> list[Path]:
        """`system/incremental/<YYYYMMDDHH>/<minute>.algo-1.json` under `profiler_output`, one file a minute."""
        files: dict[Path, list[str]] = {}
        for sample in self.samples:
            minute = int(sample.Timestamp // 60 * 60)
            hour = time.strftime("%Y%m%d%H", time.gmtime(sample.Timestamp))
            path = profiler_output / "system" / "incremental" / hour / f"{minute}.{NODE_ID}.json"
            files.setdefault(path, []).extend(json.dumps(event) for event in sagemaker_events(sample))
        for path, lines in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n")
        return sorted(files)

    @property
    def gpu_names(self) -> list[str]:
        names: set[str] = set()
        for sample in self.samples:
            names.update(sample.GPUUtilization)
        return sorted(names)

    def elapsed(self, timestamp: float) -> float:
        return timestamp - self.start_time


def sagemaker_events(sample: Sample) -> list[dict[str, Any]]:
    """One sample as the profiler agent's events (Type, Name, Dimension, Value, NodeId, Timestamp)."""

    def event(kind: str, name: str, dimension: str, value: float) -> dict[str, Any]:
        return {"Type": kind, "Name": name, "Dimension": dimension, "Value": round(float(value), 2),
                "NodeId": NODE_ID, "Timestamp": sample.Timestamp}

    events = [event("cpu", name, "CPUUtilization", value) for name, value in sample.CPUUtilization.items()]
    events += [event("cpu", name, "I/OWaitPercentage", value) for name, value in sample.IOWaitPercentage.items()]
    events.append(event("cpu", "MemoryUsedPercent", "Memory", sample.MemoryUsedPercent))
    events += [event("gpu", name, "GPUUtilization", value) for name, value in sample.GPUUtilization.items()]
    events += [event("gpu", name, "GPUMemoryUtilization", value)
               for name, value in sample.GPUMemoryUtilization.items()]
    return events
