"""LossNotDecreasing, Overfit and Overtraining: the rules that read the `losses` collection.

Parameters and defaults are AWS's ("List of Debugger built-in rules", SageMaker Developer Guide). The built-in
implementations are not public; where the documentation leaves the arithmetic open, each class docstring says what
is computed. All three compare means over whole passes (an epoch of training, one evaluation), see `passes.py`.
"""

from __future__ import annotations

import math
from typing import Any

from pipelines.local.debugging.base import BuiltinRule, Parameter, as_bool, as_list, as_optional, loss_names
from pipelines.local.debugging.passes import Pass, Passes


class LossRule(BuiltinRule):
    """Feeds each loss tensor's values into passes; subclasses judge values and completed passes."""

    def __init__(self, base_trial: Any, **raw: str) -> None:
        super().__init__(base_trial, **raw)
        self.passes: dict[str, Passes] = {}
        self.saved: dict[str, int] = {}  # loss values seen per mode, for the Error detail

    def check_step(self, step: int) -> bool:
        mode, mode_step = self.mode_of(step)
        for name, passes in self.passes.items():  # a change of mode completes every loss's current pass
            done = passes.see(mode)
            if done is not None and self.on_pass(name, done):
                return True
        for name in loss_names(self, step, self.params):
            value = self.scalar(name, step)
            self.saved[mode] = self.saved.get(mode, 0) + 1
            self.passes.setdefault(name, Passes()).add(mode, mode_step, step, value)
            if self.on_value(name, mode, mode_step, step, value):
                return True
        return False

    def finish(self) -> bool:
        for name, passes in self.passes.items():
            done = passes.close()
            if done is not None and self.on_pass(name, done):
                return True
        return super().finish()

    def on_value(self, name: str, mode: str, mode_step: int, step: int, value: float) -> bool:
        return False

    def on_pass(self, name: str, done: Pass) -> bool:
        return False

    def saved_text(self) -> str:
        counts = ", ".join(f"{count} in {mode}" for mode, count in sorted(self.saved.items()))
        return f"losses saved: {counts or 'none'}"


class LossNotDecreasing(LossRule):
    """The loss must keep decreasing: the mean loss of each block of whole passes that ends at least `num_steps`
    steps after the previous block must be lower than that block's, by at least `diff_percent` percent (with the
    loss saved every step, blocks of >= `num_steps` values; saved every 500, a block per pass as AWS compares single
    values). A TRAIN series starts from its first saved loss (the untrained network's); an EVAL series from its first
    whole evaluation pass, since one validation batch says little. A non-finite loss fires at once.

    Defaults (AWS): collection_names None, tensor_regex None, use_losses_collection True, num_steps 10,
    diff_percent 0.0 ("checks if the loss is decreasing"), mode None: every mode that has losses, EVAL then TRAIN
    (AWS checks "EVAL, then TRAIN, then GLOBAL").
    """

    PARAMETERS = {
        "collection_names": Parameter(as_list, None), "tensor_regex": Parameter(as_list, None),
        "use_losses_collection": Parameter(as_bool, True), "num_steps": Parameter(int, 10),
        "diff_percent": Parameter(float, 0.0), "mode": Parameter(as_optional, None),
    }

    def __init__(self, base_trial: Any, **raw: str) -> None:
        super().__init__(base_trial, **raw)
        self.reference: dict[tuple[str, str], Pass] = {}
        self.block: dict[tuple[str, str], Pass] = {}

    def wanted(self, mode: str) -> bool:
        return self.params["mode"] is None or mode == str(self.params["mode"]).upper()

    def on_value(self, name: str, mode: str, mode_step: int, step: int, value: float) -> bool:
        if not self.wanted(mode):
            return False
        if not math.isfinite(value):
            return self.fire(step, f"the {mode} loss {name} became {value}",
                             "Training diverged: the learning rate is most likely too high (lower it 10x), or the "
                             "loss takes the log of 0 (check the labels and the last layer).", loss=value)
        if mode != "EVAL" and (name, mode) not in self.reference:
            self.reference[(name, mode)] = Pass(mode, [mode_step], [step], [value])
        return False

    def on_pass(self, name: str, done: Pass) -> bool:
        key = (name, done.mode)
        if not self.wanted(done.mode):
            return False
        if key not in self.reference:
            self.reference[key] = done
            return False
        block = self.block.setdefault(key, Pass(done.mode))
        block.extend(done)
        if block.steps[-1] - self.reference[key].steps[-1] < self.params["num_steps"]:
            return False
        del self.block[key]
        return self.compare(name, self.reference[key], block)

    def compare(self, name: str, before: Pass, block: Pass) -> bool:
        self.judged += 1
        self.reference[(name, block.mode)] = block
        wanted = before.mean * (1 - self.params["diff_percent"] / 100)
        if block.mean < wanted:
            return False
        by = f" by {self.params['diff_percent']:g}%" if self.params["diff_percent"] else ""
        rising = block.mean > 1.5 * before.mean or not math.isfinite(block.mean)
        advice = ("A loss that rises means training diverges: the learning rate is most likely too high (lower it "
                  "3-10x)." if rising else
                  "A flat loss: the learning rate may be too low, layers frozen, or the labels not matching the "
                  "inputs. Late in a run it can also mean the model has converged: more epochs will not help.")
        seen = (f"the mean {block.mode} loss {block.mean:.4g} over {block.span} did not decrease{by} from "
                f"{before.mean:.4g} over {before.span}")
        return self.fire(block.global_steps[-1], seen, advice, loss=block.mean, previous_loss=before.mean, tensor=name)

    def missing_data(self) -> str:
        return (f"no loss series went on for {self.params['num_steps']} steps after its first pass, nothing to "
                f"compare ({self.saved_text()}); save the losses more often or lower num_steps")


