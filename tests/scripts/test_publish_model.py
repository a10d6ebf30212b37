"""scripts/publish_model.py: the registered artifact, copied byte for byte as v<version>.tar.gz, run as the
Processing job runs it (SAGEMAKER_BASE_DIR relocates /opt/ml). What each bad input gets: an ARN with no version
(a model package group, a model) exit 2 naming the ARN's shape; no model.tar.gz exit 2 listing what is there."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from publish_model import PublishError, target_model_key

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "publish_model.py"
ARN = "arn:aws:sagemaker:us-east-1:000000000000:model-package/image-classifier/12"


def run_job(base: Path, arn: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
    return subprocess.run([sys.executable, str(SCRIPT), "--model-package-arn", arn], env=env, capture_output=True,
                          text=True, timeout=60)


def test_the_registered_artifact_is_published_as_its_version_key(tmp_path: Path) -> None:
    artifact = tmp_path / "processing" / "model" / "model.tar.gz"
    artifact.parent.mkdir(parents=True)
    artifact.write_bytes(b"\x1f\x8b the archive bytes")
    done = run_job(tmp_path, ARN)
    assert done.returncode == 0, done.stderr
    published = tmp_path / "processing" / "published"
    assert (published / "v12.tar.gz").read_bytes() == artifact.read_bytes()
    record = json.loads((published / "v12.tar.gz.json").read_text())
    assert record == {"target_model": "v12.tar.gz", "model_package_arn": ARN,
                      "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest()}
    assert "as TargetModel v12.tar.gz" in done.stdout


@pytest.mark.parametrize("arn", ["arn:aws:sagemaker:us-east-1:000000000000:model-package-group/image-classifier",
                                 "arn:aws:sagemaker:us-east-1:000000000000:model/m1", "12", ""])
def test_an_arn_without_a_version_is_refused_naming_the_shape_it_needs(arn: str) -> None:
    with pytest.raises(PublishError, match=r"is not a versioned model package ARN \(arn:aws:sagemaker:REGION:"
                                           r"ACCOUNT:model-package/GROUP/VERSION\)"):
        target_model_key(arn)


def test_a_missing_artifact_fails_the_job_listing_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "processing" / "model").mkdir(parents=True)
    (tmp_path / "processing" / "model" / "model.pth").write_bytes(b"")
    done = run_job(tmp_path, ARN)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"publish_model.py: error: no model.tar.gz in {tmp_path}/processing/model "
                                   "(found: model.pth)")
    assert not (tmp_path / "processing" / "published").exists()
