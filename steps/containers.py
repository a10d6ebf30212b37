"""Container images and code locations shared by the step builders."""

from __future__ import annotations

from sagemaker import image_uris
from sagemaker.processing import ProcessingInput, ScriptProcessor
from sagemaker.workflow.pipeline_context import PipelineSession

from pipelines.config import PipelineConfig, bucket_and_role
from pipelines.parameters import PipelineParameters
from pipelines.project_files import SCRIPTS_DIR as SCRIPTS_DIR  # the builders' code location, re-exported
from pipelines.pytorch_framework import FRAMEWORK_VERSION as FRAMEWORK_VERSION  # re-exported for the builders
from pipelines.pytorch_framework import PY_VERSION as PY_VERSION

PROCESSING_ROOT = "/opt/ml/processing"
# Where a processing script finds the scripts/<name>.py modules it imports: each in MODULES_ROOT/<name>/ (the script
# puts every folder there on sys.path), because a script processor uploads only the one script.
MODULES_ROOT = f"{PROCESSING_ROOT}/input/modules"


def pytorch_image_uri(config: PipelineConfig, instance_type: str, scope: str) -> str:
    """The PyTorch DLC for `scope` ("training" or "inference"); CPU or GPU flavour follows the configured type.

    The instance type parameter can be overridden per execution; the image is chosen from the configured type,
    which is fine both ways (a GPU image runs on CPU, a CPU image on a GPU instance just leaves the GPU idle).
    """
    return image_uris.retrieve(
        framework="pytorch",
        region=config.project.region,
        version=FRAMEWORK_VERSION,
        py_version=PY_VERSION,
        instance_type=instance_type,
        image_scope=scope,
    )


def script_processor(config: PipelineConfig, params: PipelineParameters, session: PipelineSession,
                     job_suffix: str) -> ScriptProcessor:
    """`python3 <script>` in the PyTorch training image on one ProcessingInstanceType instance: what every
    Processing step of the pipeline runs (PrepareData, EvaluateModel, PublishModel)."""
    _, role = bucket_and_role(config)
    return ScriptProcessor(
        image_uri=pytorch_image_uri(config, config.instances.processing_type, "training"),
        command=["python3"],
        instance_type=params["ProcessingInstanceType"],
        instance_count=1,
        role=role,
        base_job_name=f"{config.project.pipeline_name}-{job_suffix}",
        sagemaker_session=session,
    )


def module_inputs(modules: tuple[str, ...]) -> list[ProcessingInput]:
    """One ProcessingInput per scripts/<module>.py a processing script imports."""
    return [ProcessingInput(source=str(SCRIPTS_DIR / f"{module}.py"), destination=f"{MODULES_ROOT}/{module}",
                            input_name=module) for module in modules]
