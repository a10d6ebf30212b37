"""Engine overhead: a full default local run (`pipeline.py upsert` + `pipeline.py start`, the sample data, a fresh
workspace) against the jobs' own wall times.

A job's wall time is what SageMaker would report for it: ProcessingStartTime..ProcessingEndTime,
TrainingStartTime..TrainingEndTime (each tuning trial's own), and the endpoint's creation until InService. Tuning
trials run side by side, so the jobs' time is the union of their intervals, not the sum (the sum is shown too).
Overhead is everything else the `start` command spends: its own start-up, resolving steps, the time between jobs.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, Result, Table, clean_env, python, ratio, run_timed

TARGET_OVERHEAD = 0.05
TARGET_TOTAL_S = 300.0
Interval = tuple[float, float]


def ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def job_intervals(step_type: str, props: dict[str, Any]) -> list[Interval]:
    """The jobs one step ran, as (start, end) epoch seconds, from its Describe*-shaped properties."""
    pairs: list[tuple[Any, Any]] = []
    if step_type == "Processing":
        pairs = [(props.get("ProcessingStartTime"), props.get("ProcessingEndTime"))]
    elif step_type == "Training":
        pairs = [(props.get("TrainingStartTime"), props.get("TrainingEndTime"))]
    elif step_type == "Tuning":
        pairs = [(s.get("TrainingStartTime"), s.get("TrainingEndTime")) for s in props.get("TrainingJobSummaries", [])]
    elif step_type == "Endpoint":
        pairs = [(props.get("CreationTime"), props.get("LastModifiedTime"))]
    return [(ts(a), ts(b)) for a, b in pairs if a and b]  # type: ignore[misc]


def script_seconds(step_type: str, props: dict[str, Any]) -> float | None:
    """The training script's own run (the `Training` secondary status), where the job reports it."""
    if step_type != "Training":
        return None
    for phase in props.get("SecondaryStatusTransitions", []):
        if phase.get("Status") == "Training" and phase.get("EndTime"):
            return ts(phase["EndTime"]) - ts(phase["StartTime"])  # type: ignore[operator]
    return None


def mean_job_seconds(steps: list[dict[str, Any]]) -> dict[str, float]:
    """Each step's average job wall time (a tuning trial's, for the tuning step): the cloud estimate's input."""
    means = {}
    for step in steps:
        jobs = job_intervals(step["type"], step["properties"])
        if jobs:
            means[step["name"]] = sum(b - a for a, b in jobs) / len(jobs)
    return means


