"""Loss values grouped into passes: a run of consecutive saved steps in one mode, i.e. an epoch of training or one
evaluation over the validation set.

Per-batch validation losses are not comparable one by one (a validation loader is often ordered, here by class), and
per-batch training losses are noisy; the loss rules compare means over whole passes instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Pass:
    mode: str
    steps: list[int] = field(default_factory=list)  # mode steps with a value
    global_steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / len(self.values) if self.values else math.nan

    @property
    def span(self) -> str:
        return f"steps {self.steps[0]}-{self.steps[-1]}" if len(self.steps) > 1 else f"step {self.steps[0]}"

    def extend(self, other: Pass) -> None:
        self.steps += other.steps
        self.global_steps += other.global_steps
        self.values += other.values


class Passes:
    """Feeds on (mode, step, value) in global step order; `see` returns the pass a mode change completed."""

    def __init__(self) -> None:
        self.current: Pass | None = None

    def see(self, mode: str) -> Pass | None:
        """A step of `mode` was saved (with or without a loss): a change of mode completes the current pass."""
        if self.current is not None and self.current.mode != mode:
            done, self.current = self.current, None
            return done if done.values else None
        return None

    def add(self, mode: str, mode_step: int, global_step: int, value: float) -> None:
        if self.current is None:
            self.current = Pass(mode)
        self.current.steps.append(mode_step)
        self.current.global_steps.append(global_step)
        self.current.values.append(value)

    def close(self) -> Pass | None:
        done, self.current = self.current, None
        return done if done is not None and done.values else None
