"""`TrainingJobEarlyStoppingType: Auto`, locally: SageMaker's documented median rule ("Stop Training Jobs Early").

After each epoch a trial reports its objective metric; the rule takes, for every training job of the tuning job
that has finished, the running average of its objective up to the same epoch, and stops the trial when its value is
worse than the median of those averages. Here an epoch is one value of the objective metric in the trial's log (what
its MetricDefinitions regex matched), and the finished jobs are those that completed or were stopped by this rule
and reached that epoch. A trial is never stopped before some finished job has reached its epoch, so the first
trials always run to the end.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections.abc import Sequence


class MedianStoppingRule:
    """Thread-safe: trials' log pumps ask while the tuning loop records finished trials."""

    def __init__(self, objective_type: str, metric_name: str) -> None:
        self.maximize = objective_type == "Maximize"
        self.metric_name = metric_name
        self._finished: list[list[float]] = []
        self._lock = threading.Lock()

    def add_finished(self, curve: Sequence[float]) -> None:
        """A trial that finished (completed, or stopped by this rule), with the objective values it reported."""
        values = [value for value in curve if not math.isnan(value)]
        if values:
            with self._lock:
                self._finished.append(values)

    def verdict(self, curve: Sequence[float]) -> str | None:
        """Why a trial whose objective values so far are ``curve`` should stop now; None to let it go on."""
        epoch, value = len(curve), curve[-1] if curve else math.nan
        if math.isnan(value):
            return None
        with self._lock:
            averages = [statistics.fmean(done[:epoch]) for done in self._finished if len(done) >= epoch]
        if not averages:
            return None
        median = statistics.median(averages)
        if not (value < median if self.maximize else value > median):
            return None
        return (f"early stopping (Auto): {self.metric_name}={value:g} after epoch {epoch} is "
                f"{'below' if self.maximize else 'above'} the median {median:g} of the running averages of "
                f"{len(averages)} finished training job(s) to that epoch")
