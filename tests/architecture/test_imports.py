"""The seams, checked on the source: no import cycles, the CLI reaches the targets only through
`pipelines.targets`, and importing our modules configures nothing (logging, environment, SDK patches)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from pipelines.config import REPO_ROOT

PACKAGES = ("pipelines", "steps")
CLI_MODULES = ("pipeline", "pipelines.cli_app", "pipelines.cli_report", "pipelines.cli_run", "pipelines.cli_serving")
TARGET_IMPLEMENTATIONS = ("pipelines.local", "pipelines.cloud")


def module_files() -> dict[str, Path]:
    files = [path for package in PACKAGES for path in sorted((REPO_ROOT / package).rglob("*.py"))]
    files.append(REPO_ROOT / "pipeline.py")
    modules = {}
    for path in files:
        parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_modules(module: str, path: Path, known: set[str]) -> set[str]:
    """Every module of ours `module` imports: at the top, inside functions, under TYPE_CHECKING alike (a cycle
    hidden in a function is still a cycle of ideas). `from pkg import sub` counts as importing pkg.sub."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(base)
    return (found & known) - {module}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycles() -> None:
    graph = import_graph()
    assert "pipelines.local.target" in graph and "steps.training" in graph  # the walk found the code
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_cli_module_imports_a_target_implementation() -> None:
    graph = import_graph()
    for module in CLI_MODULES:
        reached = {name for name in graph[module]
                   if any(name == impl or name.startswith(impl + ".") for impl in TARGET_IMPLEMENTATIONS)}
        assert not reached, f"{module} imports {reached}: go through pipelines.targets"
    assert {"pipelines.local.target", "pipelines.cloud"} <= graph["pipelines.targets"]  # the factory does


IMPORT_EVERYTHING = """
import importlib, json, logging, os, sys
# The SDK's own import-time basicConfig(INFO) (sagemaker.experiments) is its side effect, not ours: taken first.
import sagemaker.experiments
root = logging.getLogger()
before = (len(root.handlers), root.level)
os.environ.pop("SAGEMAKER_SUPPRESS_V2_WARNING", None)
for name in sys.argv[1:]:
    importlib.import_module(name)
import sagemaker.telemetry.telemetry_logging as telemetry
import sagemaker.utils as sdk_utils
print(json.dumps({
    "root": [len(root.handlers), root.level] == list(before),
    "env": "SAGEMAKER_SUPPRESS_V2_WARNING" in os.environ,
    "sagemaker_logger": logging.getLogger("sagemaker").level,
    "telemetry_patched": telemetry._send_telemetry_request.__module__.startswith("pipelines"),
    "resolver_cached": hasattr(sdk_utils._botocore_resolver, "cache_info"),
}))
"""


def test_importing_our_modules_configures_nothing() -> None:
    modules = sorted(name for name in module_files() if name != "pipeline")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    result = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING, *modules], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert state == {"root": True, "env": False, "sagemaker_logger": 0, "telemetry_patched": False,
                     "resolver_cached": False}


def test_building_a_session_prepares_the_sdk() -> None:
    script = IMPORT_EVERYTHING.replace(
        'for name in sys.argv[1:]:\n    importlib.import_module(name)',
        'from pipelines.config import load_config\nfrom pipelines.session import Uploads, build_pipeline_session\n'
        'build_pipeline_session(load_config(None, {"project.target": "local"}), Uploads.DISCARD)')
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert (state["telemetry_patched"], state["resolver_cached"], state["env"]) == (True, True, True)
