"""Report sections from SageMaker-shaped documents: Describe* responses, history.json, evaluation.json.

Pure functions, the same for both targets: the local engine's step properties have the shapes of the service's
Describe* responses, and the jobs write the same files on both (docs/container-contract.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pipelines.report.model import (
    ClassMetrics,
    Curves,
    Endpoint,
    Evaluation,
    RegisteredModel,
    Training,
    Trial,
    Tuning,
    seconds_between,
)

# history.json keys (train.py's log line) and the MetricDefinitions names that carry the same values.
CURVE_KEYS = ("train_loss", "validation_loss", "train_accuracy", "validation_accuracy")
METRIC_TO_CURVE = {"train:loss": "train_loss", "validation:loss": "validation_loss",
                   "train:accuracy": "train_accuracy", "validation:accuracy": "validation_accuracy"}
# The SDK's own hyperparameters: how the container starts, not what the model learned with.
SDK_HYPERPARAMETER_PREFIX = "sagemaker_"


def plain(value: Any) -> str:
    """A hyperparameter as a person writes it: the SDK JSON-quotes some values (`"\\"64\\""` -> `64`)."""
    if isinstance(value, Mapping) and len(value) == 1:  # a pipeline expression the step had not resolved
        return f"({next(iter(value))} {json.dumps(next(iter(value.values())))[:80]})"
    text = str(value)
    while len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        try:
            text = str(json.loads(text))
        except ValueError:
            break
    return text


def number(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if result == result else None  # NaN is no value to show or plot


def model_hyperparameters(values: Mapping[str, Any] | None) -> dict[str, str]:
    return {k: plain(v) for k, v in (values or {}).items() if not k.startswith(SDK_HYPERPARAMETER_PREFIX)}


# ---------------------------------------------------------------------------------------------- tuning
def tuning_section(described: Mapping[str, Any], summaries: Sequence[Mapping[str, Any]] | None) -> Tuning:
    """From DescribeHyperParameterTuningJob and its training job summaries (ListTrainingJobsFor...)."""
    config = described.get("HyperParameterTuningJobConfig") or {}
    objective = config.get("HyperParameterTuningJobObjective") or {}
    best = (described.get("BestTrainingJob") or {}).get("TrainingJobName")
    rows = summaries if summaries is not None else described.get("TrainingJobSummaries") or []
    if not rows and described.get("BestTrainingJob"):
        rows = [described["BestTrainingJob"]]
    trials = [_trial(row, best) for row in rows]
    trials.sort(key=lambda t: t.name)
    ranges = config.get("ParameterRanges") or {}
    log_scale = {r.get("Name") for kind in ranges.values() if isinstance(kind, list) for r in kind
                 if isinstance(r, Mapping) and "Logarithmic" in str(r.get("ScalingType", ""))}
    return Tuning(job_name=described.get("HyperParameterTuningJobName", ""),
                  status=described.get("HyperParameterTuningJobStatus", ""), strategy=config.get("Strategy"),
                  objective_metric=objective.get("MetricName"), objective_type=objective.get("Type"),
                  trials=trials, log_scale={name for name in log_scale if name})


def _trial(row: Mapping[str, Any], best: str | None) -> Trial:
    metric = row.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    return Trial(name=row.get("TrainingJobName", ""), status=row.get("TrainingJobStatus", ""),
                 hyperparameters=model_hyperparameters(row.get("TunedHyperParameters")),
                 objective=number(metric.get("Value")), best=row.get("TrainingJobName") == best,
                 failure_reason=row.get("FailureReason") or None)


# ---------------------------------------------------------------------------------------------- training
def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def training_section(described: Mapping[str, Any]) -> Training:
    """From DescribeTrainingJob (curves are added by the caller: they live in files)."""
    metrics = {m.get("MetricName"): number(m.get("Value")) for m in described.get("FinalMetricDataList") or []}
    duration = described.get("TrainingTimeInSeconds")
    if duration is None:
        duration = seconds_between(described.get("TrainingStartTime"), described.get("TrainingEndTime"))
    return Training(job_name=described.get("TrainingJobName", ""), status=described.get("TrainingJobStatus", ""),
                    failure_reason=described.get("FailureReason") or None,
                    instance_type=(described.get("ResourceConfig") or {}).get("InstanceType"),
                    instance_count=_whole((described.get("ResourceConfig") or {}).get("InstanceCount")),
                    duration_s=number(duration),
                    hyperparameters=model_hyperparameters(described.get("HyperParameters")),
                    final_metrics={k: v for k, v in metrics.items() if k and v is not None})


def curves_from_history(history: Any, source: str) -> Curves | None:
    """history.json: one dict per epoch with the keys of train.py's log line."""
    if not isinstance(history, list):
        return None
    rows = [row for row in history if isinstance(row, Mapping)]
    if not rows or not any(key in rows[0] for key in CURVE_KEYS):
        return None
    epochs = [int(row.get("epoch", i + 1)) for i, row in enumerate(rows)]
    series = {key: [number(row.get(key)) for row in rows] for key in CURVE_KEYS if any(key in r for r in rows)}
    return Curves(source=source, epochs=epochs, series=series)


