"""Search strategies of the local tuning job: which hyperparameter values each trial gets.

- `Random` samples every range independently, as SageMaker documents it: Linear (and Auto, which locally means
  Linear) uniform, Logarithmic log-uniform, ReverseLogarithmic `1 - x` log-uniform (denser near the top of a range
  inside [0, 1)), integers rounded and kept within bounds, categorical values uniform.
- `Grid` runs the cartesian product of the categorical ranges, every combination once, in the order the ranges and
  their values are given (SageMaker's Grid takes categorical ranges only).
- `Bayesian` is optuna's TPE sampler. It is the local *stand-in* for SageMaker's Bayesian strategy, not the same
  algorithm: on the same budget it finds comparably good values, not the same ones.
- `Hyperband` is refused: it stops trials early from their intermediate metrics, which the local engine does not do.

A strategy hands out trials with `ask()` (None when it has no more) and hears each finished trial's objective with
`tell()`; both are called from one thread. Values are strings, as in the CreateTrainingJob request: continuous ones
the repr of the float, integers their digits, categorical ones exactly as given in `Values` (the SDK sends them
JSON-quoted, `"\\"64\\""`, and the service hands them back that way).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pipelines.local.step_api import StepFailed

CONTINUOUS, INTEGER, CATEGORICAL = "Continuous", "Integer", "Categorical"
SCALING_TYPES = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
SUPPORTED_STRATEGIES = ("Random", "Grid", "Bayesian")


@dataclass(frozen=True)
class ParameterRange:
    name: str
    kind: str  # CONTINUOUS | INTEGER | CATEGORICAL
    scaling: str = "Linear"
    low: float = 0.0
    high: float = 0.0
    values: tuple[str, ...] = ()

    @property
    def is_log(self) -> bool:
        return self.scaling == "Logarithmic"

    @property
    def is_reverse_log(self) -> bool:
        return self.scaling == "ReverseLogarithmic"

    def format(self, number: float) -> str:
        """A sampled number as the request carries it, clipped into the range (exp(log(x)) can overshoot by an ulp)."""
        clipped = min(max(number, self.low), self.high)
        if self.kind == INTEGER:
            return str(int(round(clipped)))
        return repr(float(clipped))


# ---------------------------------------------------------------------------------------------- ranges
def parse_ranges(parameter_ranges: Mapping[str, Any]) -> list[ParameterRange]:
    """The ranges of a request's `ParameterRanges`, checked as the service checks them (StepFailed if wrong)."""
    ranges = [_numeric_range(item, CONTINUOUS) for item in parameter_ranges.get("ContinuousParameterRanges", [])]
    ranges += [_numeric_range(item, INTEGER) for item in parameter_ranges.get("IntegerParameterRanges", [])]
    ranges += [_categorical_range(item) for item in parameter_ranges.get("CategoricalParameterRanges", [])]
    names = [r.name for r in ranges]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise StepFailed(f"ParameterRanges: hyperparameter {', '.join(duplicates)} has more than one range")
    if not ranges:
        raise StepFailed("ParameterRanges: the tuning job has no hyperparameter ranges to tune")
    return ranges


def _numeric_range(item: Mapping[str, Any], kind: str) -> ParameterRange:
    name, scaling = item["Name"], item.get("ScalingType", "Auto")
    where = f"{kind}ParameterRanges {name}"
    low, high = _number(item["MinValue"], kind, where), _number(item["MaxValue"], kind, where)
    if scaling not in SCALING_TYPES:
        raise StepFailed(f"{where}: unknown ScalingType {scaling!r} (use one of {', '.join(SCALING_TYPES)})")
    if low > high:
        raise StepFailed(f"{where}: MinValue {item['MinValue']} is greater than MaxValue {item['MaxValue']}")
    if scaling == "Logarithmic" and low <= 0:
        raise StepFailed(f"{where}: Logarithmic scaling needs MinValue > 0, got {item['MinValue']}")
    if scaling == "ReverseLogarithmic":
        if kind == INTEGER:
            raise StepFailed(f"{where}: ReverseLogarithmic scaling works only for continuous ranges")
        if not (0 <= low and high < 1):
            raise StepFailed(f"{where}: ReverseLogarithmic scaling needs 0 <= MinValue and MaxValue < 1")
    return ParameterRange(name, kind, scaling, low, high)


