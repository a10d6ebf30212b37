"""VanishingGradient, ExplodingTensor, PoorWeightInitialization and DeadRelu: rules over whole tensors (gradients,
activations) at the steps the job saved them.

Parameters and defaults are AWS's ("List of Debugger built-in rules", SageMaker Developer Guide); each docstring says
what is computed where the documentation leaves it open.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.local.debugging.base import BuiltinRule, Parameter, as_bool, as_list, loss_names

GRADIENTS = ("gradients",)
GRADIENT_NAMES = (r"^gradient/",)  # smdebug's PyTorch names: gradient/<Model>_<parameter>


class VanishingGradient(BuiltinRule):
    """At each step gradients were saved, the mean absolute value of each gradient tensor; IssuesFound when one falls
    below `threshold`.

    Defaults (AWS): threshold 0.0000001.
    """

    PARAMETERS = {"threshold": Parameter(float, 1e-7)}

    def check_step(self, step: int) -> bool:
        means = {}
        for name in self.names_at(step, GRADIENTS, GRADIENT_NAMES):
            value = self.value(name, step)
            if value is not None and value.size:
                means[name] = float(np.mean(np.abs(value)))
        if not means:
            return False
        self.judged += 1
        low = sorted((mean, name) for name, mean in means.items() if mean < self.params["threshold"])
        if not low:
            return False
        where = "all" if len(low) == len(means) else f"{len(low)} of {len(means)}"
        seen = (f"the gradients of {where} parameter tensors have a mean absolute value below "
                f"{self.params['threshold']:g}, e.g. {low[0][1]} ({low[0][0]:.3g})")
        advice = ("Those layers no longer learn: weights initialised to zero or a constant, saturated or dead "
                  "activations, or a very deep stack without normalisation or residual connections. Check the "
                  "initialisation and the activations (DeadRelu, PoorWeightInitialization).")
        return self.fire(step, seen, advice, vanishing={name: mean for mean, name in low[:20]})

    def missing_data(self) -> str:
        return "no gradients were saved (the gradients collection; smdebug saves gradients in TRAIN mode only)"


class ExplodingTensor(BuiltinRule):
    """Every saved floating-point tensor (or those of `collection_names` / `tensor_regex`) at every saved step;
    IssuesFound at the first NaN or infinite value (NaN only with `only_nan`).

    Defaults (AWS): collection_names None, tensor_regex None (all tensors), only_nan False.
    """

    PARAMETERS = {
        "collection_names": Parameter(as_list, None), "tensor_regex": Parameter(as_list, None),
        "only_nan": Parameter(as_bool, False),
    }

    def check_step(self, step: int) -> bool:
        collections, patterns = self.params["collection_names"] or [], self.params["tensor_regex"] or []
        names = self.names_at(step, collections, patterns) if collections or patterns else \
            self.base_trial.tensor_names(step=step)
        judged = False
        for name in names:
            value = self.value(name, step)
            if value is None or not np.issubdtype(value.dtype, np.floating):
                continue  # labels and predictions are integers: never NaN
            judged = True
            nans, infs = int(np.isnan(value).sum()), 0 if self.params["only_nan"] else int(np.isinf(value).sum())
            if nans or infs:
                self.judged += 1
                return self.fire(step, f"{name} holds {describe(nans, infs)} of {value.size} values",
                                 self.advice(name), tensor=name, nan=nans, inf=infs)
        self.judged += judged
        return False

    @staticmethod
    def advice(name: str) -> str:
        kind = "gradients" if name.startswith("gradient/") else "values"
        return (f"Training diverged ({kind} overflowed): the learning rate is most likely too high (lower it 10x); "
                "otherwise look for a log/sqrt/division of zero or unnormalised inputs. With float16 mixed precision "
                "an occasional overflowing scaled gradient is expected (set only_nan=True or train in bfloat16).")

    def missing_data(self) -> str:
        return "the job saved no floating-point tensors"


def describe(nans: int, infs: int) -> str:
    parts = [f"{nans} NaN" if nans else "", f"{infs} infinite" if infs else ""]
    return " and ".join(part for part in parts if part)


class PoorWeightInitialization(BuiltinRule):
    """The first `steps` TRAIN steps. At each saved step among them: (1) the variance of each activation input
    (`activation_inputs_regex`, a layer each); IssuesFound when the largest is more than `threshold` times the
    smallest (or one is 0); (2) the gradient distribution, all gradients together: IssuesFound when its 5th-95th
    percentile range is below `distribution_range`. (3) the loss convergence is reported with a finding (mean of
    the first and of the last `patience` losses of those steps) but not judged on its own: in the first steps it
    mostly shows the learning-rate warmup (measured here: healthy runs whose loss rises over steps 0-9).

    Defaults (AWS): activation_inputs_regex ".*relu_input", threshold 10.0, distribution_range 0.001, patience 5,
    steps 10.
    """

    PARAMETERS = {
        "activation_inputs_regex": Parameter(as_list, [".*relu_input"]), "threshold": Parameter(float, 10.0),
        "distribution_range": Parameter(float, 0.001), "patience": Parameter(int, 5), "steps": Parameter(int, 10),
    }

    def __init__(self, base_trial: Any, **raw: str) -> None:
        super().__init__(base_trial, **raw)
        self.losses: list[float] = []

    def check_step(self, step: int) -> bool:
        mode, mode_step = self.mode_of(step)
        if mode not in ("TRAIN", "GLOBAL") or mode_step >= self.params["steps"]:
            return False
        for name in loss_names(self, step, {})[:1]:
            self.losses.append(self.scalar(name, step))
        return self.check_activations(step) or self.check_gradients(step)

    def fire(self, step: int, seen: str, advice: str, **values: Any) -> bool:
        patience = self.params["patience"]
        if len(self.losses) >= 2 * patience:
            before, after = np.mean(self.losses[:patience]), np.mean(self.losses[-patience:])
            trend = "decreased" if after < before else "did not decrease"
            seen += f"; the loss {trend} over these first steps ({before:.4g} -> {after:.4g})"
            values.update(loss_first_steps=float(before), loss_last_steps=float(after))
        return super().fire(step, seen, advice, **values)

    def check_activations(self, step: int) -> bool:
        variances = {}
        for name in self.names_at(step, patterns=self.params["activation_inputs_regex"]):
            value = self.value(name, step)
            if value is not None and value.size > 1:
                variances[name] = float(np.var(value.astype(np.float64)))
        if len(variances) < 2:
            return False
        self.judged += 1
        low, high = min(variances, key=variances.__getitem__), max(variances, key=variances.__getitem__)
        ratio = variances[high] / variances[low] if variances[low] > 0 else np.inf
        if not ratio > self.params["threshold"]:
            return False
        seen = (f"the variance of the activation inputs differs {ratio:.3g}x across layers (from {variances[low]:.3g} "
                f"in {low} to {variances[high]:.3g} in {high}; threshold {self.params['threshold']:g}x)")
        advice = ("The weights are poorly initialised: signals shrink or blow up from layer to layer. Use an "
                  "initialisation scaled to the layer (Kaiming/He for ReLU, Xavier/Glorot), never zeros or a "
                  "constant, or add BatchNorm.")
        return self.fire(step, seen, advice, variances=variances)

    def check_gradients(self, step: int) -> bool:
        saved = [self.value(name, step) for name in self.names_at(step, GRADIENTS, GRADIENT_NAMES)]
        values = [value.ravel() for value in saved if value is not None and value.size]
        if not values:
            return False
        self.judged += 1
        low, high = np.percentile(np.concatenate(values), [5, 95])
        if high - low >= self.params["distribution_range"]:
            return False
        seen = (f"90% of all gradients lie within a range of {high - low:.3g} ({low:.3g} to {high:.3g}; "
                f"distribution_range {self.params['distribution_range']:g})")
        advice = ("The gradients are (almost) all alike, as with weights initialised to zero or a constant: the "
                  "units cannot learn different features. Initialise with random weights scaled to the layer.")
        return self.fire(step, seen, advice, percentile_5=float(low), percentile_95=float(high))

    def missing_data(self) -> str:
        return (f"nothing to judge in the first {self.params['steps']} TRAIN steps: neither activation inputs "
                f"matching {self.params['activation_inputs_regex']} nor gradients were saved there")


class DeadRelu(BuiltinRule):
    """At each saved step, each ReLU output tensor (`tensor_regex`, a layer each): a unit (one output element) is
    dead when positive for less than `threshold_inactivity` percent of the batch; IssuesFound when more than
    `threshold_layer` percent of a layer's units are dead.

    Defaults (AWS): threshold_inactivity 1.0, threshold_layer 50.0; tensor_regex ".*relu_output" (the collection
    the rule's configuration saves).
    """

    PARAMETERS = {
        "tensor_regex": Parameter(as_list, [".*relu_output"]), "threshold_inactivity": Parameter(float, 1.0),
        "threshold_layer": Parameter(float, 50.0),
    }

    def check_step(self, step: int) -> bool:
        dead = {}
        for name in self.names_at(step, patterns=self.params["tensor_regex"]):
            value = self.value(name, step)
            if value is None or value.ndim < 2 or value.shape[0] == 0:
                continue
            active = (value > 0).reshape(value.shape[0], -1).mean(axis=0) * 100
            dead[name] = float((active < self.params["threshold_inactivity"]).mean() * 100)
        if not dead:
            return False
        self.judged += 1
        worst = max(dead, key=dead.__getitem__)
        if not dead[worst] > self.params["threshold_layer"]:
            return False
        layers = sum(1 for percent in dead.values() if percent > self.params["threshold_layer"])
        seen = (f"{dead[worst]:.0f}% of the ReLUs in {worst} are dead (active for less than "
                f"{self.params['threshold_inactivity']:g}% of the batch); {layers} of {len(dead)} layers are over "
                f"{self.params['threshold_layer']:g}%")
        advice = ("Dead ReLUs output 0 for every input and never recover: usually a learning rate too high, or "
                  "large negative biases. Lower the learning rate; LeakyReLU or BatchNorm before the ReLU also help.")
        return self.fire(step, seen, advice, dead_percent={k: v for k, v in dead.items() if v > 0})

    def missing_data(self) -> str:
        return f"no ReLU outputs matching {self.params['tensor_regex']} were saved (the relu_output collection)"