def curves_from_metrics(document: Any, source: str) -> Curves | None:
    """The local engine's metrics.json: every value the MetricDefinitions regexes found, in log order."""
    metrics = document.get("Metrics") if isinstance(document, Mapping) else None
    if not isinstance(metrics, Mapping):
        return None
    series = {METRIC_TO_CURVE[name]: [number(point.get("Value")) for point in points]
              for name, points in metrics.items() if name in METRIC_TO_CURVE and isinstance(points, list)}
    length = max((len(values) for values in series.values()), default=0)
    if not length:
        return None
    padded = {k: v + [None] * (length - len(v)) for k, v in series.items()}
    return Curves(source=source, epochs=list(range(1, length + 1)), series=padded)


# ---------------------------------------------------------------------------------------------- evaluation
def evaluation_section(document: Any, confusion: Any, png: bytes | None, source: str) -> Evaluation | None:
    """evaluation.json (Model Registry model-quality format, plus evaluate.py's extended_metrics)."""
    if not isinstance(document, Mapping):
        return None
    metrics = document.get("multiclass_classification_metrics") or document.get("binary_classification_metrics")
    metrics = metrics if isinstance(metrics, Mapping) else {}
    extended = document.get("extended_metrics")
    extended = extended if isinstance(extended, Mapping) else {}
    names, matrix = _matrix(confusion, metrics.get("confusion_matrix"), extended.get("class_names"))
    per_class = [ClassMetrics(name=str(row.get("class_name", "")), precision=number(row.get("precision")),
                              recall=number(row.get("recall")), f1=number(row.get("f1")),
                              support=_int(row.get("support")))
                 for row in extended.get("per_class") or [] if isinstance(row, Mapping)]
    return Evaluation(source=source, accuracy=_value(metrics, "accuracy"), macro_f1=number(extended.get("macro_f1")),
                      weighted_f1=_value(metrics, "weighted_f1") or _value(metrics, "f1"),
                      top5_accuracy=number(extended.get("top_5_accuracy")),
                      num_images=_int(extended.get("num_test_images")), per_class=per_class, class_names=names,
                      matrix=matrix, matrix_png=png if png and png.startswith(b"\x89PNG") else None)


def _value(metrics: Mapping[str, Any], name: str) -> float | None:
    entry = metrics.get(name)
    return number(entry.get("value")) if isinstance(entry, Mapping) else None


def _int(value: Any) -> int | None:
    result = number(value)
    return int(result) if result is not None else None


def _matrix(confusion: Any, nested: Any, names: Any) -> tuple[list[str], list[list[int]] | None]:
    """confusion_matrix.json ({class_names, matrix}), else evaluation.json's {actual: {predicted: n}}."""
    if isinstance(confusion, Mapping) and isinstance(confusion.get("matrix"), list):
        return [str(n) for n in confusion.get("class_names") or names or []], confusion["matrix"]
    if isinstance(nested, Mapping) and nested:
        order = [str(n) for n in names] if isinstance(names, list) and names else sorted(nested)
        return order, [[_int((nested.get(a) or {}).get(p)) or 0 for p in order] for a in order]
    return [str(n) for n in names or []], None


# ---------------------------------------------------------------------------------------------- model, endpoint
def model_section(described: Mapping[str, Any], accuracy: float | None) -> RegisteredModel:
    """From DescribeModelPackage."""
    containers = (described.get("InferenceSpecification") or {}).get("Containers") or [{}]
    version = described.get("ModelPackageVersion")
    return RegisteredModel(arn=described.get("ModelPackageArn", ""), group=described.get("ModelPackageGroupName"),
                           version=int(version) if version is not None else None,
                           approval=described.get("ModelApprovalStatus"), status=described.get("ModelPackageStatus"),
                           accuracy=accuracy, model_data_url=containers[0].get("ModelDataUrl"),
                           created=described.get("CreationTime"))


def endpoint_section(described: Mapping[str, Any], url: str | None, instance_type: str | None) -> Endpoint:
    """From DescribeEndpoint; `url` is where it answers (the response has none)."""
    return Endpoint(name=described.get("EndpointName", ""), arn=described.get("EndpointArn"),
                    status=described.get("EndpointStatus"), url=url,
                    config_name=described.get("EndpointConfigName"), instance_type=instance_type,
                    failure_reason=described.get("FailureReason") or None)
