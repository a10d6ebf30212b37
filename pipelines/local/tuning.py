"""CreateHyperParameterTuningJob, run locally: one training job per trial, the best one reported like the service.

Each trial is a CreateTrainingJob request built from `TrainingJobDefinition` (the static hyperparameters plus the
trial's values) and run by `training.run_training_job`, at most `min(MaxParallelTrainingJobs, cpu budget)` at once
on threads, `MaxNumberOfTrainingJobs` in all (Grid: every combination, capped by it when given). Search strategies
live in `tuning_strategies` (Random, Grid, Bayesian = optuna TPE as a local stand-in). The trials are seeded from
`RandomSeed` when given, else from the tuning job name, so a retry of the execution proposes the same values (for
Bayesian with parallel trials, only as far as trials finish in the same order).

As on SageMaker, a failed training job is recorded and tuning goes on; the objective is the final value of the
objective metric in each job's FinalMetricDataList. `TrainingJobEarlyStoppingType: Auto` stops a trial whose
objective falls behind the finished trials' (`early_stopping`, SageMaker's median rule). What the local engine
accepts but does not act on: `WarmStartConfig`, `Autotune`, and the `BestObjectiveNotImproving`/
`ConvergenceDetected` completion criteria. `TargetObjectiveMetricValue` and
`ResourceLimits.MaxRuntimeInSeconds` stop launching new trials; trials already running finish.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from pipelines.local.container import DEFAULT_REGION, job_arn, matched_value, utc_now
from pipelines.local.early_stopping import MedianStoppingRule
from pipelines.local.step_api import StepFailed, StepRun
from pipelines.local.tuning_strategies import SearchStrategy, grid_size, make_strategy, parse_ranges
from pipelines.local.tuning_trials import Trial, best_trial, final_metric, status_counters
from pipelines.local.workspace import Workspace

CANCEL_POLL_SECONDS = 0.2  # how soon an execution's stop reaches the running trials
TUNING_JOB_NAME_MAX = 32  # the service's limit for HyperParameterTuningJobName
TRAINING_JOB_NAME_MAX = 63
TrainingRunner = Callable[[StepRun, str, dict[str, Any]], dict[str, Any]]
# TrainingJobDefinition fields that describe the tuning, not the training job.
TUNING_ONLY_FIELDS = ("DefinitionName", "TuningObjective", "HyperParameterRanges", "StaticHyperParameters",
                      "HyperParameterTuningResourceConfig")


def _run_training_job(run: StepRun, job_name: str, request: dict[str, Any], region: str) -> dict[str, Any]:
    from pipelines.local.training import run_training_job  # lazy: only a tuning step that runs pays for it

    return run_training_job(run, job_name, request, region)


# ---------------------------------------------------------------------------------------------- names and requests
def tuning_job_name(step_name: str, execution_id: str) -> str:
    """`<step-name-lowercase>-<execution-id>`, within the service's 32 characters; over that, cut and made unique
    with a hash. Deterministic, so a retry of the execution seeds its trials the same way."""
    name = f"{_slug(step_name)}-{_slug(execution_id)}"
    if len(name) <= TUNING_JOB_NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: TUNING_JOB_NAME_MAX - 9].rstrip('-')}-{digest}"


def _slug(text: str) -> str:
    """Lowercase letters, digits and single hyphens: what the service's name pattern allows."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", text.lower())).strip("-")


def training_job_name(tuning_name: str, number: int) -> str:
    """The service's `<tuning-job-name>-<3-digit index>-<8 hex>`; the hex is fresh, so a retry's job dirs are new."""
    suffix = f"-{number:03d}-{uuid.uuid4().hex[:8]}"
    return f"{tuning_name[: TRAINING_JOB_NAME_MAX - len(suffix)].rstrip('-')}{suffix}"


def tuning_seed(tuning_name: str, config: Mapping[str, Any]) -> int:
    if "RandomSeed" in config:
        return int(config["RandomSeed"])
    return int.from_bytes(hashlib.sha256(tuning_name.encode()).digest()[:4], "big")


