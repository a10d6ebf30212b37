"""PrepareData: validate, split and clean the image dataset (scripts/preprocess.py in a processing job)."""

from __future__ import annotations

from sagemaker.processing import ProcessingInput, ProcessingOutput
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.steps import CacheConfig, ProcessingStep

from pipelines.config import PipelineConfig
from pipelines.parameters import PipelineParameters
from steps.containers import MODULES_ROOT as MODULES_ROOT  # re-exported: where the modules land
from steps.containers import PROCESSING_ROOT, SCRIPTS_DIR, module_inputs, script_processor

STEP_NAME = "PrepareData"
SPLITS = ("train", "validation", "test")
OUTPUT_NAMES = (*SPLITS, "report")
# scripts/<name>.py that preprocess.py imports; each arrives in MODULES_ROOT/<name>/ (preprocess.py looks there)
PREPROCESS_MODULES = ("safe_extract", "rgb_conversion")


def build_prepare_data_step(
    config: PipelineConfig, params: PipelineParameters, session: PipelineSession, cache: CacheConfig
) -> ProcessingStep:
    processor = script_processor(config, params, session, "prepare")
    data = config.data
    step_args = processor.run(
        code=str(SCRIPTS_DIR / "preprocess.py"),
        inputs=[
            ProcessingInput(
                source=params["InputDataUrl"], destination=f"{PROCESSING_ROOT}/input/data", input_name="dataset"
            ),
            *module_inputs(PREPROCESS_MODULES),
        ],
        outputs=[
            ProcessingOutput(output_name=name, source=f"{PROCESSING_ROOT}/output/{name}") for name in OUTPUT_NAMES
        ],
        arguments=[
            "--val-fraction", str(data.val_fraction),
            "--test-fraction", str(data.test_fraction),
            "--seed", str(data.split_seed),
            "--min-images-per-class", str(data.min_images_per_class),
            "--max-image-side", str(data.max_image_side),
        ],
    )
    return ProcessingStep(
        name=STEP_NAME,
        display_name="Prepare data",
        description="Decode every image, drop broken ones, split stratified into train/validation/test",
        step_args=step_args,
        cache_config=cache,
    )


def split_uri(step: ProcessingStep, split: str):
    """The S3 URI a split lands in, as a step property (a pipeline expression)."""
    return step.properties.ProcessingOutputConfig.Outputs[split].S3Output.S3Uri
