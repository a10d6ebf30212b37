"""Pipeline assembly, configuration and the local engine."""

import logging
import os
import warnings

# Before anything imports the SageMaker SDK: no v3 migration banner, no "Running within a PipelineSession" noise,
# no "Not applying SDK defaults" lines, and a root logger the SDK's own basicConfig(INFO) cannot take over.
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
warnings.filterwarnings("ignore", message="Running within a PipelineSession")
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
for _name in ("sagemaker", "sagemaker.config"):
    logging.getLogger(_name).setLevel(logging.ERROR)
