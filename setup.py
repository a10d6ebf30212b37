"""Packaging: the pipeline assembly, the local engine and the CLI's dependencies."""

from setuptools import find_packages, setup

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
    "uvicorn",
    "starlette",
    "httpx",
]

EXTRAS_REQUIRE = {
    "dev": ["pytest", "moto[server]>=5.0", "ruff"],
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
)
