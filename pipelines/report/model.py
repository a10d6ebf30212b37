"""`ReportData`: everything the report shows about one execution, as plain values, whatever target it came from.

Collection (`local.py`, `sagemaker.py`, through `assemble.py`) fills it; `render.render_html` only reads it. A section
that could not be filled is None (or empty) and `missing[<section>]` says why, in words meant for the reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class StepNode:
    """One step of the definition, as it ran (or did not)."""

    name: str
    type: str
    status: str  # Succeeded | Failed | Executing | Starting | Stopping | Stopped | NotRun | Unknown
    started: str | None = None  # ISO 8601
    ended: str | None = None
    duration_s: float | None = None
    failure_reason: str | None = None
    detail: str | None = None  # one line: the job it ran, a condition's outcome, why it did not run
    depends_on: list[str] = field(default_factory=list)  # direct dependencies, transitive ones removed
    branch: tuple[str, bool] | None = None  # (condition step, the outcome that runs this step)


@dataclass
class Trial:
    name: str
    status: str
    hyperparameters: dict[str, str]
    objective: float | None
    best: bool = False
    failure_reason: str | None = None


@dataclass
class Tuning:
    job_name: str
    status: str
    strategy: str | None
    objective_metric: str | None
    objective_type: str | None  # Maximize | Minimize
    trials: list[Trial]
    log_scale: set[str] = field(default_factory=set)  # hyperparameters searched on a logarithmic scale


@dataclass
class Curves:
    """Per-epoch values: `series["train_loss"][i]` belongs to `epochs[i]`."""

    source: str  # where they were read, e.g. "history.json in output.tar.gz"
    epochs: list[int]
    series: dict[str, list[float | None]]


@dataclass
class Training:
    job_name: str
    status: str
    failure_reason: str | None
    instance_type: str | None
    duration_s: float | None
    hyperparameters: dict[str, str]
    final_metrics: dict[str, float]
    instance_count: int | None = None  # more than 1: data-parallel over that many hosts
    curves: Curves | None = None
    curves_missing: str | None = None  # why there are no curves


@dataclass
class Rule:
    name: str  # RuleConfigurationName
    kind: str  # Debugger | Profiler
    status: str  # NoIssuesFound | IssuesFound | Error | InProgress | Stopped | not evaluated
    detail: str  # StatusDetails, or why it was not evaluated
    parameters: dict[str, str] = field(default_factory=dict)  # RuleParameters but rule_to_invoke


@dataclass
class MetricSeries:
    """One system metric over time: `points` are (seconds since the first sample, value)."""

    kind: str  # cpu (per core, %) | memory (%) | gpu | gpu_memory (per GPU, %) | io (per core, %) | job_cpu
    name: str  # cpu0, gpu0, MemoryUsedPercent, JobCPUPercent (the job's processes, 100 = one core busy), ...
    points: list[tuple[float, float]]


@dataclass
class SystemMetrics:
    source: str
    series: list[MetricSeries]

    def of(self, kind: str) -> list[MetricSeries]:
        return [s for s in self.series if s.kind == kind]


@dataclass
class ClassMetrics:
    name: str
    precision: float | None
    recall: float | None
    f1: float | None
    support: int | None


@dataclass
class Evaluation:
    source: str
    accuracy: float | None
    macro_f1: float | None
    weighted_f1: float | None
    top5_accuracy: float | None
    num_images: int | None
    per_class: list[ClassMetrics]
    class_names: list[str]
    matrix: list[list[int]] | None  # rows: actual, columns: predicted
    matrix_png: bytes | None = None  # the job's own confusion_matrix.png, when it could be read
    threshold: float | None = None  # the AccuracyThreshold the gate compared against
    gate_passed: bool | None = None


@dataclass
class RegisteredModel:
    arn: str
    group: str | None
    version: int | None
    approval: str | None
    status: str | None
    accuracy: float | None
    model_data_url: str | None
    created: str | None


@dataclass
class Endpoint:
    name: str
    arn: str | None
    status: str | None
    url: str | None
    config_name: str | None
    instance_type: str | None
    failure_reason: str | None = None
    note: str | None = None  # e.g. the endpoint now serves another execution's config


@dataclass
class BatchJob:
    """A Transform job's outcome, read from the `.out` files it wrote (SageMaker writes nothing else)."""

    job_name: str
    status: str | None
    input_uri: str | None
    output_uri: str | None
    outputs: int  # .out files found (at most MAX_LISTED are listed)
    predictions: dict[str, int]  # top label -> how many .out files name it
    unreadable: int = 0  # .out files without a top label (an answer in another shape)
    # Share of outputs whose top label is the name of the folder the input sat in, when those are class names.
    folder_agreement: float | None = None
    failure_reason: str | None = None


@dataclass
class ExplainedImage:
    """One test image ExplainModel explained, with the overlay it drew (input beside its attribution map)."""

    image: str  # relative to the test split: <class>/<file>
    class_name: str
    predicted: str
    probability: float | None
    overlay: bytes | None  # the PNG; None when it could not be read
    object_share: float | None = None  # attribution share on the object; None: not judged


@dataclass
class ConfusedPair:
    actual: str
    predicted: str
    count: int
    examples: list[ExplainedImage]


@dataclass
class ClassAttribution:
    name: str
    images: int
    mean_object_share: float | None  # None: no image of the class could be judged
    mean_focus_area: float | None  # the smallest share of the image holding half the attribution


@dataclass
class Explanation:
    """ExplainModel's two reports: explainability.json (overlays) and bias.json (class balance, recall gaps)."""

    source: str
    method: str | None
    samples: list[ExplainedImage]
    confused: list[ConfusedPair]
    top_loss: list[ExplainedImage]
    per_class: list[ClassAttribution]
    class_counts: dict[str, dict[str, int]]  # split -> class -> images (bias.json)
    recall: dict[str, float | None]
    verdict: str | None  # bias.json's one-line summary
    findings: list[str]  # what a person should act on, worst first
    missing: dict[str, str] = field(default_factory=dict)  # "explainability" | "bias" -> why it is not shown


@dataclass
class ReportData:
    target: str  # local | sagemaker
    pipeline_name: str
    execution_arn: str
    execution_id: str
    status: str
    generated_at: str
    failure_reason: str | None = None
    started: str | None = None
    ended: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    steps: list[StepNode] = field(default_factory=list)
    tuning: Tuning | None = None
    training: Training | None = None
    debugger_rules: list[Rule] = field(default_factory=list)
    profiler_rules: list[Rule] = field(default_factory=list)
    system_metrics: SystemMetrics | None = None
    recommendations: list[str] = field(default_factory=list)
    evaluation: Evaluation | None = None
    model: RegisteredModel | None = None
    endpoint: Endpoint | None = None
    batch: BatchJob | None = None
    explanation: Explanation | None = None
    # why a section is empty: steps, tuning, training, debugger, profiler, system, evaluation, model, endpoint,
    # batch, explain
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        return seconds_between(self.started, self.ended)


def seconds_between(started: str | None, ended: str | None) -> float | None:
    if not started or not ended:
        return None
    try:
        return max(0.0, (datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds())
    except (TypeError, ValueError):
        return None
