"""frozen_features.py: a frozen backbone without augmentation runs once, and training is the same as running it every
step; where that would not hold, the backbone runs every step and the log says why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import frozen_features
import pytest
import torch
import torchvision
import train
from torch import nn

TRAIN_PY = Path(train.__file__)
FROZEN = ["--arch", "shufflenet_v2_x0_5", "--pretrained", "false", "--image_size", "16", "--batch_size", "32",
          "--lr", "0.01", "--epochs", "2", "--freeze_backbone", "true", "--min_crop_scale", "1",
          "--color_jitter", "0", "--hflip", "false"]


def run_job(base: Path, split_dir: Path, *extra: str) -> tuple[str, dict, list[dict]]:
    env = {"SAGEMAKER_BASE_DIR": str(base), "SM_CHANNEL_TRAIN": str(split_dir / "train"),
           "SM_CHANNEL_VALIDATION": str(split_dir / "validation"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(TRAIN_PY), *FROZEN, *extra], env=env, capture_output=True, text=True,
                          timeout=240, cwd=TRAIN_PY.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    state = torch.load(base / "model/model.pth", map_location="cpu", weights_only=True)
    return done.stdout, state, json.loads((base / "output/data/history.json").read_text())


def test_cached_features_train_the_same_model_as_running_the_backbone_every_step(tmp_path: Path,
                                                                                    split_dir: Path) -> None:
    cached_log, cached, cached_history = run_job(tmp_path / "cached", split_dir)
    stepped_log, stepped, stepped_history = run_job(tmp_path / "stepped", split_dir, "--cache_features", "false")
    assert "features: the frozen backbone ran once over 240 train / 60 validation images" in cached_log
    assert "features: the frozen backbone runs every step (cache_features=false)" in stepped_log
    assert cached.keys() == stepped.keys()
    for name in cached:
        assert torch.allclose(cached[name].float(), stepped[name].float(), atol=1e-5), name
    for mine, theirs in zip(cached_history, stepped_history, strict=True):
        for key in ("train_loss", "train_accuracy", "validation_loss", "validation_accuracy", "lr"):
            assert mine[key] == pytest.approx(theirs[key], abs=1e-5), key


def test_augmentation_keeps_the_backbone_running_every_step_and_says_which_setting(tmp_path: Path,
                                                                                   split_dir: Path) -> None:
    log, _, history = run_job(tmp_path / "job", split_dir, "--hflip", "true", "--color_jitter", "0.2",
                              "--epochs", "1")
    assert ("features: the frozen backbone runs every step (augmentation is on (hflip, color_jitter 0.2), so "
            "every epoch's inputs differ") in log
    assert len(history) == 1


def test_frozen_dropout_outside_the_head_is_refused_with_its_name() -> None:
    model = torchvision.models.mobilenet_v3_small(num_classes=3)  # classifier: Linear, Hardswish, Dropout, Linear
    assert frozen_features.stochastic_modules(model, "classifier.3") == ["classifier.2"]
    assert "classifier.2" in frozen_features.refusal(model, True, [])
    assert frozen_features.refusal(model, False, []) == "the backbone trains"
    resnet = torchvision.models.resnet18(num_classes=3)
    assert frozen_features.refusal(resnet, True, []) is None


def test_head_only_keeps_the_module_path_and_shares_parameters() -> None:
    model = torchvision.models.mobilenet_v3_small(num_classes=3)
    head = frozen_features.HeadOnly(model, "classifier.3")
    assert [name for name, _ in head.named_parameters()] == ["classifier.3.weight", "classifier.3.bias"]
    assert head.get_submodule("classifier.3") is model.classifier[3]
    features = torch.randn(2, 1024)
    assert torch.equal(head(features), model.classifier[3](features))


def test_an_arch_that_computes_after_its_head_keeps_the_backbone_running() -> None:
    class AfterHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.body(x).mean((2, 3))) * 2

    images = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    from data_cache import CachedSource, InputData

    data = InputData(["a", "b"], CachedSource(images, torch.tensor([0, 1, 0, 1])),
                     CachedSource(images, torch.tensor([0, 1, 0, 1])), True, 8, 0, 8)
    same, head, message = frozen_features.cache_features(AfterHead(), data, 8, 2, torch.device("cpu"), None,
                                                         torch.contiguous_format)
    assert same is data and head is None
    assert message == "features: the frozen backbone runs every step (the model's output is not its head fc's output)"


def test_the_debugger_hook_watches_the_head_with_the_names_of_a_full_model_run(tmp_path: Path,
                                                                               split_dir: Path) -> None:
    base = tmp_path / "job"
    config = base / "input/config/debughookconfig.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({
        "LocalPath": str(base / "output/tensors"), "HookParameters": {"save_interval": "1"},
        "CollectionConfigurations": [{"CollectionName": "losses"}, {"CollectionName": "gradients"}]}))
    log, _, _ = run_job(base, split_dir)
    assert "debugger: on" in log and "features: the frozen backbone ran once" in log

    from smdebug import modes
    from smdebug.trials import create_trial

    trial = create_trial(str(base / "output/tensors"))
    assert sorted(trial.tensor_names(collection="gradients")) == ["gradient/ShuffleNetV2_fc.bias",
                                                                   "gradient/ShuffleNetV2_fc.weight"]
    (loss,) = trial.tensor_names(collection="losses")
    assert len(trial.tensor(loss).steps(mode=modes.TRAIN)) == 2 * (240 // 32)  # one a step, both epochs
