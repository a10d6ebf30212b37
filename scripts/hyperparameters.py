"""The training job's hyperparameters: ``--name value`` pairs as SageMaker's training toolkit passes them, parsed
into one typed Config, checked, and completed with the paths of SageMaker's container contract (``SM_*`` env,
``/opt/ml/...``)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from inference import check_arch
from modeling import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass
class Config:
    """Hyperparameters (``--name value``) and paths; a path left empty comes from the SM_* environment."""

    arch: str = "resnet50"
    pretrained: bool = True
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    image_size: int = 224  # 0: follow the training images (data_cache.image_size_for_data)
    freeze_backbone: bool = False
    cache_features: bool = True  # frozen backbone, no augmentation: run it once (frozen_features.py); false: every step
    seed: int = 42
    hflip: bool = False
    min_crop_scale: float = 0.6  # random resized crop keeps 60-100% of the area; 1 turns cropping off
    color_jitter: float = 0.2
    label_smoothing: float = 0.1
    warmup_epochs: float = 0.5
    num_workers: int = -1  # -1 (or "auto"): one DataLoader worker per CPU when images are decoded lazily
    cache_memory_fraction: float = 0.25
    amp: bool = True
    channels_last: bool = True  # on a GPU, and on CPU from 128 px up (see train.setup_runtime)
    bn_momentum: float = 0.1  # a floor for BatchNorm momentum (see modeling.raise_bn_momentum); 0 keeps the arch's
    train: str = ""
    validation: str = ""
    weights: str = ""
    model_dir: str = ""
    output_data_dir: str = ""
    checkpoint_dir: str = ""


def peel_quotes(raw: str) -> str:
    """Strips JSON string quoting, however deep: ``'"\\"64\\""'`` -> ``'64'``. Tuned categorical values arrive
    JSON-encoded (once or twice, depending on the path they took); plain values pass through unchanged."""
    value = raw.strip()
    for _ in range(8):
        if not (len(value) >= 2 and value[0] == value[-1] == '"'):
            break
        try:
            decoded = json.loads(value)
        except ValueError:
            break
        if not isinstance(decoded, str):
            break
        value = decoded.strip()
    return value


def coerce(name: str, raw: str, kind: type) -> Any:
    """One hyperparameter value, from its command-line text, as ``kind``."""
    text = peel_quotes(raw)
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("true", "1", "yes", "on", "t", "y"):
                return True
            if lowered in ("false", "0", "no", "off", "f", "n"):
                return False
            raise ValueError("expected true or false")
        if kind is int:
            if name == "num_workers" and text.lower() == "auto":
                return -1
            number = float(text)
            if not number.is_integer():
                raise ValueError("expected a whole number")
            return int(number)
        if kind is float:
            number = float(text)
            if not math.isfinite(number):
                raise ValueError("expected a finite number")
            return number
        return text
    except ValueError as exc:
        raise ConfigError(f"hyperparameter {name}={raw!r}: {exc}") from exc


def parse_hyperparameters(argv: list[str]) -> tuple[Config, list[str]]:
    """``--name value`` / ``--name=value`` pairs into a Config; names may use ``-`` or ``_``. Unknown names are
    returned as warnings, not errors (SageMaker adds its own ``sagemaker_*`` ones on some paths)."""
    kinds = get_type_hints(Config)
    config, warnings, i = Config(), [], 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or len(token) == 2:
            warnings.append(f"ignoring stray argument {token!r}")
            i += 1
            continue
        name, has_value, value = token[2:].partition("=")
        name = name.replace("-", "_")
        if not has_value:
            next_is_value = i + 1 < len(argv) and not (argv[i + 1].startswith("--") and len(argv[i + 1]) > 2)
            # A bare boolean flag (--hflip) means true; every other name needs a value.
            value = argv[i + 1] if next_is_value else ("true" if kinds.get(name) is bool else "")
            i += 1 if next_is_value else 0
        i += 1
        if name not in kinds:
            warnings.append(f"ignoring unknown hyperparameter {name}={value!r}")
            continue
        setattr(config, name, coerce(name, value, kinds[name]))
    return config, warnings


def validate(config: Config) -> None:
    config.optimizer = config.optimizer.lower()
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer={config.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    positive = {"epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr}
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}")
    if config.image_size < 0:
        raise ConfigError(f"image_size must be positive, or 0 to follow the training images, got {config.image_size}")
    if not 0 < config.min_crop_scale <= 1:
        raise ConfigError(f"min_crop_scale must be in (0, 1], got {config.min_crop_scale}")
    if config.color_jitter < 0:
        raise ConfigError(f"color_jitter must be 0 (none) or more, got {config.color_jitter}")
    if not 0 <= config.label_smoothing < 1:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {config.label_smoothing}")
    try:
        check_arch(config.arch)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def resolve_paths(config: Config, env: dict[str, str]) -> None:
    """Fills empty paths from SageMaker's environment; every default lives under SAGEMAKER_BASE_DIR (/opt/ml)."""
    base = Path(env.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
    defaults = {
        "train": env.get("SM_CHANNEL_TRAIN", str(base / "input/data/train")),
        "validation": env.get("SM_CHANNEL_VALIDATION", str(base / "input/data/validation")),
        "weights": env.get("SM_CHANNEL_WEIGHTS", str(base / "input/data/weights")),
        "model_dir": env.get("SM_MODEL_DIR", str(base / "model")),
        "output_data_dir": env.get("SM_OUTPUT_DATA_DIR", str(base / "output/data")),
        "checkpoint_dir": str(base / "checkpoints"),
    }
    for name, default in defaults.items():
        if not getattr(config, name):
            setattr(config, name, default)
