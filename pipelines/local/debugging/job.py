"""A training job's Debugger rules as the training handler uses them: evaluated in a thread while the job runs
(honouring StopTraining), finished after it, statuses published for the progress view.

SageMaker's StopTraining action calls StopTrainingJob: the job ends Stopped (SIGTERM, then SIGKILL) and the pipeline
step fails. Here the job process waits on a `StopSignal` that a rule's action sets as well as the executor's cancel.
smdebug (and with it torch) is imported only for a job that has rules.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from pipelines.local.container import utc_now, workspace_path
from pipelines.local.step_api import StepFailed
from pipelines.local.workspace import Workspace

POLL_SECONDS = 5.0
WAIT_SLICE = 0.05
_IMPORT_LOCK = threading.Lock()
logger = logging.getLogger(__name__)


class StopSignal(threading.Event):
    """Set by a rule's StopTraining action; `wait` also returns True when the executor cancels the step."""

    def __init__(self, cancelled: threading.Event) -> None:
        super().__init__()
        self.cancelled = cancelled
        self.reason = ""

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (self.is_set() or self.cancelled.is_set()):
            left = WAIT_SLICE if deadline is None else min(WAIT_SLICE, deadline - time.monotonic())
            if left <= 0:
                return False
            super().wait(left)  # wakes at once when a rule stops the job; a cancel is seen within a slice
        return True

    def stop(self, reason: str) -> None:
        self.reason = reason
        self.set()


def load_runner() -> ModuleType:
    """The runner module; smdebug's logger, which prints INFO lines to stdout from import on, silenced first."""
    with _IMPORT_LOCK:
        if "smdebug" not in sys.modules:
            # Its handler binds the stdout of its first use for good: devnull, kept open for the process' life.
            devnull = open(os.devnull, "w")  # noqa: SIM115
            with contextlib.redirect_stdout(devnull):
                import smdebug.core.logger as smdebug_logger

                smdebug_logger.get_logger()
        logging.getLogger("smdebug").setLevel(logging.ERROR)
        from pipelines.local.debugging import runner
    return runner


def rule_output_dir(request: Mapping[str, Any], job_name: str, workspace: Workspace | None) -> Path | None:
    """Where SageMaker puts rule output: <DebugHookConfig.S3OutputPath>/<job>/rule-output/<rule>/."""
    output = (request.get("DebugHookConfig") or {}).get("S3OutputPath")
    if not output or workspace is None:
        return None
    return workspace_path(workspace, f"{output.rstrip('/')}/{job_name}/rule-output")


def learning_rate_hint(hyperparameters: Mapping[str, str]) -> str:
    """Appended to findings that blame the learning rate: the job's own value makes the advice concrete."""
    for name in ("lr", "learning_rate", "learning-rate"):
        if name in hyperparameters:
            value: Any = hyperparameters[name]
            with contextlib.suppress(ValueError, TypeError):
                value = float(json.loads(str(value)))
                value = f"{value:.4g}"
            return f" This job's learning rate: {value}."
    return ""


class JobRules:
    """DebugRuleConfigurations of one training job; every method is a no-op when it has none."""

    def __init__(self, request: Mapping[str, Any], job_name: str, region: str, tensors_dir: Path,
                 workspace: Workspace | None, cancelled: threading.Event) -> None:
        self.signal = StopSignal(cancelled)
        self.evaluation: Any = None
        self.unavailable: list[dict[str, Any]] = []  # statuses when smdebug itself cannot be loaded
        configs = request.get("DebugRuleConfigurations") or []
        if not configs:
            return
        try:
            runner = load_runner()
            self.evaluation = runner.RuleEvaluation(
                [runner.RuleConfig.from_request(entry) for entry in configs], tensors_dir, job_name, region,
                rule_output_dir(request, job_name, workspace), learning_rate_hint(request.get("HyperParameters") or {}))
        except Exception as exc:  # smdebug broken here, or an unreadable action_json: every rule says so
            reason = f"the local engine cannot evaluate Debugger rules: {type(exc).__name__}: {exc}"
            self.unavailable = [{"RuleConfigurationName": entry.get("RuleConfigurationName", ""),
                                 "RuleEvaluationJobArn": "", "RuleEvaluationStatus": "Error", "StatusDetails": reason,
                                 "LastModifiedTime": utc_now()} for entry in configs]

    @contextlib.contextmanager
    def watching(self, publish: Callable[[list[dict[str, Any]]], None]) -> Iterator[None]:
        """Evaluates the rules every POLL_SECONDS while the body (the job process) runs."""
        if self.evaluation is None:
            yield
            return
        done = threading.Event()
        thread = threading.Thread(target=self._watch, args=(done, publish), name="debugger-rules", daemon=True)
        publish(self.evaluation.statuses())
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _watch(self, done: threading.Event, publish: Callable[[list[dict[str, Any]]], None]) -> None:
        failures = 0
        while not done.wait(POLL_SECONDS):
            try:
                fired = self.evaluation.poll()
            except Exception:  # e.g. a collections file read half-written: best effort, the next poll retries
                failures += 1
                if failures == 1:
                    logger.exception("debugger rules: live evaluation failed (retrying)")
                continue
            if fired:
                publish(self.evaluation.statuses())
            stopping = [run for run in fired if run.config.stop_training]
            if stopping and not self.signal.is_set():
                run = stopping[0]
                self.signal.stop(f"Stopped: the StopTraining action of Debugger rule {run.config.name} stopped the "
                                 f"training job ({run.status}). {run.details}")

    def failure(self, failed: StepFailed) -> StepFailed:
        """The step's failure: a job stopped by a rule's StopTraining action says which rule and what it saw."""
        if self.signal.is_set() and not self.signal.cancelled.is_set():
            return StepFailed(self.signal.reason)
        return failed

    @property
    def stopped_by_rule(self) -> bool:
        return self.signal.is_set()

    def finish(self) -> dict[str, Any]:
        """Evaluates what the job left; the properties to merge into DescribeTrainingJob's ({} without rules)."""
        stopped = {"TrainingJobStatus": "Stopped"} if self.stopped_by_rule else {}
        if self.evaluation is None:
            return {"DebugRuleEvaluationStatuses": self.unavailable, **stopped} if self.unavailable else stopped
        try:
            statuses = self.evaluation.finish()
        except Exception as exc:  # as on SageMaker, rule evaluation never fails the training step by itself
            logger.exception("debugger rules: evaluation failed")
            for run in self.evaluation.runs:
                if not run.done:
                    run.end("Error", f"{run.config.name}: evaluation failed: {type(exc).__name__}: {exc}")
            statuses = self.evaluation.statuses()
        return {"DebugRuleEvaluationStatuses": statuses, **stopped}
