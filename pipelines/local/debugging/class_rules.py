"""ClassImbalance: the rule over the labels and predictions the training job saved.

Parameters and defaults are AWS's ("List of Debugger built-in rules", SageMaker Developer Guide).
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

import numpy as np

from pipelines.local.debugging.base import BuiltinRule, NotEnoughData, Parameter, as_bool


class ClassImbalance(BuiltinRule):
    """Labels and predictions of the TRAIN steps (every mode when none is TRAIN). Once `samples` labels were seen:
    IssuesFound when the largest class has more than `threshold_imbalance` times the samples of the smallest. After
    the last step: IssuesFound when a class's share of mispredictions over the last `samples` samples exceeds
    `threshold_misprediction` (judged at the end, where the model is trained: every class is mispredicted at the
    start). Predictions are class indices; with `argmax` they are score vectors and np.argmax picks the class.

    Defaults (AWS): threshold_imbalance 10, threshold_misprediction 0.7, samples 500, argmax False,
    labels_regex ".*labels", predictions_regex ".*predictions".
    """

    PARAMETERS = {
        "threshold_imbalance": Parameter(float, 10.0), "threshold_misprediction": Parameter(float, 0.7),
        "samples": Parameter(int, 500), "argmax": Parameter(as_bool, False),
        "labels_regex": Parameter(str, ".*labels"), "predictions_regex": Parameter(str, ".*predictions"),
    }

    def __init__(self, base_trial: Any, **raw: str) -> None:
        super().__init__(base_trial, **raw)
        self.counts: Counter[int] = Counter()
        self.recent: deque[tuple[int, int]] = deque(maxlen=self.params["samples"])
        self.seen = 0
        self.imbalance_judged = False
        self.label_step = -1  # the last step with labels: where an end-of-run finding points

    def check_step(self, step: int) -> bool:
        pair = self.labels_and_predictions(step)
        if pair is None:
            return False
        labels, predictions = pair
        self.label_step = step
        self.counts.update(labels.tolist())
        self.recent.extend(zip(labels.tolist(), predictions.tolist(), strict=True))
        self.seen += len(labels)
        if self.seen < self.params["samples"] or len(self.counts) < 2:
            return False
        self.judged += not self.imbalance_judged
        self.imbalance_judged = True
        (large, most), (small, fewest) = self.counts.most_common(1)[0], self.counts.most_common()[-1]
        if most <= self.params["threshold_imbalance"] * fewest:
            return False
        seen = (f"class {large} has {most / fewest:.1f}x the samples of class {small} ({most} vs {fewest} of "
                f"{self.seen} labels; threshold {self.params['threshold_imbalance']:g}x)")
        advice = ("The training data is unbalanced: the model will favour the large classes. Collect more of the small "
                  "ones, resample (a weighted sampler) or weight the loss per class.")
        return self.fire(step, seen, advice, counts={str(k): v for k, v in sorted(self.counts.items())})

    def labels_and_predictions(self, step: int) -> tuple[np.ndarray, np.ndarray] | None:
        mode, _ = self.mode_of(step)
        if mode != "TRAIN" and "TRAIN" in {m.name for m in self.base_trial.modes()}:
            return None
        labels = self.first(step, self.params["labels_regex"])
        predictions = self.first(step, self.params["predictions_regex"])
        if labels is None or predictions is None:
            return None
        if labels.ndim > 1:  # one-hot or probabilities
            labels = labels.argmax(axis=-1)
        if self.params["argmax"] or predictions.ndim > labels.ndim:
            predictions = predictions.argmax(axis=-1)
        labels, predictions = labels.ravel().astype(int), predictions.ravel().astype(int)
        return (labels, predictions) if len(labels) == len(predictions) else None

    def first(self, step: int, pattern: str) -> np.ndarray | None:
        names = self.names_at(step, patterns=[pattern])
        return self.value(names[0], step) if names else None

    def finish(self) -> bool:
        if self.seen < self.params["samples"]:
            raise NotEnoughData(self.missing_data())
        wrong: Counter[int] = Counter(label for label, prediction in self.recent if label != prediction)
        total: Counter[int] = Counter(label for label, _ in self.recent)
        self.judged += 1
        shares = {label: wrong[label] / count for label, count in total.items()}
        worst = max(shares, key=shares.__getitem__)
        if not shares[worst] > self.params["threshold_misprediction"]:
            return super().finish()
        bad = sorted(label for label, share in shares.items() if share > self.params["threshold_misprediction"])
        seen = (f"{shares[worst]:.0%} of the last {len(self.recent)} training samples of class {worst} were "
                f"mispredicted (classes over {self.params['threshold_misprediction']:.0%}: {bad})")
        small = sorted(total, key=total.__getitem__)[: max(1, len(total) // 5)]
        advice = ("These classes are not learned; when they are the small ones (here the smallest: "
                  f"{small}), balance the data or weight the loss. When every class is, the model does not learn "
                  "at all (learning rate, frozen layers).")
        return self.fire(self.label_step, seen, advice, misprediction_share={str(k): v for k, v in shares.items()})

    def missing_data(self) -> str:
        if self.seen:
            return f"only {self.seen} labels were saved, fewer than samples={self.params['samples']}"
        return (f"no tensors matching {self.params['labels_regex']} and {self.params['predictions_regex']} were "
                f"saved: the training script must save its labels and predictions (hook.save_tensor)")
