"""What every local Debugger rule shares: smdebug's `Rule` with AWS's documented parameters, and a finding a person
can read.

A rule is invoked once per saved global step, in order (smdebug's `invoke_rule`); `invoke_at_step` returns True when
the condition is met, after recording a `Finding` (what was seen, where, what it usually means). `finish()` runs once
after the last step, for what can only be judged at the end. A rule that never had the data to judge anything raises
`NotEnoughData` there: its status is Error, never a NoIssuesFound that means nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
from smdebug.core.modes import ModeKeys
from smdebug.exceptions import TensorUnavailableForStep
from smdebug.rules.rule import Rule


class RuleConfigError(Exception):
    """A parameter the rule does not take, or a value it cannot read: the rule's status is Error."""


class NotEnoughData(Exception):
    """The job saved too little for the rule to judge anything; the message says what is missing."""


@dataclass
class Finding:
    """What a rule saw when its condition was met."""

    step: int  # global step
    mode: str
    mode_step: int
    seen: str  # what was seen, one sentence without the step
    advice: str  # what it usually means and the usual fix
    values: dict[str, Any] = field(default_factory=dict)

    def details(self, rule_name: str) -> str:
        return f"{rule_name}: {self.seen} (step {self.mode_step}, mode {self.mode}). {self.advice}"


class Parameter(NamedTuple):
    parse: Callable[[str], Any]
    default: Any


def as_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"expected True or False, got {text!r}")


def as_list(text: str) -> list[str] | None:
    """AWS's "list of strings or a comma-separated string"; None/empty: not given."""
    if text is None or str(text).strip() in ("", "None"):
        return None
    return [item.strip() for item in str(text).split(",") if item.strip()]


def as_optional(text: str) -> str | None:
    return None if text is None or str(text).strip() in ("", "None") else str(text).strip()


def parse_parameters(spec: dict[str, Parameter], raw: dict[str, str], rule: str) -> dict[str, Any]:
    """Each documented parameter from the request's strings, the documented default where absent."""
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise RuleConfigError(f"{rule} takes no parameter {', '.join(unknown)} (it takes: {', '.join(sorted(spec))})")
    values = {}
    for name, parameter in spec.items():
        if name not in raw:
            values[name] = parameter.default
            continue
        try:
            values[name] = parameter.parse(raw[name])
        except (TypeError, ValueError) as exc:
            raise RuleConfigError(f"{rule} parameter {name}={raw[name]!r}: {exc}") from None
    return values


def matches(name: str, patterns: Iterable[str]) -> bool:
    return any(re.search(pattern, name) for pattern in patterns)


class BuiltinRule(Rule):
    """smdebug's `Rule`, parameters parsed from the request, findings recorded instead of only a boolean."""

    PARAMETERS: ClassVar[dict[str, Parameter]] = {}

    def __init__(self, base_trial: Any, **raw: str) -> None:
        # No action string: smdebug's own actions call boto3 (StopTrainingJob); the local engine stops the job itself.
        super().__init__(base_trial, action_str="")
        self.params = parse_parameters(self.PARAMETERS, raw, self.rule_name)
        self.finding: Finding | None = None
        self.judged = 0  # how often the rule had the data to judge; 0 after the last step means Error

    def invoke_at_step(self, step: int) -> bool:  # smdebug calls it once per global step
        return self.check_step(step)

    def check_step(self, step: int) -> bool:
        raise NotImplementedError

    def finish(self) -> bool:
        """After the last step: fire on what only the whole run shows; raise NotEnoughData when nothing was judged."""
        if self.judged == 0:
            raise NotEnoughData(self.missing_data())
        return False

    def missing_data(self) -> str:
        return "the job saved no tensors this rule reads"

    # ------------------------------------------------------------------------------------------ helpers
    def fire(self, step: int, seen: str, advice: str, **values: Any) -> bool:
        mode, mode_step = self.mode_of(step)
        self.finding = Finding(step, mode, mode_step, seen, advice, values)
        return True

    def mode_of(self, step: int) -> tuple[str, int]:
        mode, mode_step = self.base_trial.mode_modestep(step)
        return (mode.name if mode is not None else ModeKeys.GLOBAL.name), (step if mode_step is None else mode_step)

    def names_at(self, step: int, collections: Iterable[str] = (), patterns: Iterable[str] = ()) -> list[str]:
        """Tensors saved at global `step` that are in one of `collections` or match one of `patterns`."""
        saved = self.base_trial.tensor_names(step=step)
        chosen = set()
        for collection in collections:
            if collection in self.base_trial.collections():
                chosen.update(self.base_trial.tensor_names(step=step, collection=collection))
        patterns = list(patterns)
        chosen.update(name for name in saved if patterns and matches(name, patterns))
        return sorted(chosen)

    def value(self, name: str, step: int) -> np.ndarray | None:
        try:
            return np.asarray(self.base_trial.tensor(name).value(step))
        except TensorUnavailableForStep:
            return None

    def scalar(self, name: str, step: int) -> float:
        """A tensor `names_at(step)` listed (so saved at `step`), as a number."""
        value = self.value(name, step)
        if value is None:
            raise LookupError(f"tensor {name} was listed at step {step} but holds no value there")
        return float(value)


def loss_names(rule: BuiltinRule, step: int, params: dict[str, Any]) -> list[str]:
    """The loss tensors of AWS's loss rules at `step`: `collection_names` and `tensor_regex` when given, the
    `losses` collection when `use_losses_collection` (or when nothing else names a tensor)."""
    collections = list(params.get("collection_names") or [])
    patterns = list(params.get("tensor_regex") or [])
    use_losses = params.get("use_losses_collection")  # None: a rule without that parameter
    if use_losses or not (collections or patterns):
        collections.append("losses")
    names = rule.names_at(step, collections, patterns)
    values = {name: rule.value(name, step) for name in names}
    return [name for name, value in values.items() if value is not None and np.size(value) == 1]  # scalars only
