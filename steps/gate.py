"""CheckAccuracy: register and deploy only a model whose test accuracy reaches AccuracyThreshold."""

from __future__ import annotations

from collections.abc import Sequence

from sagemaker.workflow.condition_step import ConditionStep
from sagemaker.workflow.conditions import ConditionGreaterThanOrEqualTo
from sagemaker.workflow.fail_step import FailStep
from sagemaker.workflow.functions import Join, JsonGet
from sagemaker.workflow.parameters import Parameter
from sagemaker.workflow.properties import PropertyFile
from sagemaker.workflow.step_collections import StepCollection
from sagemaker.workflow.steps import ProcessingStep, Step

from steps.evaluation import ACCURACY_JSON_PATH

STEP_NAME = "CheckAccuracy"
FAIL_STEP_NAME = "AccuracyTooLow"


def test_accuracy(evaluation: ProcessingStep, report: PropertyFile) -> JsonGet:
    return JsonGet(step_name=evaluation.name, property_file=report, json_path=ACCURACY_JSON_PATH)


def build_fail_step(evaluation: ProcessingStep, report: PropertyFile, threshold: Parameter,
                    depends_on: Sequence[Step] = ()) -> FailStep:
    """`depends_on`: steps that must finish before the execution is failed (ExplainModel, so a model that failed the
    gate is explained too)."""
    return FailStep(
        name=FAIL_STEP_NAME,
        display_name="Accuracy too low",
        description="The model is neither registered nor deployed",
        error_message=Join(
            on=" ",
            values=[
                "Test accuracy",
                test_accuracy(evaluation, report),
                "is below the AccuracyThreshold of",
                threshold,
                "- the model was not registered or deployed.",
            ],
        ),
        depends_on=list(depends_on) or None,
    )


def build_condition_step(
    evaluation: ProcessingStep,
    report: PropertyFile,
    threshold: Parameter,
    if_steps: list[Step | StepCollection],
    else_steps: list[Step | StepCollection],
) -> ConditionStep:
    return ConditionStep(
        name=STEP_NAME,
        display_name="Check accuracy",
        description="Test accuracy >= AccuracyThreshold?",
        # The SDK's hint leaves out JsonGet, which its documentation shows here and it serialises as such.
        conditions=[ConditionGreaterThanOrEqualTo(left=test_accuracy(evaluation, report),  # type: ignore[arg-type]
                                                  right=threshold)],
        if_steps=if_steps,
        else_steps=else_steps,
    )
