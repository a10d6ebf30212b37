"""Model, optimizer and LR schedule for train.py: the network itself comes from inference.build_model, so training,
evaluation and serving share one definition; this adds what only training needs (backbone weights from the
``weights`` channel or an ImageNet download, freezing, parameter groups, warmup + cosine)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
from inference import build_model, find_head
from torch import nn


class ConfigError(Exception):
    """Bad hyperparameter or weights file: reported as one line, exit code 2."""



def find_weights_file(weights_dir: Path) -> Path | None:
    """The one .pth/.pt file of the weights channel, None when the job has no such channel."""
    if not weights_dir.is_dir():
        return None
    files = sorted(p for p in weights_dir.rglob("*") if p.suffix in (".pth", ".pt") and not p.name.startswith("."))
    if len(files) != 1:
        # A channel the user gave that holds no weights must not quietly become a random init.
        found = sorted(str(p.relative_to(weights_dir)) for p in weights_dir.rglob("*") if p.is_file())[:5]
        raise ConfigError(f"weights channel {weights_dir} holds {len(files)} .pth/.pt files (files: "
                          f"{', '.join(found) or 'none'}); give exactly one state dict")
    return files[0]


def backbone_state(state: dict, drop: tuple[str, ...]) -> OrderedDict:
    """``state`` without keys under ``drop`` and without a DataParallel ``module.`` prefix, keeping the per-module
    ``_metadata`` (versions) that some archs (mnasnet) refuse to load without."""
    metadata = getattr(state, "_metadata", None)
    kept = OrderedDict((k.removeprefix("module."), v) for k, v in state.items())
    kept = OrderedDict((k, v) for k, v in kept.items() if not k.startswith(drop))
    if metadata is not None:
        kept._metadata = OrderedDict(  # type: ignore[attr-defined]
            ("" if k == "module" else k.removeprefix("module."), v) for k, v in metadata.items()
        )
    return kept


def load_backbone_weights(model: nn.Module, path: Path) -> str:
    """Loads a state dict into everything but the (new) head; any other missing or unexpected key is an error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from exc
    for wrapper in ("state_dict", "model_state_dict", "model"):  # common checkpoint layouts
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ConfigError(f"weights file {path} is not a state dict (got {type(state).__name__})")
    head = find_head(model) + "."
    state = backbone_state(state, drop=(head, "AuxLogits.", "aux1.", "aux2."))  # + the aux heads build_model drops
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:600]  # one line: the job log and the failure reason
        raise ConfigError(f"weights file {path} does not fit this arch: {detail}") from exc
    missing = [k for k in missing if not k.startswith(head)]
    if missing or unexpected:
        raise ConfigError(
            f"weights file {path} does not match the arch: {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}"
        )
    return f"weights: loaded {len(state)} tensors from {path} (head {head[:-1]} newly initialised)"


def create_model(
    arch: str, num_classes: int, pretrained: bool, weights_dir: Path, freeze_backbone: bool
) -> tuple[nn.Module, str]:
    """The model to train and a log line saying where its weights came from."""
    weights_file = find_weights_file(weights_dir)
    pretrained = pretrained and weights_file is None  # a supplied file replaces the download
    try:
        model = build_model(arch, num_classes, pretrained=pretrained)
    except Exception as exc:
        if not pretrained:
            raise
        raise ConfigError(
            f"could not download ImageNet weights for {arch} ({type(exc).__name__}: {exc}). Without internet "
            f"access (network isolation, offline), pass a .pth state dict through the 'weights' channel (the "
            f"pipeline's [training] weights_url), or set pretrained=false to train from scratch"
        ) from exc
    message = f"weights: ImageNet ({arch}, torchvision)" if pretrained else "weights: random init"
    if weights_file is not None:
        message = load_backbone_weights(model, weights_file)
    if freeze_backbone:
        head = find_head(model) + "."
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.startswith(head)
    return model, message


def check_image_size(model: nn.Module, arch: str, image_size: int) -> None:
    """One forward pass before any data is touched: archs with a fixed or minimum input size (vit 224, inception 75)
    fail here with a clear message instead of mid-epoch with a shape traceback."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    except Exception as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ConfigError(f"arch {arch} cannot take image_size={image_size}: {type(exc).__name__}: {detail}") from exc
    finally:
        model.train(training)


def raise_bn_momentum(model: nn.Module, floor: float) -> int:
    """Lifts every BatchNorm momentum below ``floor`` to it; returns how many changed. Some archs ship momenta
    tuned for hundreds of epochs (mobilenet_v3 0.01, mnasnet 0.0003): in a run of a few epochs their running
    statistics never leave their initial values, and eval-mode accuracy stays at chance however well training goes.
    Momentum is not part of the state dict, so serving is unaffected."""
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.momentum is not None:
            if module.momentum < floor:
                module.momentum, changed = floor, changed + 1
    return changed


def create_optimizer(
    name: str, model: nn.Module, lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    # No weight decay on biases and norm parameters: decaying them only hurts.
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0},
    ]
    cls, options = {
        "sgd": (torch.optim.SGD, {"momentum": momentum, "nesterov": True}),
        "adamw": (torch.optim.AdamW, {}),
        "adam": (torch.optim.Adam, {}),
    }[name]
    try:  # the fused kernels: on CPU, Adam's step for resnet18 takes 7 ms instead of 59 (measured on 2 cores)
        return cls(groups, lr=lr, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):  # a device or dtype without fused kernels
        return cls(groups, lr=lr, **options)


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR multiplier per step: linear warmup, then cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
