"""The detached engine: `python -m pipelines.local.worker <workspace> <execution_id> [--handlers mod:fn]`.

`LocalTarget.start(wait=False)` (and `retry`) records the execution and starts this in a new session so it outlives
the CLI; its output goes to `jobs/<id>/engine.log`. It runs the execution's current attempt and exits: 0 when it
succeeded. SIGTERM stops it like Ctrl-C (running steps are cancelled, the execution is marked Stopped).
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from typing import Any

from pipelines.local.container import DEFAULT_REGION
from pipelines.local.executor import Executor
from pipelines.local.handlers import default_handlers, load_factory, make_handlers
from pipelines.local.state import StateStore
from pipelines.local.workspace import Workspace


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _print_line(step: str, line: str) -> None:
    print(f"[{step}] {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.local.worker", description=__doc__.splitlines()[0])
    parser.add_argument("workspace")
    parser.add_argument("execution_id")
    parser.add_argument("--handlers", help="module:function making the step handlers (default: the real ones)")
    parser.add_argument("--cpu-budget", type=int, default=None)
    parser.add_argument("--region", default=DEFAULT_REGION, help="the region the jobs' ARNs name")
    parser.add_argument("--endpoint-memory-mb", type=int, required=True,
                        help="what a multi-model endpoint may fill with loaded models ([local] endpoint_memory_mb)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    workspace = Workspace.open(args.workspace)
    store = StateStore(workspace.state_db)
    try:
        factory = load_factory(args.handlers) if args.handlers else default_handlers
        handlers = make_handlers(factory, workspace, store, args.region, args.endpoint_memory_mb)
        executor = Executor(workspace, store, handlers, args.cpu_budget, _print_line)
        status = executor.run(args.execution_id)
    except Exception as err:  # the execution must not stay Executing behind a dead worker
        traceback.print_exc()
        store.fail_execution(args.execution_id, f"the local engine failed: {type(err).__name__}: {err}")
        return 1
    print(f"execution {args.execution_id}: {status}", flush=True)
    return 0 if status == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
