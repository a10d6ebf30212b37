"""Local profiling: SageMaker's Profiler (system monitoring + the built-in profiler rules) for jobs run here.

- `sampler.SystemSampler`: samples the machine and a job's process tree every ProfilingIntervalInMilliseconds;
- `timeline.Timeline`: what it saw (`system_metrics.json`, and SageMaker's `profiler-output/system` layout);
- `system_rules`, `training_rules`, `report`: one class per built-in rule, AWS's defaults, RuleParameters overrides;
- `evaluation.evaluate_profiler_rules`: the request's ProfilerRuleConfigurations -> ProfilerRuleEvaluationStatuses;
- `job.JobProfiler`: the hook a training job uses (`watch(pid)` as JobProcess's monitor, `properties()` after).
"""

from pipelines.local.profiling.evaluation import RULES, evaluate_profiler_rules, run_rules
from pipelines.local.profiling.job import JobProfiler
from pipelines.local.profiling.sampler import SystemSampler
from pipelines.local.profiling.timeline import Sample, Timeline

__all__ = ["RULES", "JobProfiler", "Sample", "SystemSampler", "Timeline", "evaluate_profiler_rules", "run_rules"]
