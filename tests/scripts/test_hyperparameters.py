"""scripts/hyperparameters.py: every form SageMaker passes a hyperparameter in, the checks, the SM_* paths."""

from __future__ import annotations

import hyperparameters
import pytest
from modeling import ConfigError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("64", "64"), ('"64"', "64"), ('"\\"64\\""', "64"), ('"\\"\\\\\\"64\\\\\\"\\""', "64"), ("0.001", "0.001"),
     ('"true"', "true"), ("resnet18", "resnet18"), ('"resnet18"', "resnet18"), ('"', '"'), ('""', ""),
     ('"a"b"', '"a"b"'), (" 7 ", "7")],
)
def test_peel_quotes(raw: str, expected: str) -> None:
    assert hyperparameters.peel_quotes(raw) == expected


@pytest.mark.parametrize(
    ("name", "raw", "kind", "expected"),
    [("batch_size", '"\\"64\\""', int, 64), ("epochs", "3.0", int, 3), ("epochs", "1e1", int, 10),
     ("lr", "0.001", float, 0.001), ("lr", '"1e-3"', float, 0.001), ("lr", "3", float, 3.0),
     ("hflip", '"true"', bool, True), ("hflip", "True", bool, True), ("hflip", "1", bool, True),
     ("hflip", '"\\"false\\""', bool, False), ("hflip", "no", bool, False), ("hflip", "0", bool, False),
     ("num_workers", '"auto"', int, -1), ("arch", '"\\"mobilenet_v3_large\\""', str, "mobilenet_v3_large"),
     ("weight_decay", "-0.5", float, -0.5)],
)
def test_coerce(name: str, raw: str, kind: type, expected) -> None:
    value = hyperparameters.coerce(name, raw, kind)
    assert value == expected and type(value) is kind


@pytest.mark.parametrize(
    ("name", "raw", "kind"),
    [("epochs", "three", int), ("epochs", "2.5", int), ("lr", "nan", float), ("lr", "", float),
     ("hflip", "maybe", bool)],
)
def test_coerce_rejects_bad_values_naming_them(name: str, raw: str, kind: type) -> None:
    with pytest.raises(ConfigError, match=f"hyperparameter {name}="):
        hyperparameters.coerce(name, raw, kind)


def test_parse_hyperparameters_accepts_every_sagemaker_form() -> None:
    argv = ["--batch_size", '"\\"32\\""', "--image-size", "48", "--lr=0.01", "--freeze-backbone", "--epochs", '"2"',
            "--hflip", '"true"', "--pretrained", "False", "--arch", '"resnet18"', "--weight_decay", "-0.0",
            "--sagemaker_program", "hyperparameters.py", "--sagemaker-region", '"us-east-1"', "--model-dir", "/tmp/m"]
    config, warnings = hyperparameters.parse_hyperparameters(argv)
    assert (config.batch_size, config.image_size, config.lr, config.epochs) == (32, 48, 0.01, 2)
    assert config.freeze_backbone is True and config.hflip is True and config.pretrained is False
    assert config.arch == "resnet18" and config.model_dir == "/tmp/m"
    assert len(warnings) == 2 and all("sagemaker" in w for w in warnings)


def test_parse_hyperparameters_defaults_and_stray_tokens() -> None:
    config, warnings = hyperparameters.parse_hyperparameters(["stray", "--hflip"])
    assert config == hyperparameters.Config(hflip=True)
    assert warnings == ["ignoring stray argument 'stray'"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"arch": "resnet_18"}, "did you mean resnet18"), ({"optimizer": "rmsprop"}, "adam, adamw, sgd"),
     ({"epochs": 0}, "epochs must be positive"), ({"min_crop_scale": 0.0}, "min_crop_scale"),
     ({"label_smoothing": 1.0}, "label_smoothing"),
     ({"color_jitter": -0.1}, r"^color_jitter must be 0 \(none\) or more, got -0.1$")],
)
def test_validate_rejects_bad_settings(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        hyperparameters.validate(hyperparameters.Config(**overrides))


def test_paths_come_from_sm_env_relocated_under_the_base_dir() -> None:
    config = hyperparameters.Config(model_dir="/explicit")
    hyperparameters.resolve_paths(config, {"SAGEMAKER_BASE_DIR": "/job", "SM_CHANNEL_TRAIN": "/data/tr"})
    assert (config.train, config.validation, config.weights) == ("/data/tr", "/job/input/data/validation",
                                                                 "/job/input/data/weights")
    assert (config.model_dir, config.output_data_dir, config.checkpoint_dir) == ("/explicit", "/job/output/data",
                                                                                 "/job/checkpoints")
