"""What training leaves behind: the per-epoch log line the metric regexes read, the self-contained model dir, and
the history + curve in output data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from inference import IMAGENET_MEAN, IMAGENET_STD
from torch import nn

SERVING_REQUIREMENTS = (
    "# The SageMaker PyTorch inference image already has torch, torchvision, numpy and Pillow,\n"
    "# all that code/inference.py and code/rgb_conversion.py import: nothing to install.\n"
)
# The serving handler and the pixel conversion it shares with PrepareData: the toolkit puts code/ on sys.path.
SERVING_MODULES = ("inference.py", "rgb_conversion.py")



def model_meta(arch: str, image_size: int, classes: list[str]) -> dict[str, Any]:
    """model_meta.json, keys as in the container contract."""
    return {
        "arch": arch, "num_classes": len(classes), "class_names": list(classes),
        "image_size": image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "framework": "pytorch", "torch_version": torch.__version__.split("+")[0],
    }


def write_model_dir(model_dir: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """model.pth + model_meta.json + code/: model.tar.gz serves as it is, no repack job."""
    (model_dir / "code").mkdir(parents=True, exist_ok=True)
    state = model.state_dict()  # an OrderedDict whose _metadata (module versions) some archs need to load
    for key, value in state.items():
        state[key] = value.detach().cpu().contiguous()
    torch.save(state, model_dir / "model.pth")
    (model_dir / "model_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    for module in SERVING_MODULES:
        shutil.copyfile(Path(__file__).with_name(module), model_dir / "code" / module)
    (model_dir / "code" / "requirements.txt").write_text(SERVING_REQUIREMENTS)


def plot_curve(history: list[dict[str, Any]], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:  # a missing plot must not fail a finished training
        return f"training curve: skipped ({type(exc).__name__}: {exc})"
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "validation"):
        ax_loss.plot(epochs, [h[f"{split}_loss"] for h in history], marker="o", label=split)
        ax_acc.plot(epochs, [h[f"{split}_accuracy"] for h in history], marker="o", label=split)
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"training curve: {path}"


def write_outputs(output_dir: Path, history: list[dict[str, Any]]) -> str:
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    return plot_curve(history, output_dir / "training_curve.png")


def format_epoch_line(entry: dict[str, Any], epochs: int) -> str:
    """The contract's log line; ``%.4f`` prints a non-finite loss as ``nan``/``inf``, which the regexes accept."""
    return (
        f"epoch={entry['epoch']}/{epochs} train_loss={entry['train_loss']:.4f} "
        f"train_accuracy={entry['train_accuracy']:.4f} validation_loss={entry['validation_loss']:.4f} "
        f"validation_accuracy={entry['validation_accuracy']:.4f} lr={entry['lr']:.6g} "
        f"epoch_seconds={entry['epoch_seconds']:.1f}"
    )
