"""Frozen-backbone transfer learning without running the backbone every step.

With ``freeze_backbone`` the backbone's weights never change, its BatchNorm layers run in eval mode (train.py), and
when augmentation is off every epoch feeds it the same pixels: its output for an image is the same number every
epoch. So it runs once, over the training and validation images, and the head trains on what it produced. This is
the same training, not an approximation: the head sees the same inputs in the same order (the shuffle is drawn from
the same generator), so the weights agree with a per-step run up to float rounding (tests/scripts check it).

It is refused, with the reason logged, where the equivalence would not hold: augmentation on (every epoch's pixels
differ), a frozen Dropout / StochasticDepth with p > 0 outside the head (random in training mode), or an arch whose
output is not its head's output (checked on the first batch).
"""

from __future__ import annotations

import time

import torch
from data_cache import CachedSource, InputData, LazySource, augment
from inference import find_head, normalize
from torch import nn

# Modules whose training-mode output is random: a frozen one outside the head would make cached features differ.
STOCHASTIC_TYPES = ("StochasticDepth",)


class HeadOnly(nn.Module):
    """The model's head alone, under the same module path (``fc``, ``classifier.1``). Shares its parameters with
    the model. Build it with ``for_model``, so that what the Debugger hook saves is named as in a full-model run."""

    @classmethod
    def for_model(cls, model: nn.Module, head_name: str) -> HeadOnly:
        # smdebug prefixes tensor names with the registered module's class name (ShuffleNetV2_fc.weight): a
        # subclass named after the model's class keeps the names, and so the rules' regexes, what they were.
        named = type(type(model).__name__, (cls,), {"__module__": cls.__module__})
        return named(model, head_name)

    def __init__(self, model: nn.Module, head_name: str) -> None:
        super().__init__()
        self.head_name = head_name
        parent: nn.Module = self
        *outer, last = head_name.split(".")
        for part in outer:
            child = nn.Module()
            parent.add_module(part, child)
            parent = child
        parent.add_module(last, model.get_submodule(head_name))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.get_submodule(self.head_name)(features)


def augmentation_in_use(min_crop_scale: float, hflip: bool, color_jitter: float) -> list[str]:
    """The augmentation settings that change a training image from one epoch to the next."""
    active = [f"min_crop_scale {min_crop_scale:g}"] if min_crop_scale < 1 else []
    active += ["hflip"] if hflip else []
    return active + ([f"color_jitter {color_jitter:g}"] if color_jitter > 0 else [])


def stochastic_modules(model: nn.Module, head_name: str) -> list[str]:
    """Names of the modules outside the head that are random in training mode (Dropout, StochasticDepth, p > 0)."""
    found = []
    for name, module in model.named_modules():
        if name == head_name or name.startswith(head_name + "."):
            continue
        random = isinstance(module, nn.modules.dropout._DropoutNd) or type(module).__name__ in STOCHASTIC_TYPES
        if random and getattr(module, "p", 0) > 0:
            found.append(name)
    return found


def refusal(model: nn.Module, freeze_backbone: bool, augmentation: list[str]) -> str | None:
    """Why the backbone cannot run once for the whole job; None when it can."""
    if not freeze_backbone:
        return "the backbone trains"
    if augmentation:
        return (f"augmentation is on ({', '.join(augmentation)}), so every epoch's inputs differ; with "
                "min_crop_scale=1, hflip=false, color_jitter=0 the backbone runs once")
    head = find_head(model)
    random = stochastic_modules(model, head)
    if random:
        return f"frozen layers outside the head {head} are random in training mode ({', '.join(random[:3])})"
    return None


def _features_of(model: nn.Module, head: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the head's input, the model's output) for one batch, from one forward pass."""
    captured: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        logits = model(inputs)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ValueError(f"the head ran {len(captured)} times in one forward pass")
    return captured[0], logits


def compute_features(model: nn.Module, head_name: str, source: CachedSource | LazySource, image_size: int,
                     batch_size: int, device: torch.device, amp_dtype: torch.dtype | None,
                     memory_format: torch.memory_format, train: bool) -> CachedSource:
    """The head's inputs for every image of ``source``, in order, with their labels, on ``device``. Training
    images go through the same (now deterministic) augment() a per-step run applies; validation images as they are.
    Raises ValueError when the model's output is not its head's output on these features."""
    head = model.get_submodule(head_name)
    features, labels, checked = [], [], False
    generator = torch.Generator()  # augment draws from it; with augmentation off its draws change nothing
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            for images, batch_labels in source.batches(batch_size, None, drop_last=False):
                images = images.to(device, non_blocking=True)
                inputs = augment(images, image_size, generator, 1.0, False, 0.0) if train else images
                inputs = normalize(inputs).contiguous(memory_format=memory_format)
                batch_features, logits = _features_of(model, head, inputs)
                if not checked:
                    if not torch.allclose(head(batch_features).float(), logits.float(), rtol=1e-3, atol=1e-4):
                        raise ValueError(f"the model's output is not its head {head_name}'s output")
                    checked = True
                features.append(batch_features.float())
                labels.append(batch_labels.to(device))
    finally:
        model.train(was_training)
    return CachedSource(torch.cat(features), torch.cat(labels))


def cache_features(model: nn.Module, data: InputData, image_size: int, batch_size: int, device: torch.device,
                   amp_dtype: torch.dtype | None, memory_format: torch.memory_format,
                   ) -> tuple[InputData, nn.Module | None, str]:
    """``data`` with both splits replaced by the backbone's outputs and the module to train on them (the head), or
    ``data`` unchanged and None when the equivalence check fails; and a log line saying which."""
    head_name = find_head(model)
    started = time.perf_counter()
    try:
        train = compute_features(model, head_name, data.train, image_size, batch_size, device, amp_dtype,
                                 memory_format, train=True)
        validation = compute_features(model, head_name, data.validation, image_size, batch_size, device,
                                      amp_dtype, memory_format, train=False)
    except ValueError as exc:
        return data, None, f"features: the frozen backbone runs every step ({exc})"
    cached = InputData(data.classes, train, validation, data.cached, data.train_side, data.skipped, image_size,
                       features=True)
    seconds = time.perf_counter() - started
    return cached, HeadOnly.for_model(model, head_name), (
        f"features: the frozen backbone ran once over {len(train)} train / {len(validation)} validation images "
        f"({seconds:.1f} s); the head {head_name} trains on its {train.images.shape[1]}-d outputs every epoch")
