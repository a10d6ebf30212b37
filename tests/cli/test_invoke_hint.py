"""The hint `start` prints after a local run deployed: in multi-model mode it names the TargetModel that the run's
PublishModel published (the newest registered version), since a request without one is refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipelines import cli_run
from pipelines.config import load_config


def hint(capsys: pytest.CaptureFixture[str], mode: str, arns: list[str]) -> str:
    config = load_config(environ={}).replace("deployment", mode=mode)
    target = SimpleNamespace(list_models=lambda: [{"arn": arn} for arn in arns])
    cli_run._print_invoke_hint(SimpleNamespace(config=config, target=lambda: target))
    return " ".join(capsys.readouterr().out.split())


def test_a_single_model_endpoint_is_invoked_without_a_target_model(capsys) -> None:
    assert "invoke --endpoint image-classifier path/to/image.png" in hint(capsys, "single", [])


def test_a_multi_model_endpoint_hint_names_the_newest_published_version(capsys) -> None:
    group = "arn:aws:sagemaker:us-east-1:000000000000:model-package/image-classifier"
    text = hint(capsys, "multi-model", [f"{group}/2", f"{group}/10", f"{group}/9"])
    assert "invoke --endpoint image-classifier --target-model v10.tar.gz path/to/image.png" in text
