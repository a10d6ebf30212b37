"""EvaluateModel processing job: scores the trained model on the held-out test split.

Runs in a SageMaker PyTorch processing container (or relocated by the local engine) with the model artifact and
``model_loading.py`` (a "modules" input; beside this file in the repo), and nothing else of the project, no
scikit-learn. The model is loaded through the artifact's own ``code/inference.py`` and images go through its
``input_fn``, so evaluation sees what serving sees.

Writes ``evaluation.json`` (SageMaker Model Registry model-quality format, multiclass), ``confusion_matrix.json``,
``confusion_matrix.png`` and ``predictions.json`` (each scored test image: label, prediction, probabilities and loss;
ExplainModel picks its confused pairs and top-loss images from it). Bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# model_loading.py sits beside this file in the repo and in the local engine's code copy; in a SageMaker processing
# job the definition ships it as a "modules" input (one folder under MODULES_DIR): a script processor uploads only
# the one script.
MODULES_DIR = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")) / "processing" / "input" / "modules"
sys.path[:0] = [str(Path(__file__).resolve().parent),
                *(str(folder) for folder in sorted(MODULES_DIR.glob("*")) if folder.is_dir())]
from model_loading import (  # noqa: E402
    HANDLER_RELPATH,  # noqa: F401 - re-exported: tests and callers have always found it here
    MODEL_ARCHIVE,  # noqa: F401
    EvalModel,
    EvaluationError,
    check_tar_members,  # noqa: F401
    default_transform,  # noqa: F401
    import_handler,  # noqa: F401
    load_model,
    resolve_model_dir,
    safe_extract_tar,  # noqa: F401
    unwrap_loaded,  # noqa: F401
)

# The condition step reads this with JsonGet; renaming it breaks the pipeline.
ACCURACY_JSON_PATH = "multiclass_classification_metrics.accuracy.value"
PREDICTIONS_FILE = "predictions.json"
TOP_K = 5
MAX_TICK_LABELS = 40
MAX_ANNOTATED_CLASSES = 15


def log(message: str) -> None:
    print(message, flush=True)


def list_test_images(test_dir: Path) -> list[tuple[str, Path]]:
    """``(class_name, path)`` for every file in ``test_dir/<class>/``; hidden entries are ignored."""
    if not test_dir.is_dir():
        raise EvaluationError(f"test dir {test_dir} does not exist")
    samples = []
    for class_dir in sorted(p for p in test_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        samples += [(class_dir.name, f) for f in sorted(class_dir.iterdir())
                    if f.is_file() and not f.name.startswith(".")]
    if not samples:
        raise EvaluationError(f"test dir {test_dir} has no images (expected {test_dir}/<class>/<image>)")
    return samples


def label_samples(samples: Sequence[tuple[str, Path]], class_names: Sequence[str]) -> list[tuple[int, Path]]:
    """``(class_index, path)`` in the model's class order; a test class the model does not know is an error."""
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({name for name, _ in samples if name not in index})
    if unknown:
        raise EvaluationError(f"test classes unknown to the model: {unknown}; the model knows {list(class_names)}")
    return [(index[name], path) for name, path in samples]


def predict(model: EvalModel, items: Sequence[tuple[int, Path]], test_dir: Path,
            batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Softmax scores ``[n, classes]`` and the true labels of the readable images, plus the skipped ones."""
    scores, kept, skipped = [], [], []
    for start in range(0, len(items), batch_size):
        tensors = []
        for label, path in items[start:start + batch_size]:
            try:
                tensors.append(model.preprocess(path.read_bytes()))
                kept.append(label)
            except EvaluationError:
                raise
            except Exception as exc:  # an unreadable image costs one sample, not the evaluation
                reason = f"{type(exc).__name__}: {exc}"
                skipped.append({"path": path.relative_to(test_dir).as_posix(), "reason": reason})
        if tensors:
            scores.append(forward(model, tensors))
    if not kept:
        first = skipped[0]["reason"] if skipped else "none"
        raise EvaluationError(f"no readable images in {test_dir} ({len(skipped)} skipped; first: {first})")
    return np.concatenate(scores), np.asarray(kept, dtype=np.int64), skipped


def forward(model: EvalModel, tensors: list) -> np.ndarray:
    import torch

    try:
        batch = torch.stack(tensors)
    except RuntimeError as exc:
        raise EvaluationError(f"preprocessed images differ in shape, cannot batch them: {exc}") from exc
    param = next(iter(model.net.parameters()), None) if hasattr(model.net, "parameters") else None
    if param is not None:  # model_fn chose the device (cuda when there is one); follow it
        batch = batch.to(param.device)
    with torch.inference_mode():
        logits = model.net(batch)
    if logits.dim() != 2 or logits.shape[1] != len(model.class_names):
        raise EvaluationError(f"model output shape {tuple(logits.shape)} does not match "
                              f"{len(model.class_names)} class_names")
    return torch.softmax(logits.float(), dim=1).cpu().numpy()


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are actual classes, columns predicted."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # Undefined ratios count as 0, as scikit-learn's zero_division default does.
    numerator, denominator = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def per_class_scores(matrix: np.ndarray, beta: float = 1.0) -> dict[str, np.ndarray]:
    """Precision, recall, F-beta and support for each class of a confusion matrix."""
    true_pos = np.diag(matrix).astype(float)
    precision = _ratio(true_pos, matrix.sum(axis=0))
    recall = _ratio(true_pos, matrix.sum(axis=1))
    b2 = beta * beta
    fbeta = _ratio((1 + b2) * precision * recall, b2 * precision + recall)
    return {"precision": precision, "recall": recall, "fbeta": fbeta, "support": matrix.sum(axis=1)}


def weighted_mean(values: np.ndarray, support: np.ndarray) -> float:
    total = support.sum()
    return float((values * support).sum() / total) if total else 0.0


def macro_mean(values: np.ndarray, matrix: np.ndarray) -> float:
    """Mean over the classes seen in the labels or predictions (scikit-learn's default label set)."""
    present = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
    return float(values[present].mean()) if present.any() else 0.0


def top_k_accuracy(y_true: np.ndarray, scores: np.ndarray, k: int) -> float:
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == np.asarray(y_true)[:, None]).any(axis=1).mean())