def trial_request(definition: Mapping[str, Any], job_name: str, tuned: Mapping[str, str],
                  objective_metric: str) -> dict[str, Any]:
    """The CreateTrainingJob request of one trial."""
    request = {key: value for key, value in definition.items() if key not in TUNING_ONLY_FIELDS}
    static = definition.get("StaticHyperParameters", {})
    # The service adds the objective metric's name to every trial's hyperparameters; trials of script-mode
    # (framework) jobs show it JSON-quoted like the SDK's own values, built-in algorithms' trials plain.
    metric = json.dumps(objective_metric) if "sagemaker_program" in static else objective_metric
    hyperparameters = {**static, **tuned, "_tuning_objective_metric": metric}
    request.update(TrainingJobName=job_name, HyperParameters=hyperparameters)
    if "ResourceConfig" not in request:
        request["ResourceConfig"] = _resource_config(definition.get("HyperParameterTuningResourceConfig", {}))
    if "CheckpointConfig" in request:
        # Each trial gets its own prefix: a trial must never resume from another trial's checkpoint.
        checkpoint = dict(request["CheckpointConfig"])
        checkpoint["S3Uri"] = f"{checkpoint['S3Uri'].rstrip('/')}/{job_name}"
        request["CheckpointConfig"] = checkpoint
    return request


def _resource_config(tuning_resources: Mapping[str, Any]) -> dict[str, Any]:
    source = tuning_resources
    if "InstanceType" not in source and tuning_resources.get("InstanceConfigs"):
        source = tuning_resources["InstanceConfigs"][0]  # the first (highest priority) instance choice
    config = {"InstanceType": source.get("InstanceType", "ml.m5.xlarge"),
              "InstanceCount": source.get("InstanceCount", 1),
              "VolumeSizeInGB": source.get("VolumeSizeInGB") or 30}  # the SDK's default volume size
    if "VolumeKmsKeyId" in tuning_resources:
        config["VolumeKmsKeyId"] = tuning_resources["VolumeKmsKeyId"]
    return config


# ---------------------------------------------------------------------------------------------- the plan
@dataclasses.dataclass(frozen=True)
class TuningPlan:
    """What the request asks for, checked and turned into numbers the trial loop works with."""

    name: str
    arn: str
    region: str
    objective: dict[str, str]  # {"Type", "MetricName"}
    definition: dict[str, Any]
    budget: int  # training jobs in all
    parallel: int  # at once
    cpu_per_trial: int
    deadline: float | None  # time.monotonic() after which no trial starts
    target: float | None  # TargetObjectiveMetricValue: stop launching once reached
    early_stopping: bool  # TrainingJobEarlyStoppingType Auto

    def reached_target(self, best: Trial | None) -> bool:
        if self.target is None or best is None or best.objective is None:
            return False
        return best.objective >= self.target if self.objective["Type"] == "Maximize" else best.objective <= self.target


