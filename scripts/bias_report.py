"""Data balance and per-class bias, in the JSON layout SageMaker Clarify's analysis.json uses.

Pure functions over two documents the pipeline already writes: PrepareData's manifest (images per class per split)
and EvaluateModel's evaluation.json (per-class recall on the test split). An image classifier has no sensitive
feature column, so the facet is the label itself: each class in turn is facet *d* and the other classes are facet
*a*. With that reading Clarify's own definitions apply unchanged:

- CI, class imbalance (pre-training, training split): ``(n_a - n_d) / (n_a + n_d)``. Even classes give
  ``(k - 2) / k`` for every class; a class far above that is under-represented.
- DPL, difference in proportions of labels (pre-training): the class's share of the training split minus its share
  of the test split; far from 0, the test split does not measure what training saw.
- RD, recall difference (post-training, test split): pooled recall of the other classes minus the class's recall.

Imports nothing from the project: ExplainModel ships it as a "modules" input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# A class with less than this fraction of an even share of the training images is called under-represented.
UNDER_REPRESENTED_RATIO = 0.5
# Recall this far below the other classes' pooled recall is called a gap a person should look at.
RECALL_GAP = 0.2
# A class whose training and test shares differ by more than this (absolute) makes the test split unrepresentative.
SHARE_DIFFERENCE = 0.1

DESCRIPTIONS = {
    "CI": "Class Imbalance (CI): (other classes - this class) / all, training images",
    "DPL": "Difference in Proportions of Labels (DPL): share of the training split minus share of the test split",
    "RD": "Recall Difference (RD): pooled recall of the other classes minus this class's recall, test split",
}


def class_imbalance(counts: Mapping[str, int]) -> dict[str, float | None]:
    """CI of every class against the rest; None when the split is empty."""
    total = sum(counts.values())
    return {name: ((total - 2 * n) / total if total else None) for name, n in counts.items()}


def proportion_differences(first: Mapping[str, int], second: Mapping[str, int]) -> dict[str, float | None]:
    """DPL: each class's share of `first` minus its share of `second`; None when either split is empty."""
    total_a, total_b = sum(first.values()), sum(second.values())
    if not total_a or not total_b:
        return {name: None for name in first}
    return {name: first.get(name, 0) / total_a - second.get(name, 0) / total_b for name in first}


def recall_differences(per_class: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """RD of every class with test images: the other classes' pooled recall minus its own."""
    hits = {c["class_name"]: c["recall"] * c["support"] for c in per_class}
    support = {c["class_name"]: c["support"] for c in per_class}
    total_hits, total_support = sum(hits.values()), sum(support.values())
    result: dict[str, float | None] = {}
    for name in support:
        rest = total_support - support[name]
        result[name] = ((total_hits - hits[name]) / rest - hits[name] / support[name]
                        if support[name] and rest else None)
    return result


def findings(class_names: Sequence[str], counts: Mapping[str, Mapping[str, int]],
             per_class: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What a person should act on, worst first: under-represented classes, recall gaps, unrepresentative splits."""
    train, test = counts.get("train", {}), counts.get("test", {})
    total_train, total_test = sum(train.values()), sum(test.values())
    even = 1 / len(class_names)
    recall = {c["class_name"]: c for c in per_class}
    gaps = recall_differences(per_class)
    found = []
    for name in class_names:
        share = train.get(name, 0) / total_train if total_train else 0.0
        scored = recall.get(name, {})
        recall_text = (f"; its test recall is {scored['recall']:.2f}" if scored.get("support") else
                       "; it has no test images")
        if share < UNDER_REPRESENTED_RATIO * even:
            found.append({"kind": "under_represented", "class_name": name, "severity": 1 - share / even,
                          "text": f"class {name} has {share:.1%} of the training images (an even split gives "
                                  f"{even:.1%}){recall_text}"})
        gap = gaps.get(name)
        if gap is not None and gap > RECALL_GAP:
            found.append({"kind": "recall_gap", "class_name": name, "severity": gap,
                          "text": f"class {name} is recognised worst: test recall {scored['recall']:.2f}, "
                                  f"{gap:.2f} below the other classes"})
        test_share = test.get(name, 0) / total_test if total_test else None
        if test_share is not None and abs(share - test_share) > SHARE_DIFFERENCE:
            found.append({"kind": "split_mismatch", "class_name": name, "severity": abs(share - test_share),
                          "text": f"class {name} is {share:.1%} of training but {test_share:.1%} of test: the test "
                                  "split does not measure what training saw"})
    return sorted(found, key=lambda f: -f["severity"])


def summary_line(class_names: Sequence[str], counts: Mapping[str, Mapping[str, int]],
                 found: Sequence[Mapping[str, Any]]) -> str:
    """One line for `models` and the report's verdict headline."""
    if found:
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        return found[0]["text"] + more
    train = counts.get("train", {})
    total = sum(train.values())
    least = min(class_names, key=lambda name: (train.get(name, 0), name))
    share = train.get(least, 0) / total if total else 0.0
    return (f"balanced: the smallest class, {least}, has {share:.1%} of the training images (even: "
            f"{1 / len(class_names):.1%}); no class's recall trails the others by more than {RECALL_GAP}")


def _facet_entries(metrics: Mapping[str, Mapping[str, float | None]], class_names: Sequence[str]) -> list[dict]:
    return [{"value_or_threshold": name,
             "metrics": [{"name": metric, "description": DESCRIPTIONS[metric], "value": values.get(name)}
                         for metric, values in metrics.items()]}
            for name in class_names]


def build_bias_report(class_names: Sequence[str], counts: Mapping[str, Mapping[str, int]],
                      per_class: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The Model Registry's Bias report: Clarify's analysis.json sections, plus the counts and the verdict."""
    train, test = counts.get("train", {}), counts.get("test", {})
    pre = {"CI": class_imbalance({name: train.get(name, 0) for name in class_names}),
           "DPL": proportion_differences({name: train.get(name, 0) for name in class_names}, test)}
    found = findings(class_names, counts, per_class)
    return {
        "version": "1.0",
        "pre_training_bias_metrics": {"label": "class", "facets": {"class": _facet_entries(pre, class_names)}},
        "post_training_bias_metrics": {"label": "class", "facets": {
            "class": _facet_entries({"RD": recall_differences(per_class)}, class_names)}},
        "class_counts": {split: {name: int(by_class.get(name, 0)) for name in class_names}
                         for split, by_class in counts.items()},
        "recall": {c["class_name"]: (c["recall"] if c["support"] else None) for c in per_class},
        "findings": found,
        "summary": summary_line(class_names, counts, found),
        "thresholds": {"under_represented_ratio": UNDER_REPRESENTED_RATIO, "recall_gap": RECALL_GAP,
                       "share_difference": SHARE_DIFFERENCE},
    }
