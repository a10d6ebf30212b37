"""What the job itself said about its training loop, read from `<job>/job.log` and `<job>/metrics.json`.

SageMaker's framework profiler recorded steps and DataLoader events from inside PyTorch (deprecated from PyTorch
2.0). Locally a script tells the engine the same facts in `key=value` log lines, the way it already reports metrics:

- `dataloader_workers=N cpu_count=M batch_size=B input=lazy|cached`: once, when its data pipeline is set up
  (`input=cached`: the data sits in memory, so no DataLoader worker is needed);
- `train_step_seconds=0.12,0.11,...` (and `eval_step_seconds=...`): each step's duration, one line an epoch;
  StepOutlier reads these;
- the epoch lines the MetricDefinitions match: their timestamps in metrics.json tell which epoch a time falls in.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

_FIELD = re.compile(r"\b(dataloader_workers|cpu_count|batch_size)=(\d+)")
_INPUT = re.compile(r"\binput=(lazy|cached)\b")
_STEPS = re.compile(r"\b(train|eval)_step_seconds=([0-9eE.+,\-]+)")


@dataclass
class JobFacts:
    dataloader_workers: int | None = None
    cpu_count: int | None = None
    batch_size: int | None = None
    input_mode: str | None = None  # "lazy" | "cached"
    # {"TRAIN": [[seconds of each step of one line], ...], "EVAL": [...]}: SageMaker's Step:ModeKeys phases, one
    # list a log line (an epoch), so a step can be told by its epoch
    step_seconds: dict[str, list[list[float]]] = field(default_factory=dict)
    # epoch ends, epoch seconds, ascending: from the timestamps of the metrics the epoch lines carry
    epoch_ends: list[float] = field(default_factory=list)

    def epoch_at(self, timestamp: float) -> int | None:
        """The epoch running at `timestamp` (1-based), or None when the job reported no epochs."""
        if not self.epoch_ends:
            return None
        return bisect.bisect_left(self.epoch_ends, timestamp) + 1


def read_job_facts(job_dir: Path) -> JobFacts:
    """The facts above; a missing or unreadable file gives empty facts, never an error."""
    facts = JobFacts()
    log = job_dir / "job.log"
    if log.is_file():
        with open(log, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                parse_line(line, facts)
    facts.epoch_ends = epoch_ends(job_dir / "metrics.json")
    return facts


def parse_line(line: str, facts: JobFacts) -> None:
    for name, value in _FIELD.findall(line):
        setattr(facts, name, int(value))
    mode = _INPUT.search(line)
    if mode:
        facts.input_mode = mode.group(1)
    for phase, values in _STEPS.findall(line):
        durations = []
        for text in values.strip(",").split(","):
            try:
                durations.append(float(text))
            except ValueError:
                continue
        facts.step_seconds.setdefault(phase.upper(), []).append(durations)


def epoch_ends(metrics_json: Path) -> list[float]:
    """The timestamps of the metric matched most often: one a line, and the lines come one an epoch."""
    try:
        metrics = json.loads(metrics_json.read_text()).get("Metrics") or {}
    except (OSError, ValueError, AttributeError):
        return []
    longest: list[Any] = max(metrics.values(), key=len, default=[])
    stamps = []
    for point in longest:
        try:
            stamps.append(datetime.fromisoformat(point["Timestamp"]).timestamp())
        except (KeyError, TypeError, ValueError):
            continue
    return sorted(stamps)
