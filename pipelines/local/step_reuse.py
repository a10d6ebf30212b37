"""Step caching in the local engine: an earlier successful run of a step, found by its cache key, reused instead of
running the job again (pipelines.step_cache says which arguments make the key, as SageMaker documents it).

A hit is recorded as the step's own run in this execution: Succeeded, the source run's properties and property files
(so later steps read the job and the outputs the source made), and `CacheHitResult.SourcePipelineExecutionArn`,
as ListPipelineExecutionSteps reports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipelines.local.state import StateStore
from pipelines.step_cache import cache_key, cacheable, expire_after

EPOCH = "0000"  # sorts before every ISO 8601 time: no ExpireAfter, no limit


@dataclass(frozen=True)
class CachedRun:
    properties: dict[str, Any]
    property_files: dict[str, Any]
    source_execution_arn: str
    cache: dict[str, Any]  # what this run's record carries: its key and the hit


class StepReuse:
    """The cache lookups of one execution of `pipeline` (all of them off with `enabled=False`: start --no-cache)."""

    def __init__(self, store: StateStore, pipeline: str, enabled: bool) -> None:
        self.store, self.pipeline, self.enabled = store, pipeline, enabled
        self.keys: dict[str, str] = {}  # step -> the key its run is recorded with, so later executions find it

    def lookup(self, step: Mapping[str, Any], arguments: Mapping[str, Any]) -> CachedRun | None:
        """The earlier run this step may reuse, if any; remembers the step's key either way."""
        if not cacheable(step):
            return None
        key = cache_key(step["Type"], arguments)
        self.keys[step["Name"]] = key
        if not self.enabled:
            return None
        expiry = expire_after(step)
        cutoff = (datetime.now(UTC) - expiry).isoformat(timespec="milliseconds") if expiry is not None else EPOCH
        found = self.store.find_cached_step(self.pipeline, step["Name"], key, cutoff)
        if found is None:
            return None
        source, arn = found
        return CachedRun(source.properties or {}, source.property_files or {}, arn,
                         {"Key": key, "CacheHitResult": {"SourcePipelineExecutionArn": arn}})

    def record(self, step_name: str) -> dict[str, Any] | None:
        """The cache column of a step that ran: its key, when it has one."""
        key = self.keys.get(step_name)
        return {"Key": key} if key else None
