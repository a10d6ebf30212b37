"""Fixtures the container-script tests share."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def split_dir(small_digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ and validation/ as PrepareData writes them: 24 and 6 images a class."""
    out = tmp_path_factory.mktemp("split")
    for class_dir in sorted(p for p in small_digits_dir.iterdir() if p.is_dir()):
        files = sorted(class_dir.glob("*.png"))
        for split, part in (("validation", files[:6]), ("train", files[6:])):
            (out / split / class_dir.name).mkdir(parents=True)
            for f in part:
                shutil.copy(f, out / split / class_dir.name / f.name)
    return out