def summary_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """The Registry's weighted metrics for one set of predictions."""
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    out = {"accuracy": float(np.trace(matrix) / matrix.sum())}
    scores = per_class_scores(matrix)
    out["weighted_recall"] = weighted_mean(scores["recall"], scores["support"])
    out["weighted_precision"] = weighted_mean(scores["precision"], scores["support"])
    for name, beta in (("f0_5", 0.5), ("f1", 1.0), ("f2", 2.0)):
        out[f"weighted_{name}"] = weighted_mean(per_class_scores(matrix, beta)["fbeta"], scores["support"])
    return out


def _metric(value: float) -> dict:
    # Single test-set evaluation: no bootstrap, so no standard deviation; "NaN" is the Registry's own spelling.
    return {"value": float(value), "standard_deviation": "NaN"}


def build_evaluation_report(class_names: Sequence[str], y_true: Sequence[int], y_pred: Sequence[int],
                            scores: np.ndarray | None = None, skipped: Sequence[dict] = ()) -> dict:
    """evaluation.json: Model Registry multiclass model-quality metrics, our extras under ``extended_metrics``."""
    y_true, y_pred, n = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64), len(class_names)
    matrix = confusion_matrix(y_true, y_pred, n)
    model = summary_metrics(y_true, y_pred, n)
    majority = int(np.argmax(np.bincount(y_true, minlength=n)))  # the best constant classifier's guess
    baseline = summary_metrics(y_true, np.full_like(y_true, majority), n)
    metrics: dict[str, Any] = {"confusion_matrix": {
        actual: {predicted: int(matrix[i, j]) for j, predicted in enumerate(class_names)}
        for i, actual in enumerate(class_names)}}
    metrics.update({name: _metric(value) for name, value in model.items()})
    metrics.update({f"{name}_best_constant_classifier": _metric(value) for name, value in baseline.items()})
    per_class = per_class_scores(matrix)
    top_k = top_k_accuracy(y_true, scores, TOP_K) if scores is not None and n >= TOP_K else None
    extended = {
        "class_names": list(class_names),
        "num_test_images": int(len(y_true)),
        "macro_f1": macro_mean(per_class["fbeta"], matrix),
        "top_5_accuracy": top_k,
        "per_class": [{"class_name": name, "precision": float(per_class["precision"][i]),
                       "recall": float(per_class["recall"][i]), "f1": float(per_class["fbeta"][i]),
                       "support": int(per_class["support"][i])} for i, name in enumerate(class_names)],
        "num_skipped": len(skipped),
        "skipped": list(skipped),
    }
    return {"multiclass_classification_metrics": metrics, "extended_metrics": extended}


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: Path) -> bool:
    """Row-normalised heat map; False when matplotlib is missing (the PNG is a nicety, not a contract)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log("matplotlib is not installed: skipping confusion_matrix.png")
        return False
    n = len(class_names)
    side = min(max(6.0, 0.3 * n + 2.0), 24.0)
    fig = Figure(figsize=(side, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # Normalise rows so colour shows per-class recall; raw counts would let the largest class own the scale.
    rates = _ratio(matrix, matrix.sum(axis=1, keepdims=True))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    # Past ~40 classes the labels overlap into a black bar: drop them (confusion_matrix.json has the names).
    labels = list(class_names) if n <= MAX_TICK_LABELS else []
    ax.set_xticks(range(len(labels)), labels=labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels=labels)
    if n <= MAX_ANNOTATED_CLASSES:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("actual class")
    ax.set_title(f"Confusion matrix ({n} classes, {int(matrix.sum())} images)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of actual class")
    fig.tight_layout()
    fig.savefig(path)
    return True


def prediction_records(class_names: Sequence[str], paths: Sequence[str], y_true: np.ndarray,
                       scores: np.ndarray) -> list[dict]:
    """One record per scored image, in test order: its label, the prediction, both probabilities and the loss."""
    records = []
    for path, label, row in zip(paths, y_true, scores, strict=True):
        predicted = int(row.argmax())
        p_true = float(row[label])
        records.append({"image": path, "label": class_names[label], "predicted": class_names[predicted],
                        "probability": float(row[predicted]), "probability_of_label": p_true,
                        # cross-entropy of the softmax; clipped so a hard 0 gives a large finite loss, not inf
                        "loss": float(-np.log(max(p_true, 1e-12)))})
    return records


def write_outputs(report: dict, output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    # allow_nan=False: a bare NaN is invalid JSON and would break the condition step's JsonGet.
    (output_dir / "evaluation.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    names = report["extended_metrics"]["class_names"]
    cm = report["multiclass_classification_metrics"]["confusion_matrix"]
    matrix = np.asarray([[cm[actual][predicted] for predicted in names] for actual in names], dtype=np.int64)
    payload = {"class_names": names, "rows": "actual", "columns": "predicted", "matrix": matrix.tolist()}
    (output_dir / "confusion_matrix.json").write_text(json.dumps(payload) + "\n")
    plot_confusion_matrix(matrix, names, output_dir / "confusion_matrix.png")


def summary_lines(report: dict, worst: int = 5) -> list[str]:
    metrics, extended = report["multiclass_classification_metrics"], report["extended_metrics"]
    lines = [f"test images: {extended['num_test_images']} (skipped {extended['num_skipped']})",
             f"accuracy: {metrics['accuracy']['value']:.4f}",
             f"macro F1: {extended['macro_f1']:.4f}  weighted F1: {metrics['weighted_f1']['value']:.4f}"]
    if extended["top_5_accuracy"] is not None:
        lines.append(f"top-5 accuracy: {extended['top_5_accuracy']:.4f}")
    tested = sorted((c for c in extended["per_class"] if c["support"]), key=lambda c: (c["f1"], c["class_name"]))
    lines += [f"  worst: {c['class_name']} f1={c['f1']:.4f} precision={c['precision']:.4f} "
              f"recall={c['recall']:.4f} support={c['support']}" for c in tested[:worst]]
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    processing = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")) / "processing"
    parser = argparse.ArgumentParser(description="Evaluate the trained model on the test split.")
    parser.add_argument("--model-dir", type=Path, default=processing / "model",
                        help="folder with model.tar.gz or its extracted files")
    parser.add_argument("--test-dir", type=Path, default=processing / "test", help="folder-per-class test images")
    parser.add_argument("--output-dir", type=Path, default=processing / "evaluation", help="where reports go")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    return args


def evaluate(model_dir: Path, test_dir: Path, output_dir: Path, batch_size: int = 64) -> dict:
    samples = list_test_images(test_dir)
    with tempfile.TemporaryDirectory(prefix="evaluate-model-") as work:
        model = load_model(resolve_model_dir(model_dir, Path(work)))
        items = label_samples(samples, model.class_names)
        log(f"evaluating {len(items)} test images over {len(model.class_names)} classes")
        scores, y_true, skipped = predict(model, items, test_dir, batch_size)
    report = build_evaluation_report(model.class_names, y_true, scores.argmax(axis=1), scores, skipped)
    write_outputs(report, output_dir)
    unreadable = {entry["path"] for entry in skipped}
    scored = [rel for rel in (path.relative_to(test_dir).as_posix() for _, path in items) if rel not in unreadable]
    predictions = {"class_names": model.class_names,
                   "images": prediction_records(model.class_names, scored, y_true, scores)}
    (output_dir / PREDICTIONS_FILE).write_text(json.dumps(predictions, allow_nan=False) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = evaluate(args.model_dir, args.test_dir, args.output_dir, args.batch_size)
    except EvaluationError as exc:
        # One line, always: tarfile and model_fn errors can span several, and log parsers split on newlines.
        print("evaluate.py: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    for line in summary_lines(report):
        log(line)
    log(f"wrote {args.output_dir / 'evaluation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
