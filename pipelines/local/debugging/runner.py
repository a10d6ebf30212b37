"""A training job's DebugRuleConfigurations evaluated over its smdebug trial: statuses as DescribeTrainingJob shows
them (`DebugRuleEvaluationStatuses`) and each rule's findings as JSON where SageMaker puts rule output.

Each rule runs through smdebug's `invoke_rule`, one saved global step at a time, so the same evaluation serves while
the job runs (`poll`, the steps written so far) and after it (`finish`). A rule's status only ever leaves InProgress
once: IssuesFound at the first step its condition is met, or at the end NoIssuesFound / Error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smdebug.exceptions import RuleEvaluationConditionMet
from smdebug.rules.rule_invoker import invoke_rule
from smdebug.trials import create_trial

from pipelines.local.container import job_arn, utc_now
from pipelines.local.debugging.base import BuiltinRule, NotEnoughData, RuleConfigError, parse_parameters
from pipelines.local.debugging.class_rules import ClassImbalance
from pipelines.local.debugging.loss_rules import LossNotDecreasing, Overfit, Overtraining
from pipelines.local.debugging.tensor_rules import (
    DeadRelu,
    ExplodingTensor,
    PoorWeightInitialization,
    VanishingGradient,
)

RULES: dict[str, type[BuiltinRule]] = {rule.__name__: rule for rule in (
    LossNotDecreasing, VanishingGradient, ExplodingTensor, Overfit, Overtraining, PoorWeightInitialization,
    ClassImbalance, DeadRelu)}
IN_PROGRESS, ISSUES_FOUND, NO_ISSUES_FOUND, ERROR = "InProgress", "IssuesFound", "NoIssuesFound", "Error"
OUTPUT_FILE = "findings.json"


@dataclass
class RuleConfig:
    """One entry of DebugRuleConfigurations."""

    name: str
    rule_to_invoke: str
    parameters: dict[str, str]
    actions: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_request(cls, entry: Mapping[str, Any]) -> RuleConfig:
        raw = {str(k): str(v) for k, v in (entry.get("RuleParameters") or {}).items()}
        actions = parse_actions(raw.pop("action_json", ""))
        parameters = {k: v for k, v in raw.items() if k != "rule_to_invoke" and not k.startswith("other_trial_")}
        name = entry["RuleConfigurationName"]
        return cls(name, raw.get("rule_to_invoke", name), parameters, actions)

    @property
    def stop_training(self) -> bool:
        return any(action.get("name") == "stoptraining" for action in self.actions)


def parse_actions(text: str) -> list[dict[str, Any]]:
    """The SDK's action_json, in smdebug's escaping (`[{\\"name\\": \\"stoptraining\\", ...}]`); names lowercased
    as smdebug reads them."""
    if not text.strip():
        return []
    actions = json.loads(text.replace('\\"', '"'))
    actions = actions if isinstance(actions, list) else [actions]
    return [{**action, "name": str(action.get("name", "")).lower()} for action in actions if isinstance(action, dict)]


class RuleRun:
    """One configured rule: its smdebug Rule over the trial and where its evaluation stands."""

    def __init__(self, config: RuleConfig, arn: str, hint: str = "") -> None:
        self.config, self.arn, self.hint = config, arn, hint
        self.status, self.details, self.modified = IN_PROGRESS, "", utc_now()
        self.rule: BuiltinRule | None = None
        self.next_step = 0
        self.steps_evaluated = 0
        rule_class = RULES.get(config.rule_to_invoke)
        if rule_class is None:
            self.end(ERROR, f"the local engine does not evaluate the rule {config.rule_to_invoke} "
                            f"(it evaluates {', '.join(RULES)})")
        else:
            try:
                parse_parameters(rule_class.PARAMETERS, config.parameters, config.rule_to_invoke)
            except RuleConfigError as exc:
                self.end(ERROR, str(exc))

    @property
    def done(self) -> bool:
        return self.status != IN_PROGRESS

    def start(self, trial: Any) -> None:
        if self.done or self.rule is not None:
            return
        try:
            self.rule = RULES[self.config.rule_to_invoke](trial, **self.config.parameters)
        except Exception as exc:
            self.end(ERROR, f"{self.config.name}: cannot start: {type(exc).__name__}: {exc}")

    def advance(self, steps: list[int]) -> bool:
        """Invokes the rule on the saved steps it has not seen; True when its condition was met now."""
        if self.done or self.rule is None:
            return False
        for step in (s for s in steps if s >= self.next_step):
            try:
                invoke_rule(self.rule, start_step=step, end_step=step + 1, raise_eval_cond=True)
            except RuleEvaluationConditionMet:
                self.next_step, self.steps_evaluated = step + 1, self.steps_evaluated + 1
                self.end(ISSUES_FOUND, self.issue_details())
                return True
            except Exception as exc:  # a rule that breaks on this job's data: Error, never the training step
                self.end(ERROR, f"{self.config.name}: evaluation failed at step {step}: {type(exc).__name__}: {exc}")
                return False
            self.next_step, self.steps_evaluated = step + 1, self.steps_evaluated + 1
        return False

    def finish(self) -> bool:
        """After the last step: IssuesFound, NoIssuesFound, or Error when the job saved too little to judge."""
        if self.done:
            return False
        if self.rule is None:
            self.end(ERROR, f"{self.config.name}: the training job saved no Debugger tensors to evaluate")
            return False
        try:
            fired = self.rule.finish()
        except NotEnoughData as exc:
            self.end(ERROR, f"{self.config.name}: cannot evaluate: {exc}")
            return False
        except Exception as exc:
            self.end(ERROR, f"{self.config.name}: evaluation failed at the end: {type(exc).__name__}: {exc}")
            return False
        if fired:
            self.end(ISSUES_FOUND, self.issue_details())
        else:
            self.end(NO_ISSUES_FOUND, f"{self.config.name}: no issues found in {self.steps_evaluated} saved steps")
        return fired

    def issue_details(self) -> str:
        finding = self.rule.finding if self.rule is not None else None
        text = finding.details(self.config.name) if finding else f"{self.config.name}: the condition was met"
        return text + (self.hint if "learning rate" in text else "")

    def end(self, status: str, details: str) -> None:
        self.status, self.details, self.modified = status, details, utc_now()

    def status_entry(self) -> dict[str, Any]:
        return {"RuleConfigurationName": self.config.name, "RuleEvaluationJobArn": self.arn,
                "RuleEvaluationStatus": self.status, "StatusDetails": self.details, "LastModifiedTime": self.modified}

    def output(self) -> dict[str, Any]:
        """The rule's full findings, written as JSON under rule-output/<RuleConfigurationName>/."""
        finding = self.rule.finding if self.rule is not None else None
        values = {} if finding is None else {
            "GlobalStep": finding.step, "Mode": finding.mode, "ModeStep": finding.mode_step, "Seen": finding.seen,
            "Advice": finding.advice, "Values": json_safe(finding.values)}
        parameters = self.rule.params if self.rule is not None else self.config.parameters
        return {**self.status_entry(), "RuleToInvoke": self.config.rule_to_invoke,
                "RuleParameters": json_safe(parameters), "Actions": self.config.actions,
                "StepsEvaluated": self.steps_evaluated, "Finding": values or None}