def make_plan(run: StepRun, name: str, region: str, strategy_name: str, grid: int) -> TuningPlan:
    config = run.arguments["HyperParameterTuningJobConfig"]
    limits = config.get("ResourceLimits", {})
    budget = limits.get("MaxNumberOfTrainingJobs")
    if strategy_name == "Grid":
        budget = grid if budget is None else min(grid, int(budget))
    elif budget is None:
        raise StepFailed(f"ResourceLimits.MaxNumberOfTrainingJobs is required for the {strategy_name} strategy")
    parallel = max(1, min(int(limits.get("MaxParallelTrainingJobs", 1)), run.cpu_budget, int(budget) or 1))
    runtime = limits.get("MaxRuntimeInSeconds")
    criteria = config.get("TuningJobCompletionCriteria", {})
    return TuningPlan(
        name=name, arn=job_arn("hyper-parameter-tuning-job", name, region), region=region,
        objective=dict(config["HyperParameterTuningJobObjective"]), definition=run.arguments["TrainingJobDefinition"],
        budget=int(budget), parallel=parallel, cpu_per_trial=max(1, run.cpu_budget // parallel),
        deadline=None if runtime is None else time.monotonic() + float(runtime),
        target=criteria.get("TargetObjectiveMetricValue"),
        early_stopping=str(config.get("TrainingJobEarlyStoppingType", "Off")).lower() == "auto",
    )


# ---------------------------------------------------------------------------------------------- the trial loop
class TrialLoop:
    """Launches trials as slots free up and hands each result back to the strategy.

    Only this (the step's) thread asks, tells and updates counts; the pool threads just run training jobs, so the
    strategy needs no locking, and Random and Grid propose the same values whatever order trials finish in.
    """

    def __init__(self, plan: TuningPlan, strategy: SearchStrategy, run: StepRun, runner: TrainingRunner) -> None:
        self.plan, self.strategy, self.run, self.runner = plan, strategy, run, runner
        self.trials: list[Trial] = []
        self._exhausted = False
        self.early_stopping = objective_watch(plan) if plan.early_stopping else None

    def execute(self) -> list[Trial]:
        running: dict[Future[None], Trial] = {}
        with ThreadPoolExecutor(max_workers=self.plan.parallel, thread_name_prefix=self.plan.name) as pool:
            while True:
                while len(running) < self.plan.parallel and self._may_launch():
                    trial = self._propose()
                    if trial is not None:
                        running[pool.submit(self._run_trial, trial)] = trial
                if not running:
                    return self.trials
                done, _ = wait(running, timeout=CANCEL_POLL_SECONDS, return_when=FIRST_COMPLETED)
                if self.run.cancelled.is_set():  # each trial's job watches its own stop event
                    for trial in running.values():
                        trial.stop.set()
                for future in sorted(done, key=lambda f: running[f].number):
                    future.result()  # _run_trial records failures on the trial; anything raised here is a bug
                    self._finished(running.pop(future), len(running))

    def _may_launch(self) -> bool:
        plan = self.plan
        return not (self._exhausted or len(self.trials) >= plan.budget or self.run.cancelled.is_set()
                    or (plan.deadline is not None and time.monotonic() >= plan.deadline)
                    or plan.reached_target(best_trial(self.trials, plan.objective["Type"])))

    def _propose(self) -> Trial | None:
        tuned = self.strategy.ask()
        if tuned is None:
            self._exhausted = True
            return None
        number = len(self.trials)
        trial = Trial(number, training_job_name(self.plan.name, number + 1), tuned)
        trial.arn = job_arn("training-job", trial.job_name, self.plan.region)
        self.trials.append(trial)
        return trial

    def _run_trial(self, trial: Trial) -> None:
        """Runs on a pool thread; never raises, so one broken trial cannot take the others down."""
        tag = f"[{trial.number + 1:03d}] "
        # Trials share the step's log (tagged, as parallel jobs interleave); each has its own stop event, set by
        # early stopping or the execution's stop. Their own phase updates stay out of the step's progress, which
        # shows the tuning job.
        def log(line: str) -> None:
            self.run.log(tag + line)
            if self.early_stopping is not None:
                self._check_early_stopping(trial, line, tag)

        trial_run = dataclasses.replace(self.run, cpu_budget=self.plan.cpu_per_trial, log=log,
                                        on_progress=lambda progress: None, cancelled=trial.stop)
        request = trial_request(self.plan.definition, trial.job_name, trial.tuned, self.plan.objective["MetricName"])
        try:
            describe = self.runner(trial_run, trial.job_name, request)
        except StepFailed as failure:
            if trial.early_stop_reason is not None:
                trial.status, trial.failure_reason = "Stopped", trial.early_stop_reason
                trial.metric_value = trial.curve[-1] if trial.curve else None
            else:
                stopped = self.run.cancelled.is_set()  # the job was killed because the execution is being stopped
                trial.status, trial.failure_reason = ("Stopped" if stopped else "Failed"), failure.reason
        except Exception as error:  # a bug in the runner: recorded like the service records an internal error
            trial.status, trial.failure_reason = "Failed", f"{type(error).__name__}: {error}"
        else:
            trial.status = describe.get("TrainingJobStatus", "Completed")
            trial.arn = describe.get("TrainingJobArn", trial.arn)
            trial.start_time = describe.get("TrainingStartTime")
            trial.end_time = describe.get("TrainingEndTime")
            trial.metric_value = final_metric(describe, self.plan.objective["MetricName"])
            trial.failure_reason = describe.get("FailureReason")
            trial.early_stop_reason = None  # it finished before the stop reached it
        trial.end_time = trial.end_time or utc_now()
        trial.start_time = trial.start_time or trial.creation_time

    def _check_early_stopping(self, trial: Trial, line: str, tag: str) -> None:
        """On a trial's log pump: each objective value it reports is judged against the finished trials."""
        assert self.early_stopping is not None
        rule, pattern = self.early_stopping
        match = pattern.search(line)
        value = matched_value(match) if match else None
        if value is None or trial.stop.is_set():
            return
        trial.curve.append(value)
        reason = rule.verdict(trial.curve)
        if reason is not None:
            trial.early_stop_reason = reason
            self.run.log(tag + reason)
            trial.stop.set()

    def _finished(self, trial: Trial, still_running: int) -> None:
        self.strategy.tell(trial.number, trial.objective if trial.status == "Completed" else None)
        if self.early_stopping is not None and (trial.status == "Completed" or trial.early_stop_reason):
            self.early_stopping[0].add_finished(trial.curve)
        best = best_trial(self.trials, self.plan.objective["Type"])
        self.run.log(self._describe(trial, best))
        jobs, objectives = status_counters(self.trials)
        progress: dict[str, Any] = {
            "HyperParameterTuningJobName": self.plan.name, "HyperParameterTuningJobStatus": "InProgress",
            "TrainingJobStatusCounters": jobs, "ObjectiveStatusCounters": objectives,
            "ResourceLimits": {"MaxNumberOfTrainingJobs": self.plan.budget,
                               "MaxParallelTrainingJobs": self.plan.parallel},
        }
        if best is not None:
            progress["BestTrainingJob"] = best.summary(self.plan.name, self.plan.objective)
        self.run.on_progress(progress)

    def _describe(self, trial: Trial, best: Trial | None) -> str:
        head = f"training job {trial.job_name} ({trial.number + 1}/{self.plan.budget}) {trial.status}"
        if trial.status != "Completed":
            return f"{head}: {trial.failure_reason}"
        values = ", ".join(f"{name}={value}" for name, value in trial.tuned.items())
        metric = self.plan.objective["MetricName"]
        result = f"{metric}={trial.metric_value}" if trial.metric_value is not None else f"no {metric} reported"
        best_text = f"; best so far {best.job_name} ({best.objective})" if best is not None else ""
        return f"{head}: {result} with {values}{best_text}"


def objective_watch(plan: TuningPlan) -> tuple[MedianStoppingRule, re.Pattern[str]] | None:
    """The early-stopping rule and the objective metric's regex; None when the definition has no such metric
    (no trial then reports the objective, and tuning fails saying so)."""
    definitions = plan.definition.get("AlgorithmSpecification", {}).get("MetricDefinitions", [])
    regex = next((d.get("Regex") for d in definitions if d.get("Name") == plan.objective["MetricName"]), None)
    if regex is None:
        return None
    try:
        pattern = re.compile(regex)
    except re.error:
        return None  # the training job refuses the definition with the regex's error
    return MedianStoppingRule(plan.objective["Type"], plan.objective["MetricName"]), pattern


# ---------------------------------------------------------------------------------------------- outcome
def check_outcome(trials: list[Trial], plan: TuningPlan, cancelled: bool) -> Trial:
    """The best trial, or StepFailed saying why there is none."""
    if cancelled:
        raise StepFailed(f"Tuning job {plan.name} was stopped after {len(trials)} of {plan.budget} training jobs")
    best = best_trial(trials, plan.objective["Type"])
    if best is not None:
        return best
    completed = [t for t in trials if t.status == "Completed"]
    if not trials:
        raise StepFailed(f"Tuning job {plan.name} ran no training job (its MaxRuntimeInSeconds ran out first)")
    if not completed:
        first = trials[0]
        raise StepFailed(f"All {len(trials)} training jobs of tuning job {plan.name} failed; "
                         f"the first ({first.job_name}): {first.failure_reason}")
    raise StepFailed(_no_metric_message(completed, plan))


def _no_metric_message(completed: list[Trial], plan: TuningPlan) -> str:
    metric = plan.objective["MetricName"]
    if any(t.metric_value is not None for t in completed):
        return f"No training job reported a number for the objective metric {metric}: every value was NaN."
    definitions = plan.definition.get("AlgorithmSpecification", {}).get("MetricDefinitions", [])
    regex = next((d.get("Regex") for d in definitions if d.get("Name") == metric), None)
    if regex is None:
        return (f"No training job reported the objective metric {metric}: MetricDefinitions has no metric of that "
                f"name (it has {', '.join(d.get('Name', '?') for d in definitions) or 'none'}).")
    return (f"No training job reported the objective metric {metric}: the regex {regex!r} matched no log line. "
            "Check MetricDefinitions against what the training script prints.")


def tuning_properties(run: StepRun, plan: TuningPlan, trials: list[Trial], best: Trial,
                      created: str) -> dict[str, Any]:
    """DescribeHyperParameterTuningJobResponse + ListTrainingJobsForHyperParameterTuningJob's TrainingJobSummaries."""
    jobs, objectives = status_counters(trials)
    ended = utc_now()
    return {
        "HyperParameterTuningJobName": plan.name,
        "HyperParameterTuningJobArn": plan.arn,
        "HyperParameterTuningJobConfig": run.arguments["HyperParameterTuningJobConfig"],
        "TrainingJobDefinition": plan.definition,
        "HyperParameterTuningJobStatus": "Completed",
        "CreationTime": created,
        "HyperParameterTuningEndTime": ended,
        "LastModifiedTime": ended,
        "TrainingJobStatusCounters": jobs,
        "ObjectiveStatusCounters": objectives,
        "BestTrainingJob": best.summary(plan.name, plan.objective),
        "TrainingJobSummaries": [t.summary(plan.name, plan.objective) for t in trials],
    }


# ---------------------------------------------------------------------------------------------- the handler
class TuningJobHandler:
    """Runs a Tuning step (CreateHyperParameterTuningJob) on this machine."""

    def __init__(self, workspace: Workspace, store: Any = None, region: str = DEFAULT_REGION,
                 run_training_job: TrainingRunner | None = None) -> None:
        self.workspace, self.store, self.region = workspace, store, region
        self._run_training_job = run_training_job or functools.partial(_run_training_job, region=region)

    def run(self, run: StepRun) -> dict[str, Any]:
        created = utc_now()
        arguments = run.arguments
        if "TrainingJobDefinitions" in arguments:
            raise StepFailed("TrainingJobDefinitions (several training definitions in one tuning job) is not "
                             "supported by the local engine: use one TrainingJobDefinition")
        for ignored in ("WarmStartConfig", "Autotune"):
            if ignored in arguments:
                run.log(f"{ignored} is accepted and ignored by the local engine")
        config = arguments["HyperParameterTuningJobConfig"]
        name = arguments.get("HyperParameterTuningJobName") or tuning_job_name(run.step_name, run.execution_id)
        strategy_name = config.get("Strategy", "Bayesian")
        ranges = parse_ranges(config.get("ParameterRanges", {}))
        plan = make_plan(run, name, self.region, strategy_name, grid_size(ranges))
        strategy = make_strategy(strategy_name, ranges, tuning_seed(name, config), plan.objective["Type"],
                                 plan.budget)
        run.log(f"tuning job {name}: {strategy_name}, {plan.budget} training jobs, {plan.parallel} at a time, "
                f"{plan.objective['Type'].lower()} {plan.objective['MetricName']}")
        trials = TrialLoop(plan, strategy, run, self._run_training_job).execute()
        best = check_outcome(trials, plan, run.cancelled.is_set())
        run.log(f"tuning job {name} Completed: best {best.job_name} with "
                f"{plan.objective['MetricName']}={best.objective}")
        return tuning_properties(run, plan, trials, best, created)
