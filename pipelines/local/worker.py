"""The detached engine: `python -m pipelines.local.worker <workspace> <execution_id> [--handlers mod:fn]`.

`LocalTarget.start(wait=False)` (and `retry`) records the execution, writes the configuration it was started with
next to the execution's jobs (`jobs/<id>/engine-config.json`), and starts this in a new session so it outlives the
CLI; its output goes to `jobs/<id>/engine.log`. It runs the execution's current attempt and exits: 0 when it
succeeded. SIGTERM stops it like Ctrl-C (running steps are cancelled, the execution is marked Stopped).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from pipelines.config import PipelineConfig, load_config
from pipelines.local.executor import Executor
from pipelines.local.handlers import default_handlers, load_factory
from pipelines.local.state import StateStore
from pipelines.local.workspace import Workspace


def config_path(workspace: Workspace, execution_id: str) -> Path:
    return workspace.jobs_root / execution_id / "engine-config.json"


def config_to_json(config: PipelineConfig) -> str:
    return json.dumps(dataclasses.asdict(config), indent=1)


def config_from_json(text: str) -> PipelineConfig:
    return _from_plain(PipelineConfig, json.loads(text))


def _from_plain(hint: Any, value: Any) -> Any:
    """The inverse of `dataclasses.asdict` for the config's frozen dataclasses and tuples."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = get_type_hints(hint)
        return hint(**{f.name: _from_plain(hints[f.name], value[f.name]) for f in dataclasses.fields(hint)
                       if f.name in value})
    if get_origin(hint) is tuple and isinstance(value, list):
        return tuple(_from_plain(get_args(hint)[0], item) for item in value)
    return value


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
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    workspace = Workspace.open(args.workspace)
    store = StateStore(workspace.state_db)
    snapshot = config_path(workspace, args.execution_id)
    try:
        config = config_from_json(snapshot.read_text()) if snapshot.is_file() else load_config()
        factory = load_factory(args.handlers) if args.handlers else default_handlers
        executor = Executor(workspace, store, factory(workspace, store, config), args.cpu_budget, _print_line)
        status = executor.run(args.execution_id)
    except Exception as err:  # the execution must not stay Executing behind a dead worker
        traceback.print_exc()
        store.fail_execution(args.execution_id, f"the local engine failed: {type(err).__name__}: {err}")
        return 1
    print(f"execution {args.execution_id}: {status}", flush=True)
    return 0 if status == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
