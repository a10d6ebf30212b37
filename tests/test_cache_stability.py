"""pipelines.cache_stability on hand-made definitions: what it changes, and what it leaves when it cannot be sure."""

from __future__ import annotations

import json

from pipelines.cache_stability import stable_definition

CODE = '"s3://b/image-classifier/code/' + "a" * 64 + '/sourcedir.tar.gz"'
STAMPED = '"s3://b/image-classifier-tune-2026-12-07-10-35-21-495/source/sourcedir.tar.gz"'


def definition(training_program: str = '"train.py"', training_code: str = CODE) -> dict:
    tuning = {"Name": "Tune", "Type": "Tuning", "Arguments": {"TrainingJobDefinition": {"StaticHyperParameters": {
        "sagemaker_program": '"train.py"', "sagemaker_submit_directory": STAMPED,
        "sagemaker_job_name": '"image-classifier-tune-2026-12-07-10-35-21-495"', "seed": "42"}}}}
    training = {"Name": "Train", "Type": "Training", "Arguments": {
        "HyperParameters": {"sagemaker_program": training_program, "sagemaker_submit_directory": training_code},
        "DebugHookConfig": {"CollectionConfigurations": [{"CollectionName": "relu_output"},
                                                         {"CollectionName": "losses"}]}}}
    return {"Steps": [tuning, {"Name": "Gate", "Type": "Condition", "Arguments": {"IfSteps": [training]}}]}


def static(built: dict) -> dict:
    return built["Steps"][0]["Arguments"]["TrainingJobDefinition"]["StaticHyperParameters"]


def test_the_tuning_step_gets_the_trainings_content_addressed_code_and_its_base_job_name() -> None:
    built = definition()
    assert stable_definition(built) == [json.loads(STAMPED)]
    assert static(built) == {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": CODE,
                             "sagemaker_job_name": '"image-classifier-tune"', "seed": "42"}
    hook = built["Steps"][1]["Arguments"]["IfSteps"][0]["Arguments"]["DebugHookConfig"]
    assert [c["CollectionName"] for c in hook["CollectionConfigurations"]] == ["losses", "relu_output"]
    assert stable_definition(built) == []  # a stable definition stays as it is


def test_without_a_content_addressed_copy_of_the_same_program_the_sdks_upload_stays() -> None:
    for built in (definition(training_program='"other.py"'), definition(training_code=STAMPED)):
        assert stable_definition(built) == []
        assert static(built)["sagemaker_submit_directory"] == STAMPED
        assert static(built)["sagemaker_job_name"] == '"image-classifier-tune"'  # the name is informational only