def json_safe(value: Any) -> Any:
    """Findings hold numpy numbers and inf/nan; JSON holds neither."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class RuleEvaluation:
    """Every rule of one training job over the tensors it writes to `tensors_dir`."""

    def __init__(self, configs: list[RuleConfig], tensors_dir: Path, job_name: str, region: str,
                 output_dir: Path | None = None, hint: str = "") -> None:
        self.tensors_dir, self.output_dir = tensors_dir, output_dir
        self.runs = [RuleRun(config, rule_job_arn(job_name, config.name, region), hint) for config in configs]
        self.trial: Any = None

    def poll(self) -> list[RuleRun]:
        """Evaluates the steps saved so far; returns the rules that found issues in them."""
        trial = self.open_trial()
        if trial is None:
            return []
        steps = trial.steps()  # complete steps only: a step still being written is left for the next poll
        return [run for run in self.runs if run.advance(steps)]

    def finish(self) -> list[dict[str, Any]]:
        """After the job: the steps left, each rule's end-of-run judgement, the output files; the statuses."""
        self.poll()
        for run in self.runs:
            run.finish()
        if self.output_dir is not None:
            for run in self.runs:
                path = self.output_dir / run.config.name / OUTPUT_FILE
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(run.output(), indent=2) + "\n")
        return self.statuses()

    def statuses(self) -> list[dict[str, Any]]:
        return [run.status_entry() for run in self.runs]

    def open_trial(self) -> Any:
        # create_trial waits (forever, while no end-of-training marker exists) for the collections file, which
        # smdebug writes after the first step: only open a trial once it is there.
        if self.trial is None and any((self.tensors_dir / "collections").glob("*/*.json")):
            self.trial = create_trial(str(self.tensors_dir))
            for run in self.runs:
                run.start(self.trial)
        return self.trial


def rule_job_arn(job_name: str, rule_name: str, region: str) -> str:
    """SageMaker runs each rule as a processing job named after the training job and the rule."""
    rule = re.sub(r"[^a-z0-9]+", "-", rule_name.lower()).strip("-")[:24]
    return job_arn("processing-job", f"{job_name[: 62 - len(rule)]}-{rule}", region)
