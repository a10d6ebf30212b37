"""What keeps a re-upsert of an unchanged project from missing SageMaker's step cache, fixed in the definition.

The SDK (2.257) puts two things that change on every build into cache key attributes:
- the tuning step's `sagemaker_job_name` (`<base job name>-<timestamp>`) and `sagemaker_submit_directory` (the
  scripts uploaded again under that timestamped name), while TrainModel's copy of the same scripts sits at a
  content-addressed `.../code/<sha256 of the files>/sourcedir.tar.gz`;
- TrainModel's `DebugHookConfig.CollectionConfigurations`, kept in a set, so in hash-seed order.
`stable_definition` gives the tuning step the base job name and TrainModel's content-addressed code (the same
`source_dir` and entry point: both come from `steps.estimator.build_estimator`, checked here by the program and the
other static hyperparameters the SDK adds) and sorts the collections. The timestamped upload is then unused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pipelines.validation import iter_steps

TIMESTAMP_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{3}$")
CONTENT_ADDRESSED = re.compile(r"/code/[0-9a-f]{64}/sourcedir\.tar\.gz$")
SUBMIT_DIRECTORY = "sagemaker_submit_directory"
JOB_NAME = "sagemaker_job_name"


def stable_definition(definition: dict[str, Any]) -> list[str]:
    """Makes `definition` (in place) the same on every build of the same project; returns the S3 URIs of uploads
    it no longer names."""
    steps = list(iter_steps(definition.get("Steps", [])))
    for step in steps:
        hook = (step.get("Arguments") or {}).get("DebugHookConfig") or {}
        if hook.get("CollectionConfigurations"):
            hook["CollectionConfigurations"] = sorted(hook["CollectionConfigurations"],
                                                      key=lambda c: json.dumps(c, sort_keys=True))
    trainings = [(step.get("Arguments") or {}).get("HyperParameters") or {} for step in steps
                 if step.get("Type") == "Training"]
    unused = []
    for step in steps:
        if step.get("Type") != "Tuning":
            continue
        definitions = (step.get("Arguments") or {}).get("TrainingJobDefinitions") or []
        single = (step.get("Arguments") or {}).get("TrainingJobDefinition")
        for job in [single, *definitions] if single else definitions:
            unused += _stable_tuning_code(job.get("StaticHyperParameters") or {}, trainings)
    return unused


def _stable_tuning_code(static: dict[str, Any], trainings: list[Mapping[str, Any]]) -> list[str]:
    name = _unquoted(static.get(JOB_NAME))
    if isinstance(name, str) and TIMESTAMP_SUFFIX.search(name):
        static[JOB_NAME] = json.dumps(TIMESTAMP_SUFFIX.sub("", name))
    submitted = _unquoted(static.get(SUBMIT_DIRECTORY))
    if not isinstance(submitted, str) or CONTENT_ADDRESSED.search(submitted):
        return []
    same_code = [t for t in trainings if t.get("sagemaker_program") == static.get("sagemaker_program")
                 and isinstance(_unquoted(t.get(SUBMIT_DIRECTORY)), str)
                 and CONTENT_ADDRESSED.search(_unquoted(t.get(SUBMIT_DIRECTORY)))]
    if not same_code:
        return []  # no content-addressed copy of the same program: leave the SDK's upload in use
    static[SUBMIT_DIRECTORY] = same_code[0][SUBMIT_DIRECTORY]
    return [submitted]


def _unquoted(value: Any) -> Any:
    """The SDK JSON-encodes these hyperparameters: '"s3://..."'."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
