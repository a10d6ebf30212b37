"""Shared pieces of the end-to-end tests of the local target: tiny settings, the real CLI in subprocesses, and a
teardown that deletes every endpoint a test made and fails loudly if any process of its workspace survives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINE_PY = REPO_ROOT / "pipeline.py"
CLI_TIMEOUT_S = 60  # any command but a whole run

# The smallest pipeline that still does everything: 16 px images, two 1-2 epoch trials, a gate that always passes.
# BatchTransform is off (test_local_pipeline.py, which checks it, switches it on): it adds a serving process to
# every run that gets that far.
TINY_CONFIG = """\
[batch]
enabled = false

[local.training]
image_size = 16

[local.tuning]
max_jobs = 2
max_parallel_jobs = 2

[local.tuning.ranges.epochs]
type = "integer"
min = 1
max = 2

[local.evaluation]
accuracy_threshold = 0.0
"""


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("e2e-config") / "tiny.toml"
    path.write_text(TINY_CONFIG)
    return path


@pytest.fixture(scope="session")
def tiny_config_with_batch(tiny_config: Path) -> Path:
    path = tiny_config.with_name("tiny-with-batch.toml")
    path.write_text(tiny_config.read_text().replace("[batch]\nenabled = false", "[batch]\nenabled = true"))
    return path


@pytest.fixture(scope="session")
def digits_input(small_digits_dir: Path) -> Path:
    """InputDataUrl: 30 PNGs in each of 10 class folders (a plain path: the local target accepts it as is)."""
    return small_digits_dir


@pytest.fixture(scope="session")
def make_cli(tiny_config: Path) -> Callable[..., LocalCli]:
    """`make_cli(workspace[, config])`: a LocalCli with the tiny config (or `config`); the caller calls its
    `shut_down()` when done."""
    return lambda workspace, config=None: LocalCli(workspace, config or tiny_config)


@pytest.fixture
def local_cli(make_cli, tmp_path: Path):
    """A LocalCli on a workspace of this test's own, shut down (endpoints deleted, nothing left running) after."""
    cli = make_cli(tmp_path / "ws")
    yield cli
    cli.shut_down()


class LocalCli:
    """`python pipeline.py --config <tiny> ...` run in a subprocess against one workspace of its own."""

    def __init__(self, workspace: Path, config_file: Path) -> None:
        self.workspace, self.config_file = workspace, config_file
        # The caller's own PIPELINE_* settings must not leak in: the test decides every value.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
        self.env.update(PIPELINE_LOCAL_WORKSPACE=str(workspace), SAGEMAKER_SUPPRESS_V2_WARNING="1",
                        COLUMNS="250")

    def run(self, *args: str, expect_rc: int | None = 0, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
        command = [sys.executable, str(PIPELINE_PY), "--config", str(self.config_file), *args]
        result = subprocess.run(command, cwd=REPO_ROOT, env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        if expect_rc is not None:
            assert result.returncode == expect_rc, (
                f"`pipeline.py {' '.join(args)}` exited {result.returncode}, expected {expect_rc}\n"
                f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}")
        return result

    def json(self, *args: str, expect_rc: int | None = 0, timeout: float = CLI_TIMEOUT_S) -> Any:
        result = self.run(*args, expect_rc=expect_rc, timeout=timeout)
        try:
            return json.loads(result.stdout)
        except ValueError as err:
            raise AssertionError(f"`pipeline.py {' '.join(args)}` printed no JSON ({err}):\n{result.stdout[-4000:]}"
                                 f"\n--- stderr\n{result.stderr[-2000:]}") from None

    def live_endpoints(self) -> list[dict[str, Any]]:
        return self.json("endpoints", "--json")

    def shut_down(self) -> None:
        """Deletes every endpoint of the workspace, then makes sure nothing of it still runs: a leftover process is
        killed and reported as a failure (the engine must not leak servers, workers or jobs)."""
        problems = []
        try:
            endpoints = self.live_endpoints() if (self.workspace / "state.db").exists() else []
        except (AssertionError, subprocess.TimeoutExpired) as err:
            endpoints, problems = [], [f"cannot list endpoints: {err}"]
        for endpoint in endpoints:
            try:
                self.run("delete-endpoint", endpoint["name"])
            except (AssertionError, subprocess.TimeoutExpired) as err:
                problems.append(f"delete-endpoint {endpoint['name']} failed: {err}")
        leftovers = kill_processes_of(self.workspace)
        if leftovers:
            problems.append("processes of the workspace still ran after its endpoints were deleted (killed now): "
                            + "; ".join(leftovers))
        assert not problems, "\n".join(problems)


def processes_of(workspace: Path) -> list[psutil.Process]:
    """Processes whose command line or working directory is inside `workspace` (servers, workers, jobs)."""
    root, found = str(workspace.resolve()), []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            inside = any(root in part for part in process.cmdline())
            if not inside:
                cwd = process.cwd()
                inside = cwd == root or cwd.startswith(root + os.sep)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if inside:
            found.append(process)
    return found


def kill_processes_of(workspace: Path) -> list[str]:
    """SIGKILLs what `processes_of` finds; returns a description of each."""
    described = []
    for process in processes_of(workspace):
        try:
            described.append(f"pid {process.pid}: {' '.join(process.cmdline())[:200]}")
            process.send_signal(signal.SIGKILL)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    if described:
        time.sleep(0.2)
    return described
