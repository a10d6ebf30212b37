"""Shared fixtures: real data made here, never downloaded."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS_DIR = REPO_ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS_DIR))
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full bundled sample dataset (1,797 PNGs, 10 classes), written once per test session."""
    from pipelines.sample_data import write_sample_dataset

    return write_sample_dataset(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def small_digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-images-a-class slice of the sample dataset, for tests that only need the shape right."""
    from pipelines.sample_data import write_sample_dataset

    return write_sample_dataset(tmp_path_factory.mktemp("small_digits"), limit_per_class=30)
