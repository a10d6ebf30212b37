"""The local stand-in for SageMaker's profiler agent: a thread in the engine that samples the machine and one job.

Every interval it records, for the cores the job may run on, each core's utilization and I/O wait; the machine's
memory; the job's process tree (CPU, RSS, disk bytes, processes = the script and e.g. its DataLoader workers,
threads); and each GPU's utilization and memory when `nvidia-smi` answers. All counters are deltas this sampler
keeps itself (never psutil's module-wide `cpu_percent` state), so two jobs sampled at once do not disturb each
other. It never raises into the job: an error ends sampling and is kept in `Timeline.error`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from typing import Any

import psutil

from pipelines.local.profiling.timeline import Sample, Timeline

MIN_INTERVAL_MS = 100  # SageMaker's smallest ProfilingIntervalInMilliseconds; less would cost the job CPU
DEFAULT_INTERVAL_MS = 500
MAX_SAMPLES = 50_000  # past this, every other sample is dropped and the interval doubled: bounded memory
_GPU_QUERY = ["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used,memory.total",
              "--format=csv,noheader,nounits"]


class GpuProbe:
    """GPU utilization and memory through `nvidia-smi` (no NVML binding is installed here)."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self.available = shutil.which("nvidia-smi") is not None and self.read() is not None

    def read(self) -> tuple[dict[str, float], dict[str, float]] | None:
        """({gpuN: utilization %}, {gpuN: memory used %}), or None when the driver does not answer."""
        try:
            out = subprocess.run(_GPU_QUERY, capture_output=True, text=True, timeout=self.timeout_s, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        utilization: dict[str, float] = {}
        memory: dict[str, float] = {}
        for line in out.stdout.strip().splitlines():
            parts = [part.strip() for part in line.split(",")]
            with contextlib.suppress(ValueError, IndexError, ZeroDivisionError):
                name = f"gpu{int(parts[0])}"
                utilization[name] = float(parts[1])
                memory[name] = 100.0 * float(parts[2]) / float(parts[3])
        return (utilization, memory) if utilization else None


class _CoreTimes:
    """Per-core busy and I/O-wait percentages since the previous call, from /proc/stat via psutil."""

    def __init__(self, cores: list[int]) -> None:
        self.cores = cores
        self.previous = self._read()

    def _read(self) -> list[Any]:
        return psutil.cpu_times(percpu=True)

    def sample(self) -> tuple[dict[str, float], dict[str, float]]:
        current = self._read()
        busy: dict[str, float] = {}
        iowait: dict[str, float] = {}
        for core in self.cores:
            if core >= len(current) or core >= len(self.previous):
                continue
            delta = {name: getattr(current[core], name) - getattr(self.previous[core], name)
                     for name in current[core]._fields}
            # guest time is already counted in user time on Linux
            total = sum(v for k, v in delta.items() if k not in ("guest", "guest_nice"))
            if total <= 0:
                continue
            idle = delta.get("idle", 0.0) + delta.get("iowait", 0.0)
            busy[f"cpu{core}"] = round(max(0.0, min(100.0, 100.0 * (total - idle) / total)), 2)
            iowait[f"cpu{core}"] = round(max(0.0, 100.0 * delta.get("iowait", 0.0) / total), 2)
        self.previous = current
        return busy, iowait


class JobGone(Exception):
    """The job's main process has exited: sampling ends without an error."""


class _ProcessTree:
    """CPU, memory and I/O of a process and all its descendants, as deltas between calls."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.cpu_seconds: dict[tuple[int, float], float] = {}
        self.io_bytes: dict[tuple[int, float], tuple[int, int]] = {}
        self.last = time.monotonic()

    def processes(self) -> list[psutil.Process]:
        try:
            if self.root.status() == psutil.STATUS_ZOMBIE:
                raise JobGone()
            return [self.root, *self.root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.ZombieProcess) as exc:
            raise JobGone() from exc

    def sample(self, into: Sample) -> None:
        processes = self.processes()
        now = time.monotonic()
        elapsed, self.last = max(1e-6, now - self.last), now
        cpu = read = write = 0.0
        cpu_seconds: dict[tuple[int, float], float] = {}
        io_bytes: dict[tuple[int, float], tuple[int, int]] = {}
        for process in processes:
            try:
                with process.oneshot():
                    key = (process.pid, process.create_time())
                    times = process.cpu_times()
                    into.JobRSSBytes += process.memory_info().rss
                    into.JobThreads += process.num_threads()
                    counters = _io_counters(process)
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue  # a worker that ended between the listing and the reading
            into.JobProcesses += 1
            # A process first seen now counts all its CPU time and I/O: it was born during this interval.
            cpu_seconds[key] = times.user + times.system
            cpu += cpu_seconds[key] - self.cpu_seconds.get(key, 0.0)
            if counters is not None:
                io_bytes[key] = counters
                before = self.io_bytes.get(key, (0, 0))
                read, write = read + counters[0] - before[0], write + counters[1] - before[1]
        self.cpu_seconds, self.io_bytes = cpu_seconds, io_bytes
        into.JobChildProcesses = max(0, into.JobProcesses - 1)
        into.JobCPUPercent = round(max(0.0, 100.0 * cpu / elapsed), 2)
        into.JobReadBytesPerSecond = round(max(0.0, read / elapsed), 1)
        into.JobWriteBytesPerSecond = round(max(0.0, write / elapsed), 1)


def _io_counters(process: psutil.Process) -> tuple[int, int] | None:
    try:
        counters = process.io_counters()
    except (AttributeError, NotImplementedError, psutil.AccessDenied):
        return None  # no per-process I/O accounting here (macOS, a restricted /proc)
    return counters.read_bytes, counters.write_bytes


def job_cores(pid: int) -> list[int]:
    """The cores the job may run on: its affinity after the engine pinned it, else every core."""
    try:
        return sorted(os.sched_getaffinity(pid))
    except (AttributeError, OSError):
        return list(range(psutil.cpu_count() or 1))


class SystemSampler:
    """Samples one job every `interval_ms` on a daemon thread: `start()`, then `stop()` returns the Timeline."""

    def __init__(self, pid: int, interval_ms: int | None = None, gpu_probe: GpuProbe | None = None) -> None:
        self.interval_ms = max(MIN_INTERVAL_MS, int(interval_ms or DEFAULT_INTERVAL_MS))
        self.gpu = gpu_probe if gpu_probe is not None else GpuProbe()
        self.timeline = Timeline(cores=job_cores(pid), interval_ms=self.interval_ms, job_pid=pid,
                                 cpu_count=psutil.cpu_count() or 1, memory_total_bytes=psutil.virtual_memory().total)
        self._tree = _ProcessTree(pid)
        self._cores = _CoreTimes(self.timeline.cores)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"profiler-{pid}", daemon=True)

    def start(self) -> SystemSampler:
        self._thread.start()
        return self

    def stop(self) -> Timeline:
        self._stop.set()
        self._thread.join(timeout=self.interval_ms / 1000 + 10)
        self.timeline.end_time = time.time()
        return self.timeline

    def _loop(self) -> None:
        interval = self.interval_ms / 1000
        deadline = time.monotonic() + interval
        while not self._stop.wait(max(0.0, deadline - time.monotonic())):
            # a late wake-up (a loaded machine) skips ahead instead of firing a burst of catch-up samples
            deadline = max(deadline + interval, time.monotonic() + interval / 2)
            try:
                self.timeline.samples.append(self.sample())
            except JobGone:
                return
            except Exception as exc:  # the rules report this as Error; the job goes on untouched
                self.timeline.error = f"sampling stopped after {len(self.timeline.samples)} samples: " \
                                      f"{type(exc).__name__}: {exc}"
                return
            if len(self.timeline.samples) >= MAX_SAMPLES:
                self._thin()
                interval *= 2

    def sample(self) -> Sample:
        sample = Sample(Timestamp=round(time.time(), 3))
        self._tree.sample(sample)
        sample.CPUUtilization, sample.IOWaitPercentage = self._cores.sample()
        sample.MemoryUsedPercent = psutil.virtual_memory().percent
        gpus = self.gpu.read() if self.gpu.available else None
        if gpus is not None:
            sample.GPUUtilization, sample.GPUMemoryUtilization = gpus
            self.timeline.gpu_count = max(self.timeline.gpu_count, len(gpus[0]))
        return sample

    def _thin(self) -> None:
        self.timeline.samples = self.timeline.samples[::2]
        self.timeline.interval_ms *= 2
