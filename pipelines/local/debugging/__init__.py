"""SageMaker Debugger built-in rules, evaluated locally over the smdebug trial a training job writes.

`job.JobRules` is what the training handler uses; `runner` evaluates DebugRuleConfigurations; one small class per
rule in `loss_rules`, `tensor_rules` and `class_rules` (smdebug's `Rule`, AWS's documented parameters and defaults).
Importing this package does not import smdebug: a job without rules never pays for it.
"""

from pipelines.local.debugging.job import JobRules, StopSignal

__all__ = ["JobRules", "StopSignal"]
