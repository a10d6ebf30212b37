"""Packaging: the pipeline assembly, the local engine and the CLI's dependencies."""

import runpy
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# pipelines/project_files.py names the files it reads from pipelines/bundled/ when installed (a wheel holds only
# packages); run by path, so building imports nothing of the project.
BUNDLED_FILES = runpy.run_path(str(ROOT / "pipelines" / "project_files.py"))["BUNDLED_FILES"]


class BuildPyWithBundledFiles(build_py):
    """build_py, plus the defaults file and the container scripts copied into pipelines/bundled/."""

    def run(self) -> None:
        super().run()
        bundled = Path(self.build_lib) / "pipelines" / "bundled"
        shutil.rmtree(bundled, ignore_errors=True)
        bundled.mkdir(parents=True)
        for name in BUNDLED_FILES:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, bundled / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copyfile(ROOT / name, bundled / name)

INSTALL_REQUIRES = [
    # v3 dropped Estimator, HyperparameterTuner and Debugger rules; 2.257 is the first with native endpoint steps.
    "sagemaker>=2.257,<3",
    "boto3",
    # PyPI's builds: the CPU wheel some machines carry does not match PyPI's torchvision.
    "torch",
    "torchvision",
    # smdebug is the Debugger hook and trial reader; it uses ndarray.tostring (gone in numpy 2) and old protobuf.
    "smdebug==1.0.34",
    "numpy<2",
    "protobuf<=3.20.3",
    # sagemaker pulls pandas; 2.3 is the newest line that still supports numpy<2 and resolves with the pins above.
    "pandas>=2.3,<2.4",
    "Pillow",
    "matplotlib",
    "scikit-learn",  # only for the bundled sample dataset (load_digits ships inside the package)
    "click>=8.1",
    "rich",
    "psutil",
    "optuna",  # the local stand-in for SageMaker's Bayesian tuning strategy
    # ExplainModel's attribution maps (scripts/explain.py pins the same version where an image lacks it)
    "captum==0.9.0",
    "uvicorn",
    "starlette",
    "httpx",
]

EXTRAS_REQUIRE = {
    # setuptools>=70.1 builds wheels without the `wheel` package: tests/test_packaging.py builds one offline.
    # scikit-image: the real photographs benchmarks/photo_dataset.py builds a users'-style photo set from.
    "dev": ["pytest", "moto[server]>=5.0", "ruff", "mypy", "setuptools>=70.1", "scikit-image"],
    # The code SageMaker's PyTorch containers run around ours, for tests/containers/ only. sagemaker-training 5
    # needs protobuf>=5, which smdebug's pin (<=3.20.3) rules out; 4.8 has the same mapping and environment.
    "containers": ["sagemaker-inference>=1.10", "sagemaker-pytorch-inference>=2.0.25", "sagemaker-training>=4.8,<5"],
}

setup(
    name="sagemaker-image-pipeline",
    version="0.1.0",
    description="Train, tune, debug, gate, register and deploy an image classifier on SageMaker - or on a laptop.",
    python_requires=">=3.11",
    packages=find_packages(include=["pipelines", "pipelines.*", "steps", "steps.*"]),
    py_modules=["pipeline"],
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["image-pipeline=pipeline:cli"]},
    cmdclass={"build_py": BuildPyWithBundledFiles},
)
