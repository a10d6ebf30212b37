"""A user's own InputDataUrl on the local target, through the real CLI: an empty one fails PrepareData and is never
filled with the sample digits; `upload-data` writes exactly where the pipeline reads, and the run trains on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

USER_URL = "s3://datasets/pets/v1"
RUN_TIMEOUT_S = 300
RENAMED = {"0-zero": "cat", "1-one": "dog", "7-seven": "hamster"}


@pytest.fixture
def user_cli(make_cli, tiny_config: Path, tmp_path: Path):
    """The tiny settings plus the user's own `[data] input_data_url`, in a config file as a user writes it."""
    cli = make_cli(tmp_path / "ws")
    cli.config_file = tmp_path / "user.toml"
    cli.config_file.write_text(tiny_config.read_text() + f'\n[data]\ninput_data_url = "{USER_URL}"\n')
    yield cli
    cli.shut_down()


def user_photos(digits: Path, dest: Path) -> Path:
    """Three of the digit classes under names of the user's own, so nothing else could pass for them."""
    for source, name in RENAMED.items():
        shutil.copytree(digits / source, dest / name)
    return dest


def manifests(workspace: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((workspace / "s3").rglob("report/manifest.json"))]


def test_an_empty_configured_url_fails_prepare_data_and_uploading_there_makes_the_run_train_on_it(
        user_cli, digits_input: Path, tmp_path: Path) -> None:
    user_cli.run("upsert")
    failed = user_cli.json("start", "--wait", "--json", expect_rc=1, timeout=RUN_TIMEOUT_S)
    steps = {step["name"]: step for step in failed["steps"]}
    assert list(steps) == ["PrepareData"], steps
    reason = steps["PrepareData"]["failure_reason"]
    assert reason.startswith(f'ClientError: No S3 objects found under S3 URL "{USER_URL}"'), reason
    assert f"python pipeline.py upload-data FOLDER --to {USER_URL}" in reason
    bucket_folder = user_cli.workspace / "s3" / "datasets"
    assert not bucket_folder.exists() or not any(p.is_file() for p in bucket_folder.rglob("*")), \
        "a URL the user gave was filled with the sample digits"

    uploaded = user_cli.run("upload-data", str(user_photos(digits_input, tmp_path / "photos")))
    assert uploaded.stdout.strip() == USER_URL, "upload-data prints exactly the URL it wrote"
    assert "reads" not in uploaded.stderr, "no hint: the pipeline reads this URL by default"

    started = user_cli.json("start", "--wait", "--json", timeout=RUN_TIMEOUT_S)
    assert started["status"] == "Succeeded", started
    (manifest,) = [m for m in manifests(user_cli.workspace) if m["num_classes"] == len(RENAMED)]
    assert sorted(manifest["classes"]) == sorted(RENAMED.values())
    assert not any(m["num_classes"] == 10 for m in manifests(user_cli.workspace)), "trained on the sample digits"
