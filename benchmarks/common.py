"""What every benchmark shares: statistics, tables, the machine they ran on, timed child processes, the data.

These machines are noisy (shared cores, a load average above the core count), so every figure is a median over
repeats and every target is a ratio against a baseline measured in the same run, interleaved with it where possible.
"""

from __future__ import annotations

import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS_DIR = REPO_ROOT / "scripts"
# Thread settings a caller may have exported; a benchmark starts its children without them, so each child (and
# the baseline especially) runs with the defaults it would get on a fresh shell, unless the benchmark says otherwise.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT")


# ---------------------------------------------------------------------------------------------- statistics
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * min(100.0, max(0.0, q)) / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator and not math.isnan(denominator) else math.nan


# ---------------------------------------------------------------------------------------------- results and tables
@dataclass
class Table:
    """A small table that prints as Markdown: readable in a terminal, pasted as it is into the README."""

    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        self.rows.append(list(cells))

    def render(self) -> str:
        text = [[fmt(cell) for cell in row] for row in self.rows]
        widths = [max(len(str(c)) for c in column) for column in zip(self.columns, *text, strict=False)]
        lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True)) + " |",
                 "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in text]
        return "\n".join(lines)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


@dataclass
class Result:
    """One benchmark's outcome: its tables, the headline ratios and whether each target was met."""

    name: str
    title: str
    tables: list[tuple[str, Table]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        parts = [f"## {self.title}"]
        for caption, table in self.tables:
            parts += [caption, table.render()] if caption else [table.render()]
        for name, met in self.targets.items():
            parts.append(f"target {name}: {'met' if met else 'MISSED'}")
        parts += [f"note: {note}" for note in self.notes]
        return "\n\n".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "figures": self.figures, "targets": self.targets,
                "notes": self.notes, "tables": {caption or f"table{i}": {"columns": t.columns, "rows": t.rows}
                                                for i, (caption, t) in enumerate(self.tables)}}


# ---------------------------------------------------------------------------------------------- the machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # no torch, a broken driver: no GPU as far as the benchmark is concerned
        return None


def machine() -> dict[str, Any]:
    import torch

    return {"cpu": cpu_model(), "cores": usable_cores(), "load_average_1m": round(load_average(), 2),
            "gpu": gpu_name(), "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(terse=True)}


# ---------------------------------------------------------------------------------------------- child processes
@dataclass
class Timed:
    returncode: int
    wall_s: float
    cpu_s: float  # user + system of the child and the children it waited for (DataLoader workers)
    output: str
    peak_mb: float = 0.0  # the largest resident set of the child or of a child it waited for (ru_maxrss)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES and not k.startswith("SM_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def run_timed(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path, timeout_s: float) -> Timed:
    """Runs `argv` to completion; wall time, and CPU time from wait4's rusage (which counts the reaped grandchildren
    too). Past `timeout_s` the process group is killed and the result says returncode -9."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        timer = threading.Timer(timeout_s, _kill_group, args=(process.pid,))
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    return Timed(process.returncode, wall, usage.ru_utime + usage.ru_stime,
                 log.read_text(encoding="utf-8", errors="replace"), usage.ru_maxrss / 1024)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def python() -> str:
    return sys.executable


# ---------------------------------------------------------------------------------------------- the data
def sample_splits(workdir: Path) -> Path:
    """The bundled digits, split train/validation/test by the pipeline's own preprocess.py (what PrepareData does);
    made once per work dir."""
    from pipelines.sample_data import write_sample_dataset

    split = workdir / "data" / "split"
    if (split / "report" / "manifest.json").is_file():
        return split
    raw = write_sample_dataset(workdir / "data" / "raw")
    done = run_timed([python(), str(SCRIPTS_DIR / "preprocess.py"), "--input-dir", str(raw), "--output-dir",
                      str(split)], env=clean_env(), cwd=SCRIPTS_DIR, log=workdir / "data" / "preprocess.log",
                     timeout_s=300)
    if done.returncode != 0:
        raise RuntimeError(f"preprocess.py failed ({done.returncode}):\n{done.output[-2000:]}")
    return split


def count_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
