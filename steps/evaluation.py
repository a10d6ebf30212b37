"""EvaluateModel: scripts/evaluate.py scores the trained model on the held-out test split."""

from __future__ import annotations

from sagemaker.processing import ProcessingInput, ProcessingOutput
from sagemaker.workflow.functions import Join
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.properties import PropertyFile
from sagemaker.workflow.steps import CacheConfig, ProcessingStep, TrainingStep

from pipelines.config import PipelineConfig
from pipelines.parameters import PipelineParameters
from steps.containers import PROCESSING_ROOT, SCRIPTS_DIR, module_inputs, script_processor
from steps.prepare_data import split_uri

STEP_NAME = "EvaluateModel"
REPORT_OUTPUT = "evaluation"
REPORT_FILE = "evaluation.json"
PROPERTY_FILE_NAME = "EvaluationReport"
# scripts/<name>.py that evaluate.py imports (steps/containers.py `module_inputs`)
EVALUATE_MODULES = ("model_loading",)
# Where scripts/evaluate.py writes the test accuracy in the Model Registry's multiclass format
# (a test resolves it on evaluate.py's real output).
ACCURACY_JSON_PATH = "multiclass_classification_metrics.accuracy.value"


def build_evaluation_step(
    config: PipelineConfig,
    params: PipelineParameters,
    session: PipelineSession,
    prepare: ProcessingStep,
    train: TrainingStep,
    cache: CacheConfig,
) -> tuple[ProcessingStep, PropertyFile]:
    processor = script_processor(config, params, session, "evaluate")
    report = PropertyFile(name=PROPERTY_FILE_NAME, output_name=REPORT_OUTPUT, path=REPORT_FILE)
    step_args = processor.run(
        code=str(SCRIPTS_DIR / "evaluate.py"),
        inputs=[
            ProcessingInput(
                source=train.properties.ModelArtifacts.S3ModelArtifacts, destination=f"{PROCESSING_ROOT}/model"
            ),
            ProcessingInput(source=split_uri(prepare, "test"), destination=f"{PROCESSING_ROOT}/test"),
            *module_inputs(EVALUATE_MODULES),
        ],
        outputs=[ProcessingOutput(output_name=REPORT_OUTPUT, source=f"{PROCESSING_ROOT}/{REPORT_OUTPUT}")],
    )
    step = ProcessingStep(
        name=STEP_NAME,
        display_name="Evaluate model",
        description="Accuracy, per-class metrics and confusion matrix on the test split",
        step_args=step_args,
        property_files=[report],
        cache_config=cache,
    )
    return step, report


def report_uri(step: ProcessingStep) -> Join:
    """S3 URI of evaluation.json, for the Model Registry's model metrics."""
    output = step.properties.ProcessingOutputConfig.Outputs[REPORT_OUTPUT].S3Output.S3Uri
    return Join(on="/", values=[output, REPORT_FILE])