def union_seconds(intervals: list[Interval]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def read_steps(workspace: Path, execution_arn: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The execution's row and its steps (with parsed properties) from the local state database, read-only."""
    db = sqlite3.connect(f"file:{workspace / 'state.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        execution = dict(db.execute("SELECT * FROM executions WHERE arn = ?", (execution_arn,)).fetchone())
        steps = [dict(row) for row in db.execute(
            "SELECT name, type, status, started, ended, properties FROM steps WHERE execution_id = ? "
            "ORDER BY started", (execution["id"],))]
    finally:
        db.close()
    for step in steps:
        step["properties"] = json.loads(step["properties"] or "{}")
    return execution, steps


def parse_start_output(output: str) -> dict[str, Any]:
    """`start --json` prints one object; anything a library logs around it is skipped."""
    for index in [i for i, ch in enumerate(output) if ch == "{" and (i == 0 or output[i - 1] == "\n")]:
        try:
            return json.JSONDecoder().raw_decode(output[index:])[0]
        except ValueError:
            continue
    raise RuntimeError(f"no JSON object in the output of `start --json`:\n{output[-3000:]}")


def cli(args: list[str], workspace: Path, log: Path, timeout_s: float) -> Any:
    env = clean_env({"PIPELINE_LOCAL_WORKSPACE": str(workspace)})
    return run_timed([python(), "pipeline.py", *args], env=env, cwd=REPO_ROOT, log=log, timeout_s=timeout_s)


def run(workdir: Path, quick: bool) -> Result:
    workspace = workdir / "engine-workspace"
    shutil.rmtree(workspace, ignore_errors=True)
    upsert = cli(["upsert"], workspace, workdir / "engine-upsert.log", 300)
    if upsert.returncode != 0:
        raise RuntimeError(f"upsert failed:\n{upsert.output[-3000:]}")
    start = cli(["start", "--json"], workspace, workdir / "engine-start.log", 900)
    try:
        outcome = parse_start_output(start.output)
        execution, steps = read_steps(workspace, outcome["arn"])
    finally:  # the run leaves a live endpoint: stop its server
        cli(["delete-endpoint", "image-classifier"], workspace, workdir / "engine-delete.log", 120)
    return analyse(upsert.wall_s, start.wall_s, start.cpu_s, outcome["status"], execution, steps)


def analyse(upsert_s: float, start_s: float, start_cpu_s: float, status: str, execution: dict[str, Any],
            steps: list[dict[str, Any]]) -> Result:
    execution_s = ts(execution["ended"]) - ts(execution["started"])  # type: ignore[operator]
    per_step, all_jobs = Table(["step", "type", "step s", "jobs", "job wall s", "script's own s", "engine s"]), []
    for step in steps:
        jobs = job_intervals(step["type"], step["properties"])
        all_jobs += jobs
        step_s = (ts(step["ended"]) or 0) - (ts(step["started"]) or 0)
        job_s, script = union_seconds(jobs), script_seconds(step["type"], step["properties"])
        per_step.add(step["name"], step["type"], step_s, len(jobs), job_s if jobs else "",
                     script if script is not None else "", step_s - job_s)
    jobs_s, jobs_sum = union_seconds(all_jobs), sum(b - a for a, b in all_jobs)
    overhead = start_s - jobs_s
    totals = Table(["measure", "seconds", "share of `start`"])
    for label, seconds in (("`pipeline.py upsert` (build, validate, upload the code)", upsert_s),
                           ("`pipeline.py start` (wall)", start_s),
                           ("  the execution (started..ended)", execution_s),
                           ("  the jobs (union of their intervals)", jobs_s),
                           ("  the jobs (sum: tuning trials run 2 at a time)", jobs_sum),
                           ("  engine overhead inside the execution", execution_s - jobs_s),
                           ("  CLI start-up and wrap-up around it", start_s - execution_s),
                           ("  overhead: `start` minus the jobs", overhead),
                           ("full default run (upsert + start)", upsert_s + start_s),
                           ("CPU seconds of `start`, its jobs included (2 cores)", start_cpu_s)):
        totals.add(label, seconds, ratio(seconds, start_s) if label.startswith("  ") else "")
    result = Result("engine", f"Engine overhead (full default local run, status {status})")
    result.tables += [("", totals), ("Per step (job wall: what SageMaker would report for the step's jobs):",
                                     per_step)]
    share = ratio(overhead, start_s)
    result.figures = {"upsert_s": upsert_s, "start_s": start_s, "start_cpu_s": start_cpu_s,
                      "execution_s": execution_s, "jobs_union_s": jobs_s, "jobs_sum_s": jobs_sum,
                      "overhead_s": overhead, "overhead_share": share, "status": status,
                      "steps": {row[0]: {"type": row[1], "step_s": row[2], "jobs": row[3], "job_s": row[4]}
                                for row in per_step.rows},
                      "mean_job_s": mean_job_seconds(steps)}
    result.targets[f"overhead <= {TARGET_OVERHEAD:.0%} ({share:.1%})"] = share <= TARGET_OVERHEAD
    total = upsert_s + start_s
    result.targets[f"full default run <= {TARGET_TOTAL_S / 60:.0f} min ({total:.0f} s)"] = (
        total <= TARGET_TOTAL_S and status == "Succeeded")
    return result
