"""ExplainModel: scripts/explain.py writes attribution overlays for test images and the data's bias metrics.

It reads the model, the test split, EvaluateModel's output and PrepareData's manifest, and runs beside the accuracy
gate: a model that fails the gate gets its explanation too (that is when one is wanted most), so the FailStep waits
for it. Its two reports become the registered version's ModelMetrics.Explainability and ModelMetrics.Bias.
"""

from __future__ import annotations

from sagemaker.processing import ProcessingInput, ProcessingOutput
from sagemaker.workflow.functions import Join
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.steps import CacheConfig, ProcessingStep, TrainingStep

from pipelines.config import ExplainConfig, PipelineConfig
from pipelines.parameters import PipelineParameters
from steps.containers import PROCESSING_ROOT, SCRIPTS_DIR, module_inputs, script_processor
from steps.evaluation import REPORT_OUTPUT as EVALUATION_OUTPUT
from steps.prepare_data import split_uri

STEP_NAME = "ExplainModel"
# scripts/<name>.py that explain.py imports (steps/containers.py `module_inputs`)
EXPLAIN_MODULES = ("model_loading", "bias_report", "overlays")
EXPLAINABILITY_OUTPUT, EXPLAINABILITY_FILE = "explainability", "explainability.json"
BIAS_OUTPUT, BIAS_FILE = "bias", "bias.json"


def explain_arguments(explain: ExplainConfig) -> list[str]:
    return ["--samples-per-class", str(explain.samples_per_class), "--top-loss", str(explain.top_loss),
            "--method", explain.method]


def build_explain_step(
    config: PipelineConfig,
    params: PipelineParameters,
    session: PipelineSession,
    prepare: ProcessingStep,
    train: TrainingStep,
    evaluate: ProcessingStep,
    cache: CacheConfig,
) -> ProcessingStep:
    processor = script_processor(config, params, session, "explain")
    evaluation = evaluate.properties.ProcessingOutputConfig.Outputs[EVALUATION_OUTPUT].S3Output.S3Uri
    step_args = processor.run(
        code=str(SCRIPTS_DIR / "explain.py"),
        inputs=[
            ProcessingInput(source=train.properties.ModelArtifacts.S3ModelArtifacts,
                            destination=f"{PROCESSING_ROOT}/model"),
            ProcessingInput(source=split_uri(prepare, "test"), destination=f"{PROCESSING_ROOT}/test"),
            ProcessingInput(source=evaluation, destination=f"{PROCESSING_ROOT}/evaluation"),
            ProcessingInput(source=split_uri(prepare, "report"), destination=f"{PROCESSING_ROOT}/manifest"),
            *module_inputs(EXPLAIN_MODULES),
        ],
        outputs=[ProcessingOutput(output_name=name, source=f"{PROCESSING_ROOT}/{name}")
                 for name in (EXPLAINABILITY_OUTPUT, BIAS_OUTPUT)],
        arguments=explain_arguments(config.explain),
    )
    return ProcessingStep(
        name=STEP_NAME,
        display_name="Explain model",
        description="Attribution overlays for test images, class balance and per-class recall gaps",
        step_args=step_args,
        cache_config=cache,
    )


def report_uri(step: ProcessingStep, output: str, file_name: str) -> Join:
    """S3 URI of one of the step's reports, for the Model Registry's model metrics."""
    folder = step.properties.ProcessingOutputConfig.Outputs[output].S3Output.S3Uri
    return Join(on="/", values=[folder, file_name])
