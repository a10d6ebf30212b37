"""Cloud cost shape, from the definition alone: the jobs a SageMaker execution launches, instance-hours per step for
the default instance types, no hidden RepackModel job, and which steps an unchanged re-run takes from the cache.

The definition is built offline (`pipeline.py --target sagemaker definition`, dummy role and bucket, nothing sent)
twice, in two processes with different hash seeds a moment apart: a re-upsert of an unchanged project. A step whose
cache key attributes (AWS's "Default cache key attributes by pipeline step type") differ between the two builds
reruns after a re-upsert; a re-start of the same upserted definition sees identical keys.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, Result, Table, clean_env, python
from pipelines.step_cache import CACHE_KEY_ATTRIBUTES, pick

ROLE = "arn:aws:iam::123456789012:role/BenchmarkOnly"
BUCKET = "benchmark-bucket-nothing-is-sent"
SERVICE_MAX_RUNTIME_S = 86400  # a processing job without StoppingCondition: the service's default bound
# The step types the pipeline gives a CacheConfig (a Transform would never hit: its model is new every run).
CACHE_KEYS = {kind: keys for kind, keys in CACHE_KEY_ATTRIBUTES.items() if kind != "Transform"}

# ---------------------------------------------------------------------------------------------- the definition
def build_definitions(workdir: Path, seeds: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    """One offline build per hash seed, run side by side."""
    processes, outputs = [], []
    for seed in seeds:
        out = workdir / f"definition-seed{seed}.json"
        argv = [python(), "pipeline.py", "--target", "sagemaker", "--role-arn", ROLE, "--bucket", BUCKET,
                "definition", "-o", str(out)]
        env = clean_env({"PYTHONHASHSEED": str(seed)})
        processes.append(subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
        outputs.append(out)
    for process in processes:
        log, _ = process.communicate(timeout=300)
        if process.returncode != 0:
            raise RuntimeError(f"`pipeline.py definition` failed:\n{log[-2000:]}")
    return [json.loads(out.read_text()) for out in outputs]


def all_steps(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for step in steps:
        yield step
        if step["Type"] == "Condition":
            yield from all_steps(step["Arguments"].get("IfSteps", []))
            yield from all_steps(step["Arguments"].get("ElseSteps", []))


def resolve(value: Any, defaults: dict[str, Any]) -> Any:
    """A parameter reference as its default value; anything else as it is."""
    if isinstance(value, dict) and str(value.get("Get", "")).startswith("Parameters."):
        return defaults.get(value["Get"].split(".", 1)[1])
    return value


# ---------------------------------------------------------------------------------------------- jobs and hours
def step_jobs(step: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """What one step launches: job count, instance type and count, the runtime bound per job, unbilled jobs."""
    kind, args = step["Type"], step.get("Arguments", {})
    if kind == "Processing":
        cluster = args["ProcessingResources"]["ClusterConfig"]
        bound = (args.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", SERVICE_MAX_RUNTIME_S)
        return {"jobs": 1, "type": resolve(cluster["InstanceType"], defaults),
                "count": resolve(cluster["InstanceCount"], defaults), "max_s": bound, "free_jobs": 0}
    if kind == "Training":
        rules = len(args.get("DebugRuleConfigurations", [])) + len(args.get("ProfilerRuleConfigurations", []))
        resources = args["ResourceConfig"]
        return {"jobs": 1, "type": resolve(resources["InstanceType"], defaults),
                "count": resolve(resources["InstanceCount"], defaults),
                "max_s": args["StoppingCondition"]["MaxRuntimeInSeconds"], "free_jobs": rules}
    if kind == "Tuning":
        definition = args["TrainingJobDefinition"]
        resources = definition.get("HyperParameterTuningResourceConfig") or definition.get("ResourceConfig") or {}
        limits = args["HyperParameterTuningJobConfig"]["ResourceLimits"]
        return {"jobs": resolve(limits["MaxNumberOfTrainingJobs"], defaults), "type": resolve(
            resources.get("InstanceType"), defaults), "count": resolve(resources.get("InstanceCount", 1), defaults),
            "max_s": definition["StoppingCondition"]["MaxRuntimeInSeconds"], "free_jobs": 0,
            "parallel": resolve(limits["MaxParallelTrainingJobs"], defaults)}
    if kind == "Transform":  # CreateTransformJob has no runtime limit: billed for as long as it runs
        resources = args["TransformResources"]
        return {"jobs": 1, "type": resolve(resources["InstanceType"], defaults),
                "count": resolve(resources["InstanceCount"], defaults), "max_s": None, "free_jobs": 0}
    return {"jobs": 0, "type": "", "count": 0, "max_s": 0, "free_jobs": 0}


def jobs_table(definition: dict[str, Any], measured: dict[str, float]) -> tuple[Table, dict[str, Any]]:
    """Per step: jobs, instances, the max-runtime bound and the local-run estimate of instance-hours."""
    defaults = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    table = Table(["step", "type", "jobs", "instance type", "instances/job", "bound: max runtime, instance-h",
                   "local run, instance-h", "not billed"])
    totals = {"jobs": 0, "rule_jobs": 0, "max_instance_hours": 0.0, "local_instance_hours": 0.0}
    for step in all_steps(definition["Steps"]):
        jobs = step_jobs(step, defaults)
        hours_bound = jobs["jobs"] * jobs["count"] * jobs["max_s"] / 3600 if jobs["max_s"] is not None else None
        local = measured.get(step["Name"])  # one job's wall time, measured locally
        local_h = local * jobs["jobs"] * jobs["count"] / 3600 if local is not None and jobs["jobs"] else None
        free = f"{jobs['free_jobs']} Debugger/Profiler rule jobs (built-in rules cost nothing)" if jobs[
            "free_jobs"] else ""
        if step["Type"] == "Endpoint":
            free = "endpoint instances bill per hour while live (below)"
        bound_cell = "-" if not jobs["jobs"] else "none (no runtime limit)" if hours_bound is None else hours_bound
        table.add(step["Name"], step["Type"], jobs["jobs"], jobs["type"] or "-", jobs["count"] or "-", bound_cell,
                  local_h if local_h is not None else "-", free)
        totals["jobs"] += jobs["jobs"]
        totals["rule_jobs"] += jobs["free_jobs"]
        totals["max_instance_hours"] += hours_bound or 0.0
        totals["local_instance_hours"] += local_h or 0.0
    table.add("total", "", totals["jobs"], "", "", totals["max_instance_hours"],
              totals["local_instance_hours"] if measured else "-", f"{totals['rule_jobs']} rule jobs")
    endpoint = {"type": defaults.get("InferenceInstanceType"), "count": defaults.get("InferenceInstanceCount")}
    return table, {**totals, "endpoint": endpoint}


# ---------------------------------------------------------------------------------------------- repack and caching
def repack_check(definition: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(definition)
    steps = {s["Name"]: s for s in all_steps(definition["Steps"])}
    register = next((s for s in steps.values() if s["Type"] == "RegisterModel"), None)
    containers = (register or {}).get("Arguments", {}).get("InferenceSpecification", {}).get("Containers", [])
    sources = [c.get("ModelDataUrl") for c in containers]
    return {"repack_steps": [n for n in steps if "repack" in n.lower()],
            "repack_script_referenced": "_repack_model" in text,
            "model_data_from": sources,
            "code_inside_artifact": all(c.get("Environment", {}).get("SAGEMAKER_SUBMIT_DIRECTORY") ==
                                        "/opt/ml/model/code" for c in containers)}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flatten(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def cache_keys(step: dict[str, Any]) -> dict[str, Any]:
    return {path: pick(step.get("Arguments", {}), path) for path in CACHE_KEYS.get(step["Type"], ())}


def upstream(keys: dict[str, Any]) -> set[str]:
    """Steps whose outputs the key attributes read (a rerun there changes the resolved values here)."""
    return {v.split(".")[1] for k, v in flatten(keys).items() if k.endswith(".Get") and str(v).startswith("Steps.")}


def caching_table(first: dict[str, Any], second: dict[str, Any]) -> tuple[Table, dict[str, Any]]:
    table = Table(["step", "cache", "re-start, same definition", "re-upsert of the unchanged project"])
    again = {s["Name"]: s for s in all_steps(second["Steps"])}
    outcome: dict[str, str] = {}
    for step in all_steps(first["Steps"]):
        if step["Type"] not in CACHE_KEYS:
            continue
        enabled = bool((step.get("CacheConfig") or {}).get("Enabled"))
        keys, other = cache_keys(step), cache_keys(again[step["Name"]])
        execution_vars = [k for k, v in flatten(keys).items() if str(v).startswith("Execution.")]
        a, b = flatten(keys), flatten(other)
        changed = sorted(k.lstrip(".") for k in set(a) | set(b) if a.get(k) != b.get(k))
        rerun_upstream = sorted(s for s in upstream(keys) if outcome.get(s, "hit") != "hit")
        restart = "hit" if enabled and not execution_vars else "runs again"
        if not enabled:
            upsert = "runs (caching off)"
        elif changed:
            upsert = "MISS: " + ", ".join(summarize_paths(changed))
        elif rerun_upstream:
            upsert = f"runs: its input comes from {', '.join(rerun_upstream)}"
        else:
            upsert = "hit"
        outcome[step["Name"]] = "hit" if upsert == "hit" else "miss"
        table.add(step["Name"], (step.get("CacheConfig") or {}).get("ExpireAfter", "off"), restart, upsert)
    return table, outcome


def summarize_paths(paths: list[str], limit: int = 3) -> list[str]:
    """`DebugHookConfig.CollectionConfigurations[0].CollectionName`, ... -> the distinct stems, a few."""
    stems = []
    for path in paths:
        stem = path.split("[")[0]
        if stem not in stems:
            stems.append(stem)
    return stems[:limit] + ([f"{len(stems) - limit} more"] if len(stems) > limit else [])


# ---------------------------------------------------------------------------------------------- the benchmark
def run(workdir: Path, quick: bool, measured_job_seconds: dict[str, float] | None = None) -> Result:
    """`measured_job_seconds`: one job's wall time per step from a local run (benchmarks/engine.py), if any."""
    first, second = build_definitions(workdir)
    return analyse(first, second, measured_job_seconds or {})


