"""The report's pictures: matplotlib (Agg, no display) figures as `data:image/png;base64,...` URIs.

Each function takes section data and returns a URI, or None when there is nothing to draw.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pipelines.report.model import Curves, SystemMetrics, Tuning
from pipelines.report.profiling import mean_series

TRAIN_COLOUR, VALIDATION_COLOUR, BEST_COLOUR = "#1f77b4", "#ff7f0e", "#d62728"
DPI = 96
PERCENT_OF_WHOLE = ("cpu", "memory", "gpu")  # 0-100% by nature; the job's CPU counts cores (200% = two busy)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: no display here, and no window on a laptop either
    import matplotlib.pyplot as plt

    return plt


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_uri(figure: Any) -> str:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(figure)
    return png_uri(buffer.getvalue())


def curves_chart(curves: Curves) -> str | None:
    """Loss and accuracy per epoch, train vs validation, side by side."""
    panels = [(title, [(f"train_{title}", "train", TRAIN_COLOUR), (f"validation_{title}", "validation",
                                                                    VALIDATION_COLOUR)])
              for title in ("loss", "accuracy") if any(f"{s}_{title}" in curves.series for s in ("train",
                                                                                                   "validation"))]
    if not panels:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.4), squeeze=False)
    for axis, (title, lines) in zip(axes[0], panels, strict=True):
        for key, label, colour in lines:
            values = curves.series.get(key)
            if values:
                points = [(e, v) for e, v in zip(curves.epochs, values, strict=False) if _finite(v)]
                axis.plot([p[0] for p in points], [p[1] for p in points], "o-", label=label, color=colour)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.grid(alpha=0.3)
        axis.legend()
    return _figure_uri(figure)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def tuning_chart(tuning: Tuning, parameter: str) -> str | None:
    """The objective of each trial against one hyperparameter (e.g. lr); the best trial starred."""
    points = [(float(t.hyperparameters[parameter]), t.objective, t.best) for t in tuning.trials
              if t.objective is not None and _is_number(t.hyperparameters.get(parameter))]
    if not points:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.0, 3.6))
    axis.scatter([p[0] for p in points if not p[2]], [p[1] for p in points if not p[2]], s=50, color=TRAIN_COLOUR,
                 label="trial", zorder=3)
    best = [p for p in points if p[2]]
    if best:
        axis.scatter([best[0][0]], [best[0][1]], s=220, marker="*", color=BEST_COLOUR, label="best", zorder=4)
    if parameter in tuning.log_scale and all(p[0] > 0 for p in points):
        axis.set_xscale("log")
    axis.margins(x=0.15, y=0.2)  # a star on the frame is hard to see
    axis.set_xlabel(parameter)
    axis.set_ylabel(tuning.objective_metric or "objective")
    axis.set_title(f"{tuning.objective_metric or 'objective'} vs {parameter} ({len(points)} trials)")
    axis.grid(alpha=0.3)
    axis.legend()
    return _figure_uri(figure)


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def system_chart(metrics: SystemMetrics) -> str | None:
    """CPU (mean over cores, and each core faintly), the job's own CPU, memory, GPU utilisation and memory, I/O
    wait, over the job's time: each panel only when there is data for it."""
    panels = [(title, kinds) for title, kinds in (("CPU %", ("cpu",)), ("job CPU\n% of a core", ("job_cpu",)),
                                                  ("memory %", ("memory",)), ("GPU %", ("gpu", "gpu_memory")),
                                                  ("I/O wait %", ("io",)))
              if any(metrics.of(kind) for kind in kinds)]
    if not panels:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(len(panels), 1, figsize=(10.0, 1.9 * len(panels) + 0.6), sharex=True,
                                squeeze=False)
    for axis, (title, kinds) in zip(axes[:, 0], panels, strict=True):
        for kind in kinds:
            _plot_kind(axis, metrics, kind)
        axis.set_ylabel(title)
        if kinds[0] in PERCENT_OF_WHOLE:  # a line at 100% would hide in the frame: leave room above it
            axis.set_ylim(0, 105)
        else:
            axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xlabel("seconds since the first sample")
    return _figure_uri(figure)


def _plot_kind(axis: Any, metrics: SystemMetrics, kind: str) -> None:
    series = metrics.of(kind)
    if kind == "cpu" and len(series) > 1:
        for one in series:
            axis.plot(*_xy(one.points), color="#9ecae1", linewidth=0.6)
        axis.plot(*_xy(mean_series(series)), color=TRAIN_COLOUR, linewidth=1.6,
                  label=f"mean of {len(series)} cores")
        return
    for one in series:
        label = {"gpu_memory": f"{one.name} memory", "memory": "memory used",
                 "job_cpu": "the job's processes"}.get(kind, one.name)
        axis.plot(*_xy(one.points), linewidth=1.4, label=label)


def _xy(points: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    return [p[0] for p in points], [p[1] for p in points]


def confusion_chart(names: Sequence[str], matrix: Sequence[Sequence[int]]) -> str | None:
    """Counts, coloured by the fraction of each actual class (for when the job's own picture is missing)."""
    if not matrix:
        return None
    plt = _pyplot()
    size = max(4.0, 0.45 * len(matrix) + 2.0)
    figure, axis = plt.subplots(figsize=(size, size))
    fractions = [[v / (sum(row) or 1) for v in row] for row in matrix]
    axis.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            axis.text(j, i, str(value), ha="center", va="center", fontsize=8,
                      color="white" if fractions[i][j] > 0.5 else "black")
    labels = list(names) if len(names) == len(matrix) else [str(i) for i in range(len(matrix))]
    axis.set_xticks(range(len(labels)), labels, rotation=90)
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("actual class")
    return _figure_uri(figure)


SPLIT_COLOURS = {"train": TRAIN_COLOUR, "validation": VALIDATION_COLOUR, "test": "#2ca02c"}


def class_balance_chart(class_counts: Mapping[str, Mapping[str, int]]) -> str | None:
    """Each class's share of each split, as bars beside the even share: an under-represented class stands out
    whatever the split sizes."""
    splits = [split for split, by_class in class_counts.items() if sum(by_class.values())]
    names = sorted({name for split in splits for name in class_counts[split]})
    if not splits or not names:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(6.0, 0.55 * len(names) + 2.0), 3.6))
    width, highest = 0.8 / len(splits), 0.0
    for index, split in enumerate(splits):
        total = sum(class_counts[split].values())
        shares = [100 * class_counts[split].get(name, 0) / total for name in names]
        highest = max(highest, *shares)
        axis.bar([i + (index - (len(splits) - 1) / 2) * width for i in range(len(names))], shares, width,
                 label=f"{split} ({total})", color=SPLIT_COLOURS.get(split))
    axis.axhline(100 / len(names), color="black", linestyle="--", linewidth=1, label="even share")
    axis.set_xticks(range(len(names)), names, rotation=45 if len(names) > 6 else 0, ha="right")
    axis.set_ylabel("share of the split (%)")
    axis.set_title("Images per class, by split")
    axis.grid(alpha=0.3, axis="y")
    axis.set_ylim(0, highest * 1.35)  # room above the bars for the legend
    axis.legend(fontsize=8, loc="upper center", ncol=len(splits) + 1)
    return _figure_uri(figure)