class Overfit(LossRule):
    """Validation loss drifting above training loss: after each evaluation pass (from `start_step` on), the ratio
    (mean validation loss - mean training loss) / mean training loss, the training mean being that of the training
    pass just before. IssuesFound when the ratio exceeds `ratio_threshold` for more than `patience` consecutive
    evaluation passes.

    Defaults (AWS): tensor_regex None (the losses collection), start_step 0, patience 1, ratio_threshold 0.1.
    """

    PARAMETERS = {
        "tensor_regex": Parameter(as_list, None), "start_step": Parameter(int, 0), "patience": Parameter(int, 1),
        "ratio_threshold": Parameter(float, 0.1),
    }

    def __init__(self, base_trial: Any, **raw: str) -> None:
        super().__init__(base_trial, **raw)
        self.training: dict[str, Pass] = {}
        self.exceeded: dict[str, list[float]] = {}

    def on_pass(self, name: str, done: Pass) -> bool:
        if done.mode == "TRAIN":
            self.training[name] = done
            return False
        if done.mode != "EVAL" or name not in self.training or done.global_steps[0] < self.params["start_step"]:
            return False
        self.judged += 1
        train = self.training[name].mean
        ratio = (done.mean - train) / train if train > 0 else math.inf
        ratios = self.exceeded.setdefault(name, [])
        if not ratio > self.params["ratio_threshold"]:
            ratios.clear()
            return False
        ratios.append(ratio)
        if len(ratios) <= self.params["patience"]:
            return False
        seen = (f"the mean validation loss was above the mean training loss by more than "
                f"{self.params['ratio_threshold']:.0%} in {len(ratios)} evaluations in a row (last: {done.mean:.4g} "
                f"vs {train:.4g}, {ratio:.0%})")
        advice = ("The model learns the training set rather than the task: regularise (augmentation, weight decay, "
                  "dropout), get more data, or stop earlier.")
        return self.fire(done.global_steps[-1], seen, advice, validation_loss=done.mean, training_loss=train,
                         ratios=list(ratios), tensor=name)

    def missing_data(self) -> str:
        return (f"no evaluation pass followed a training pass ({self.saved_text()}): Overfit needs losses saved in "
                f"both TRAIN and EVAL mode (hook.set_mode)")


class Overtraining(LossRule):
    """Training that no longer improves anything: per mode, the mean loss of each pass is compared with the best so
    far; a pass improves on it when lower by more than `delta`. IssuesFound when the training loss has not improved
    for `patience_train` training passes, or the validation loss for `patience_validation` evaluation passes.

    Defaults (AWS): patience_train 5, patience_validation 10, delta 0.1 (the Developer Guide's table; some later
    pages say 0.01: set it in [debugger.rule_parameters.overtraining] if yours does).
    """

    PARAMETERS = {
        "patience_train": Parameter(int, 5), "patience_validation": Parameter(int, 10),
        "delta": Parameter(float, 0.1),
    }

    def __init__(self, base_trial: Any, **raw: str) -> None:
        super().__init__(base_trial, **raw)
        self.best: dict[tuple[str, str], Pass] = {}
        self.stale: dict[tuple[str, str], int] = {}

    def on_pass(self, name: str, done: Pass) -> bool:
        patience = {"TRAIN": self.params["patience_train"], "EVAL": self.params["patience_validation"]}.get(done.mode)
        key = (name, done.mode)
        if patience is None:
            return False
        best = self.best.get(key)
        if best is None or done.mean < best.mean - self.params["delta"]:
            self.best[key], self.stale[key] = done, 0
            self.judged += best is not None
            return False
        self.judged += 1
        self.stale[key] += 1
        if self.stale[key] < patience:
            return False
        which = "training" if done.mode == "TRAIN" else "validation"
        seen = (f"the mean {which} loss has not improved by more than {self.params['delta']:g} for "
                f"{self.stale[key]} passes (best {best.mean:.4g} over {done.mode} {best.span}, now {done.mean:.4g})")
        advice = ("The model stopped improving: more training only risks overfitting. Train fewer epochs (or stop "
                  "early), or lower the learning rate or add data to keep improving.")
        return self.fire(done.global_steps[-1], seen, advice, best_loss=best.mean, loss=done.mean, tensor=name)

    def missing_data(self) -> str:
        return f"fewer than two training or evaluation passes had losses to compare ({self.saved_text()})"