def analyse(first: dict[str, Any], second: dict[str, Any], measured: dict[str, float]) -> Result:
    jobs, totals = jobs_table(first, measured)
    caching, outcome = caching_table(first, second)
    repack = repack_check(first)
    result = Result("cloud", "Cloud cost shape (from the definition alone; default instance types)")
    result.tables.append(("Jobs a SageMaker execution launches. Bound: every job runs to its max runtime. Local run: "
                          "each job as long as its local counterpart took here (digits, the local-size model), "
                          "times the cloud's job count:", jobs))
    endpoint = totals["endpoint"]
    result.notes.append(f"endpoint: {endpoint['count']} x {endpoint['type']}, billed per hour while InService "
                        f"(24 instance-h a day), separate from the jobs")
    repack_table = Table(["check", "found"])
    repack_table.add("steps named *Repack*", ", ".join(repack["repack_steps"]) or "none")
    repack_table.add("the SDK's _repack_model.py referenced", "yes" if repack["repack_script_referenced"] else "no")
    repack_table.add("registered model data comes from", "; ".join(json.dumps(s) for s in repack["model_data_from"]))
    repack_table.add("serving code inside model.tar.gz (SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code)",
                     "yes" if repack["code_inside_artifact"] else "no")
    result.tables += [("No hidden repack job:", repack_table), ("Step caching:", caching)]
    no_repack = not repack["repack_steps"] and not repack["repack_script_referenced"]
    result.figures = {"jobs": totals["jobs"], "rule_jobs": totals["rule_jobs"],
                      "max_instance_hours": totals["max_instance_hours"],
                      "local_instance_hours": totals["local_instance_hours"], "endpoint": endpoint,
                      "repack": repack, "reupsert_cache": outcome}
    result.targets["no RepackModel job"] = no_repack
    result.targets["an unchanged re-start hits the cache for every cacheable step"] = all(
        row[2] == "hit" for row in caching.rows)
    misses = [name for name, o in outcome.items() if o != "hit"]
    if misses:
        result.notes.append(f"a re-upsert of the unchanged project reruns {', '.join(misses)} (see the table)")
    return result