def _number(text: Any, kind: str, where: str) -> float:
    try:
        number = float(text)
    except (TypeError, ValueError):
        raise StepFailed(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(number) or (kind == INTEGER and not number.is_integer()):
        raise StepFailed(f"{where}: {text!r} is not a {'whole' if kind == INTEGER else 'finite'} number")
    return number


def _categorical_range(item: Mapping[str, Any]) -> ParameterRange:
    values = tuple(item.get("Values", []))
    if not values:
        raise StepFailed(f"CategoricalParameterRanges {item['Name']}: Values is empty")
    return ParameterRange(item["Name"], CATEGORICAL, values=values)


# ---------------------------------------------------------------------------------------------- strategies
class SearchStrategy(Protocol):
    def ask(self) -> dict[str, str] | None:
        """The tuned values of the next trial; None when the strategy has no more trials to offer."""
        ...

    def tell(self, number: int, objective: float | None) -> None:
        """Trial `number` (0-based, in ask order) finished; `objective` is None when it produced none."""
        ...


def sample_value(parameter: ParameterRange, rng: random.Random) -> str:
    """One value drawn from `parameter` by its ScalingType."""
    if parameter.kind == CATEGORICAL:
        return rng.choice(parameter.values)
    low, high = parameter.low, parameter.high
    if parameter.is_log:
        return parameter.format(math.exp(rng.uniform(math.log(low), math.log(high))))
    if parameter.is_reverse_log:
        return parameter.format(1 - math.exp(rng.uniform(math.log(1 - high), math.log(1 - low))))
    if parameter.kind == INTEGER:
        return str(rng.randint(int(low), int(high)))  # every integer equally likely, both ends included
    return parameter.format(rng.uniform(low, high))


class RandomSearch:
    def __init__(self, ranges: Sequence[ParameterRange], seed: int) -> None:
        self._ranges = list(ranges)
        self._rng = random.Random(seed)

    def ask(self) -> dict[str, str] | None:
        return {parameter.name: sample_value(parameter, self._rng) for parameter in self._ranges}

    def tell(self, number: int, objective: float | None) -> None:
        pass  # random search does not learn


class GridSearch:
    def __init__(self, ranges: Sequence[ParameterRange]) -> None:
        numeric = [r.name for r in ranges if r.kind != CATEGORICAL]
        if numeric:
            raise StepFailed(
                f"The Grid strategy takes categorical ranges only; {', '.join(numeric)} "
                "is continuous or integer. Use CategoricalParameterRanges, or the Random or Bayesian strategy."
            )
        self._combinations: Iterator[tuple[str, ...]] = itertools.product(*(r.values for r in ranges))
        self._names = [r.name for r in ranges]

    def ask(self) -> dict[str, str] | None:
        combination = next(self._combinations, None)
        return None if combination is None else dict(zip(self._names, combination, strict=True))

    def tell(self, number: int, objective: float | None) -> None:
        pass  # the grid is fixed up front


class BayesianSearch:
    """optuna's TPE sampler through ask/tell: the local stand-in for SageMaker's Bayesian strategy."""

    def __init__(self, ranges: Sequence[ParameterRange], seed: int, direction: str, budget: int) -> None:
        import optuna  # imported here: only Bayesian tuning pays for it

        # optuna logs every trial at INFO on its own logger; the step's log already has one line per trial.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # optuna's default of 10 random start-up trials would turn a small local budget into pure random search.
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, min(10, budget // 3)))
        self._study = optuna.create_study(direction="maximize" if direction.lower() == "maximize" else "minimize",
                                          sampler=sampler)
        self._ranges = list(ranges)
        self._distributions = {r.name: _distribution(optuna, r) for r in ranges}
        self._trials: dict[int, Any] = {}
        self._asked = 0

    def ask(self) -> dict[str, str] | None:
        trial = self._study.ask(self._distributions)
        self._trials[self._asked] = trial
        self._asked += 1
        return {r.name: _from_optuna(r, trial.params[r.name]) for r in self._ranges}

    def tell(self, number: int, objective: float | None) -> None:
        from optuna.trial import TrialState

        trial = self._trials.pop(number)
        if objective is None or math.isnan(objective):
            self._study.tell(trial, state=TrialState.FAIL)
        else:
            self._study.tell(trial, objective)


def _distribution(optuna: Any, parameter: ParameterRange) -> Any:
    distributions = optuna.distributions
    if parameter.kind == CATEGORICAL:
        return distributions.CategoricalDistribution(parameter.values)
    if parameter.kind == INTEGER:
        return distributions.IntDistribution(int(parameter.low), int(parameter.high), log=parameter.is_log)
    if parameter.is_reverse_log:
        # optuna has no reverse-log scale: it searches u = 1 - x on a log scale instead.
        return distributions.FloatDistribution(1 - parameter.high, 1 - parameter.low, log=True)
    return distributions.FloatDistribution(parameter.low, parameter.high, log=parameter.is_log)


def _from_optuna(parameter: ParameterRange, value: Any) -> str:
    if parameter.kind == CATEGORICAL:
        return value
    if parameter.is_reverse_log:
        return parameter.format(1 - value)
    return parameter.format(value)


def make_strategy(
    name: str, ranges: Sequence[ParameterRange], seed: int, direction: str, budget: int
) -> SearchStrategy:
    """The strategy a request's `Strategy` names; StepFailed for those the local engine does not run."""
    if name == "Random":
        return RandomSearch(ranges, seed)
    if name == "Grid":
        return GridSearch(ranges)
    if name == "Bayesian":
        return BayesianSearch(ranges, seed, direction, budget)
    if name == "Hyperband":
        raise StepFailed(
            "The Hyperband tuning strategy is not supported by the local engine (it stops training jobs early "
            "from their intermediate metrics). Use Bayesian or Random for local runs."
        )
    raise StepFailed(f"Unknown tuning strategy {name!r}: use one of {', '.join(SUPPORTED_STRATEGIES)}")


def grid_size(ranges: Sequence[ParameterRange]) -> int:
    """How many trials a Grid over `ranges` runs."""
    return math.prod(len(r.values) for r in ranges)
