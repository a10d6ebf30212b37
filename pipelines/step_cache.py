"""Step caching as SageMaker Pipelines documents it: which of a step's arguments make its cache key, and how long a
result stays reusable.

A step with `CacheConfig.Enabled` is not run again when an earlier successful run of the same step of the same
pipeline had the same values for its type's key attributes (AWS's "Default cache key attributes by pipeline step
type") and ended within `ExpireAfter`. The values are the request's, pipeline expressions resolved: a changed
parameter or an upstream step that ran again (and wrote elsewhere) changes them, an upstream cache hit does not.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

# https://docs.aws.amazon.com/sagemaker/latest/dg/pipelines-default-keys.html
CACHE_KEY_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "Training": ("AlgorithmSpecification", "CheckpointConfig", "DebugHookConfig", "DebugRuleConfigurations",
                 "Environment", "HyperParameters", "InputDataConfig"),
    "Tuning": ("HyperParameterTuningJobConfig", "TrainingJobDefinition.AlgorithmSpecification",
               "TrainingJobDefinition.HyperParameterRanges", "TrainingJobDefinition.InputDataConfig",
               "TrainingJobDefinition.StaticHyperParameters", "TrainingJobDefinition.TuningObjective",
               "TrainingJobDefinitions"),
    "Transform": ("DataProcessing", "Environment", "ModelName", "TransformInput"),
}
# ISO 8601 durations as SageMaker takes them: "P30D", "PT1H", "P1Y2M3DT4H5M", "P2W" (the letters in either case).
_DURATION = re.compile(r"^P?(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$",
                       re.IGNORECASE)


def pick(arguments: Mapping[str, Any], path: str) -> Any:
    """`arguments["A"]["B"]` for "A.B"; None where a part is missing."""
    value: Any = arguments
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def key_attributes(step_type: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the step type's cache key attributes in a request."""
    return {path: pick(arguments, path) for path in CACHE_KEY_ATTRIBUTES.get(step_type, ())}


def cache_key(step_type: str, arguments: Mapping[str, Any]) -> str:
    """A digest of the key attributes (JSON with sorted keys: the same values give the same key)."""
    canonical = json.dumps({"Type": step_type, **key_attributes(step_type, arguments)}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def cacheable(step: Mapping[str, Any]) -> bool:
    return step.get("Type") in CACHE_KEY_ATTRIBUTES and bool((step.get("CacheConfig") or {}).get("Enabled"))


def expire_after(step: Mapping[str, Any]) -> timedelta | None:
    """The step's `CacheConfig.ExpireAfter` (months as 30 days, years as 365); None: no limit."""
    text = (step.get("CacheConfig") or {}).get("ExpireAfter")
    if not text:
        return None
    match = _DURATION.match(str(text).strip())
    if match is None or not any(match.groups()):
        raise ValueError(f"CacheConfig ExpireAfter {text!r} is not an ISO 8601 duration such as P30D or PT1H")
    years, months, weeks, days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return timedelta(days=365 * years + 30 * months + 7 * weeks + days, hours=hours, minutes=minutes,
                     seconds=seconds)
