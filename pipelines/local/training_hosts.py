"""The processes of a multi-instance training job on this machine: one per host, started together, ended together.

On SageMaker a training job fails when any of its instances fails, and the service stops the others. Here the first
host whose process fails (in the order the failures happened; the hosts stopped because of it do not count) fails
the job with its own reason and log, and every other host's process group is stopped: no orphan survives.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from pipelines.local.container import JobProcess
from pipelines.local.step_api import StepFailed
from pipelines.local.training_contract import Host

POLL_SECONDS = 0.1


@dataclass
class _HostRun:
    host: Host
    process: JobProcess
    stop: threading.Event = field(default_factory=threading.Event)
    failure: StepFailed | None = None
    failed_at: float = 0.0
    error: BaseException | None = None  # not a job failure: the engine's own (a full disk writing the log)


class HostGroup:
    """Runs each host's JobProcess in its own thread; `cancelled` (a rule's StopTraining, the executor's stop)
    stops them all."""

    def __init__(self, processes: list[tuple[Host, JobProcess]], cancelled: threading.Event) -> None:
        self.runs = [_HostRun(host, process) for host, process in processes]
        self.cancelled = cancelled
        for run in self.runs:
            run.process.cancelled = run.stop

    def run(self) -> None:
        """Returns when every host succeeded; raises the first real failure (or the stop) otherwise."""
        threads = [threading.Thread(target=self._run_one, args=(run,), name=f"host-{run.host.name}", daemon=True)
                   for run in self.runs]
        for thread in threads:
            thread.start()
        while alive := [thread for thread in threads if thread.is_alive()]:
            # wait(0), not is_set(): the job's StopSignal is also set by the executor's stop it wraps
            if self.cancelled.wait(0) or any(run.failure or run.error for run in self.runs):
                for run in self.runs:
                    run.stop.set()
            alive[0].join(POLL_SECONDS)
        for run in self.runs:
            if run.error is not None:
                raise run.error
        self._raise_first_failure()

    def _run_one(self, run: _HostRun) -> None:
        try:
            run.process.run()
        except StepFailed as exc:
            run.failure, run.failed_at = exc, time.monotonic()
        except BaseException as exc:  # re-raised in the caller's thread, where the job handles it
            run.error = exc

    def _raise_first_failure(self) -> None:
        failed = sorted((run for run in self.runs if run.failure), key=lambda run: run.failed_at)
        if not failed:
            return
        # A host stopped because another failed says "Stopped"; the cause is the one that did not.
        causes = [run for run in failed if not str(run.failure).startswith("Stopped")] or failed
        first = causes[0]
        if len(self.runs) == 1 or str(first.failure).startswith("Stopped"):
            raise first.failure  # type: ignore[misc]
        assert first.failure is not None
        kind, _, detail = first.failure.reason.partition(": ")
        raise StepFailed(f"{kind}: host {first.host.name} of {len(self.runs)} failed (its log: "
                         f"{first.process.log_path}): {detail}", first.failure.exception_type)
