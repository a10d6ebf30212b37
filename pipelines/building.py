"""From configuration to a checked definition: what `definition`, `validate` and `upsert` share."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from functools import cache
from typing import Any

from sagemaker.workflow.pipeline import Pipeline
from sagemaker.workflow.pipeline_context import PipelineSession

from pipelines.assembly import get_pipeline
from pipelines.cache_stability import stable_definition
from pipelines.config import ConfigError, PipelineConfig, env_var_name
from pipelines.s3_bridge import S3Bridge
from pipelines.validation import Problem, validate_definition
from steps.containers import SCRIPTS_DIR
from steps.evaluation import REPORT_FILE


@dataclass(frozen=True)
class BuiltDefinition:
    pipeline: Pipeline
    text: str
    definition: dict[str, Any]
    problems: list[Problem]


def require_cloud_settings(config: PipelineConfig, needs_role: bool = True) -> None:
    """The sagemaker target cannot build a definition without a role and a bucket: say how to give them."""
    wanted = (("role_arn", "--role-arn"), ("bucket", "--bucket")) if needs_role else (("bucket", "--bucket"),)
    missing = [(key, flag) for key, flag in wanted if not getattr(config.project, key)]
    if missing:
        how = "; ".join(
            f"{key}: pass {flag}, set {env_var_name('project', key)}, or set {key} in [project] of {config.source}"
            for key, flag in missing
        )
        raise ConfigError(f"the sagemaker target needs {' and '.join(k for k, _ in missing)} ({how})")


@cache
def sample_reports() -> dict[str, Any]:
    """What the pipeline's property files really look like: evaluate.py's own report builder on a tiny case."""
    spec = importlib.util.spec_from_file_location("evaluate_script", SCRIPTS_DIR / "evaluate.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {SCRIPTS_DIR / 'evaluate.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    report = module.build_evaluation_report(["cat", "dog"], [0, 1, 1], [0, 1, 0])
    return {REPORT_FILE: json.loads(json.dumps(report))}


def build_definition(config: PipelineConfig, session: PipelineSession, code: S3Bridge | None = None) -> BuiltDefinition:
    """The checked definition, the same on every build of the same project (`cache_stability`); uploads recorded
    in `code` that it no longer names are dropped."""
    if config.project.target == "sagemaker":
        require_cloud_settings(config)
    pipeline = get_pipeline(config, session)
    definition = json.loads(pipeline.definition())
    unused = stable_definition(definition)
    if code is not None:
        code.forget(unused)
    text = json.dumps(definition)
    problems = validate_definition(definition, pipeline.name, len(text.encode()), sample_reports())
    return BuiltDefinition(pipeline, text, definition, problems)
