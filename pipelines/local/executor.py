"""Runs one execution of a pipeline definition: steps in dependency order, concurrently within a CPU budget.

Scheduling. The main thread owns all state; each running step's handler works in its own thread and reports back
through a queue. Whenever something changes the main thread starts every step that is ready: its dependencies
succeeded and, for a branch step, its condition picked its branch (see `dag`). Condition and Fail steps are
evaluated right there (they cost nothing).

CPU budget. Only job steps (Processing, Training, Tuning) run work that wants cores; the metadata steps
(RegisterModel, Model, EndpointConfig, Endpoint) start at once and get `cpu_budget=1`. The job steps that are ready
together split the free cores between them (a lone job gets them all; a tuning step spreads its share over its
parallel training jobs). A core granted to a step stays with it until it ends, so the sum of the grants never
exceeds the budget: a job step that finds no free core waits for one.

Before a step runs its arguments are resolved and checked with botocore (`check_request`): a request the service
would refuse fails the step with `ValidationException: <botocore's words>`. After a Processing step succeeds its
PropertyFiles are read from the workspace. The first failed step fails the execution: steps already running finish,
nothing new starts. Ctrl-C (KeyboardInterrupt) sets every running step's `cancelled` event and marks the execution
Stopped. A job failure a step's RetryPolicies name is retried in the step's thread (`retry_policies`), each retry
recorded on the step. A step with CacheConfig whose key matches an earlier success is not run (`step_reuse`).
Every transition is one StateStore transaction, so a crash loses nothing recorded; `retry`
re-runs the steps that did not succeed, with the properties and property files of those that did.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.local.dag import DefinitionError, StepNode, build_graph
from pipelines.local.expressions import ExecutionContext, ExpressionError, evaluate_conditions, resolve, to_text
from pipelines.local.retry_policies import run_with_retries, step_policies
from pipelines.local.state import ExecutionRecord, StateStore, process_identity
from pipelines.local.step_api import StepFailed, StepHandler, StepRun
from pipelines.local.step_reuse import StepReuse
from pipelines.local.workspace import Workspace
from pipelines.validation import STEP_REQUESTS, check_request

logger = logging.getLogger(__name__)
JOB_STEP_TYPES = ("Processing", "Training", "Tuning")
POLL_S = 0.2  # how often the main thread wakes without news: keeps Ctrl-C responsive
STOP_GRACE_S = 60.0  # how long cancelled steps get to wind down before they are recorded Stopped anyway


class RetryError(Exception):
    """The execution cannot be retried (still running, or it succeeded)."""


def default_cpu_budget() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def step_failure_reason(node: StepNode, reason: str) -> str:
    return f"Step failure: One or multiple steps failed. Step {node.name} ({node.type}) failed: {reason}"


@dataclass
class StepEvent:
    """What a handler thread reports: live progress, or the end of its step."""

    name: str
    properties: dict[str, Any] | None = None
    property_files: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None
    progress: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None  # a failure its RetryPolicies retry: the step goes on


class CpuPool:
    """Cores not yet granted to a running job step."""

    def __init__(self, total: int) -> None:
        self.total = self.free = max(1, total)

    def grant(self, count: int) -> list[int]:
        """Shares of the free cores for `count` job steps ready together; fewer shares when cores run short."""
        takers = min(count, self.free)
        shares = [self.free // takers + (1 if i < self.free % takers else 0) for i in range(takers)] if takers else []
        self.free -= sum(shares)
        return shares

    def release(self, cores: int) -> None:
        self.free += cores


class Executor:
    """Runs executions recorded in `store` with `handlers` (step type -> handler)."""

    def __init__(self, workspace: Workspace, store: StateStore, handlers: Mapping[str, StepHandler],
                 cpu_budget: int | None = None, on_log: Callable[[str, str], None] | None = None) -> None:
        self.workspace, self.store, self.handlers = workspace, store, dict(handlers)
        self.cpu_budget = max(1, cpu_budget or default_cpu_budget())
        self.on_log = on_log

    def run(self, execution_id: str, on_change: Callable[[], None] | None = None) -> str:
        """Runs the execution's current attempt to its end (keeping steps earlier attempts finished); returns its
        final status."""
        record = self._record(execution_id)
        return ExecutionRun(self, record, on_change).execute()

    def retry(self, execution_id: str, on_change: Callable[[], None] | None = None) -> str:
        """A new attempt of a Failed or Stopped execution: succeeded steps are kept, the others run again."""
        record = self._record(execution_id)
        if self.store.begin_retry(record.id, *process_identity()) is None:
            raise RetryError(f"execution {record.id} is {record.status}; only a Failed or Stopped one can be retried")
        return self.run(record.id, on_change)

    def _record(self, execution_id: str) -> ExecutionRecord:
        record = self.store.get_execution(execution_id)
        if record is None:
            raise RetryError(f"no execution {execution_id}")
        return record


class ExecutionRun:
    """One attempt of one execution; lives for the duration of `execute`."""

    def __init__(self, executor: Executor, record: ExecutionRecord, on_change: Callable[[], None] | None) -> None:
        self.executor, self.record, self.attempt = executor, record, record.attempt
        self.store, self.on_change = executor.store, on_change
        self.definition = json.loads(record.definition)
        self.context = ExecutionContext.for_execution(
            self.definition, record.parameters, execution_id=record.id, execution_arn=record.arn,
            pipeline_name=record.pipeline, pipeline_arn=record.pipeline_arn, started=record.started,
            read_uri=self._read_json_uri)
        self.nodes: dict[str, StepNode] = {}
        self.state: dict[str, str] = {}  # step -> Executing | Succeeded | Failed | Stopped | Skipped
        self.running: dict[str, tuple[StepRun, int]] = {}  # step -> (its run, cores granted)
        self.events: queue.Queue[StepEvent] = queue.Queue()
        self.cpu = CpuPool(executor.cpu_budget)
        self.failure: str | None = None
        self.stopping = False
        self.reuse = StepReuse(self.store, record.pipeline, record.use_cache)

    def execute(self) -> str:
        self.store.claim_execution(self.record.id, *process_identity())
        self._changed()
        try:
            self.nodes = build_graph(self.definition, self.executor.handlers)
        except DefinitionError as err:
            self.failure = str(err)
            return self._finish()
        self._restore_succeeded()
        try:
            self._loop()
        except KeyboardInterrupt:
            self._stop()
        return self._finish()

    # ------------------------------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        while True:
            while self.failure is None and self._start_ready():
                pass
            if not self.running:
                return
            try:
                event = self.events.get(timeout=POLL_S)
            except queue.Empty:
                continue
            self._handle(event)

    def _start_ready(self) -> bool:
        """Starts what can start now; True when something did (a control step may have unblocked more)."""
        self._skip_unreachable()
        ready = [node for node in self.nodes.values() if node.name not in self.state and self._ready(node)]
        jobs = [node for node in ready if node.type in JOB_STEP_TYPES]
        started = False
        for node in [node for node in ready if node.type not in JOB_STEP_TYPES]:
            if self.failure is None:
                self._start(node, cores=0)
                started = True
        shares = self.cpu.grant(len(jobs)) if self.failure is None else []
        for node, cores in zip(jobs, shares, strict=False):  # fewer shares than jobs: the rest wait for cores
            if self.failure is not None:
                self.cpu.release(cores)
                continue
            self._start(node, cores)
            started = True
        return started

    def _ready(self, node: StepNode) -> bool:
        if any(self.state.get(dependency) != "Succeeded" for dependency in node.depends_on):
            return False
        return node.branch is None or self._branch_taken(node)

    def _branch_taken(self, node: StepNode) -> bool:
        condition, runs_on = node.branch  # type: ignore[misc]
        return self.context.step_properties[condition].get("Outcome") is runs_on

    def _skip_unreachable(self) -> None:
        """Marks (in memory only: they never appear) the steps of branches not taken and everything after them."""
        changed = True
        while changed:
            changed = False
            for node in self.nodes.values():
                if node.name in self.state:
                    continue
                not_taken = node.branch and self.state.get(node.branch[0]) == "Succeeded" and not self._branch_taken(
                    node)
                if not_taken or any(self.state.get(dependency) == "Skipped" for dependency in node.depends_on):
                    self.state[node.name], changed = "Skipped", True

    # ------------------------------------------------------------------------------------------ one step
    def _start(self, node: StepNode, cores: int) -> None:
        self.state[node.name] = "Executing"
        self.store.start_step(self.record.id, node.name, node.type, self.attempt)
        self._changed()
        try:
            if node.type == "Condition":
                outcome = evaluate_conditions(node.step["Arguments"].get("Conditions", []), self.context)
                self._succeeded(node, {"Outcome": outcome}, {})
            elif node.type == "Fail":
                message = to_text(resolve(node.step.get("Arguments", {}).get("ErrorMessage", ""), self.context))
                self._failed(node, message, execution_reason=message)
            else:
                arguments = resolve(node.step.get("Arguments", {}), self.context)
                cached = self.reuse.lookup(node.step, arguments)
                if cached is not None:
                    self.cpu.release(cores)
                    self._succeeded(node, cached.properties, cached.property_files, cached.cache)
                    self._logger(node.name)(f"cache hit: the result of {cached.source_execution_arn}, reused")
                    return
                self._start_job(node, arguments, cores)
        except ExpressionError as err:
            self.cpu.release(cores)
            self._failed(node, str(err))
        except Exception as err:  # an engine bug fails this step, not the whole engine mid-execution
            logger.exception("step %s: cannot start", node.name)
            self.cpu.release(cores)
            self._failed(node, f"InternalError: {type(err).__name__}: {err}")

    def _start_job(self, node: StepNode, arguments: dict[str, Any], cores: int) -> None:
        problems = check_request(node.type, arguments) if node.type in STEP_REQUESTS else []
        if problems:
            self.cpu.release(cores)
            self._failed(node, "ValidationException: " + "; ".join(problems))
            return
        run = StepRun(
            execution_id=self.record.id, pipeline_name=self.record.pipeline, step_name=node.name,
            step_type=node.type, arguments=arguments, workspace=self.executor.workspace,
            cpu_budget=max(1, cores), log=self._logger(node.name),
            on_progress=lambda progress: self.events.put(StepEvent(node.name, progress=dict(progress))),
        )
        self.running[node.name] = (run, cores)
        handler = self.executor.handlers[node.type]
        threading.Thread(target=self._run_handler, args=(node, handler, run), name=f"step-{node.name}",
                         daemon=True).start()

    def _run_handler(self, node: StepNode, handler: StepHandler, run: StepRun) -> None:
        """Handler thread: never touches shared state, only reports through the queue."""
        try:
            properties = run_with_retries(handler, run, step_policies(node.step),
                                          lambda retry: self.events.put(StepEvent(node.name, retry=retry)))
            if not isinstance(properties, dict):
                raise StepFailed(f"InternalError: the {node.type} handler returned {type(properties).__name__}")
            files = read_property_files(node, properties, run.arguments, self.executor.workspace)
            self.events.put(StepEvent(node.name, properties=properties, property_files=files))
        except StepFailed as err:
            self.events.put(StepEvent(node.name, failure=err.reason))
        except Exception as err:  # a handler bug must fail its step, not the engine
            logger.exception("step %s: handler error", node.name)
            self.events.put(StepEvent(node.name, failure=f"InternalError: {type(err).__name__}: {err}"))

    def _handle(self, event: StepEvent) -> None:
        if event.retry is not None:
            self.store.record_retry(self.record.id, event.name, self.attempt, event.retry)
            self._changed()
            return
        if event.progress is not None:
            if self.state.get(event.name) == "Executing":
                self.store.step_progress(self.record.id, event.name, self.attempt, event.progress)
                self._changed()
            return
        run, cores = self.running.pop(event.name)
        self.cpu.release(cores)
        node = self.nodes[event.name]
        if event.failure is None:
            self._succeeded(node, event.properties or {}, event.property_files)
        elif self.stopping or run.cancelled.is_set():
            self._record_end(node, "Stopped", event.failure)
        else:
            self._failed(node, event.failure)

    def _succeeded(self, node: StepNode, properties: dict[str, Any], files: dict[str, Any],
                   cache: dict[str, Any] | None = None) -> None:
        self.context.step_properties[node.name] = properties
        self.context.property_files[node.name] = files
        self.state[node.name] = "Succeeded"
        self.store.finish_step(self.record.id, node.name, self.attempt, "Succeeded", properties=properties,
                               property_files=files, cache=cache or self.reuse.record(node.name))
        self._changed()

    def _failed(self, node: StepNode, reason: str, execution_reason: str | None = None) -> None:
        if self.failure is None:
            self.failure = execution_reason or step_failure_reason(node, reason)
        self._record_end(node, "Failed", reason)

    def _record_end(self, node: StepNode, status: str, reason: str | None) -> None:
        self.state[node.name] = status
        self.store.finish_step(self.record.id, node.name, self.attempt, status, failure_reason=reason)
        self._changed()

    # ------------------------------------------------------------------------------------------ ending
    def _restore_succeeded(self) -> None:
        """For a retry: what earlier attempts achieved is kept, as SageMaker's RetryPipelineExecution does."""
        for step in self.store.list_steps(self.record.id):
            if step.status == "Succeeded" and step.name in self.nodes:
                self.state[step.name] = "Succeeded"
                self.context.step_properties[step.name] = step.properties or {}
                self.context.property_files[step.name] = step.property_files or {}

    def _stop(self) -> None:
        """Ctrl-C: cancel running steps and wait (a while) for them; a second Ctrl-C stops waiting."""
        self.stopping = True
        for run, _ in self.running.values():
            run.cancelled.set()
        deadline = time.monotonic() + STOP_GRACE_S
        try:
            while self.running and time.monotonic() < deadline:
                try:
                    self._handle(self.events.get(timeout=POLL_S))
                except queue.Empty:
                    continue
        except KeyboardInterrupt:
            pass
        self.running.clear()
        for name, status in list(self.state.items()):
            if status == "Executing":
                self._record_end(self.nodes[name], "Stopped", "stopped before it finished")

    def _finish(self) -> str:
        waiting = [n for n in self.nodes if n not in self.state]
        if self.stopping:
            status, reason = "Stopped", None
        elif self.failure is not None:
            status, reason = "Failed", self.failure
        elif waiting:  # cannot happen with a checked graph; never report such an execution as Succeeded
            status, reason = "Failed", f"steps never became ready: {', '.join(waiting)}"
        else:
            status, reason = "Succeeded", None
        self.store.finish_execution(self.record.id, status, reason)
        self._changed()
        return status

    # ------------------------------------------------------------------------------------------ helpers
    def _changed(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change()
        except Exception:  # a broken progress view must not stop the pipeline
            logger.exception("progress callback failed")

    def _logger(self, step_name: str) -> Callable[[str], None]:
        on_log = self.executor.on_log
        return (lambda line: on_log(step_name, line)) if on_log else (lambda line: None)

    def _read_json_uri(self, uri: str) -> Any:
        path = self.executor.workspace.path_for(uri)
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ExpressionError(f"cannot read JSON from {uri} ({path}): {err}") from None


def read_property_files(node: StepNode, properties: Mapping[str, Any], arguments: Mapping[str, Any],
                        workspace: Workspace) -> dict[str, Any]:
    """{PropertyFileName: parsed JSON} of a Processing step: `<output S3Uri>/<FilePath>` in the workspace."""
    declared = node.step.get("PropertyFiles", [])
    if not declared:
        return {}
    config = properties.get("ProcessingOutputConfig") or arguments.get("ProcessingOutputConfig") or {}
    outputs = {o.get("OutputName"): o for o in config.get("Outputs", [])}
    files = {}
    for spec in declared:
        name, output, file_path = spec.get("PropertyFileName"), spec.get("OutputName"), spec.get("FilePath", "")
        if output not in outputs:
            raise StepFailed(f"PropertyFile {name}: the step has no output named {output!r}")
        uri = f"{outputs[output]['S3Output']['S3Uri'].rstrip('/')}/{file_path.lstrip('/')}"
        path = workspace.path_for(uri)
        try:
            files[name] = json.loads(path.read_text())
        except FileNotFoundError:
            raise StepFailed(f"PropertyFile {name}: the job wrote no {file_path} to output {output} ({uri})") from None
        except (OSError, ValueError) as err:
            raise StepFailed(f"PropertyFile {name}: {uri} is not readable JSON: {err}") from None
    return files
