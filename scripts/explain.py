"""ExplainModel processing job: why the model says what it says, and whether the data was fit to learn from.

Inputs (each relocatable with SAGEMAKER_BASE_DIR, like every job): the model artifact, the test split,
EvaluateModel's output (evaluation.json, predictions.json) and PrepareData's manifest. Writes

- ``explainability/explainability.json`` and ``explainability/overlays/*.png``: attribution maps from Captum for a
  sample of test images per class, the most-confused pairs with examples and the top-loss test images, each map
  explaining the class the model predicted;
- ``bias/bias.json``: class balance per split and per-class recall gaps in SageMaker Clarify's analysis.json layout
  (scripts/bias_report.py), with a plain-words verdict.

Methods (``--method``), measured on this project's CPU (2 cores, ms per image, resnet18 at 64 px / resnet50 at 224):
``gradcam`` (LayerGradCam on the deepest block whose map is still at least 7 px wide) 4 / 65, ``integrated_gradients``
(32 steps) 178 / 5,516, ``occlusion`` (an eighth of the side, half-window strides) 725 / 12,598. Grad-CAM is the
default: a whole-object map in one backward pass.

Captum ships with the local engine; SageMaker's PyTorch image lacks it, so the job installs the pinned version from
PyPI first and says so (a network-isolated job fails with that reason). Bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODULES_DIR = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")) / "processing" / "input" / "modules"
sys.path[:0] = [str(Path(__file__).resolve().parent),
                *(str(folder) for folder in sorted(MODULES_DIR.glob("*")) if folder.is_dir())]
from bias_report import build_bias_report  # noqa: E402
from model_loading import EvalModel, ModelInputError, load_model, resolve_model_dir  # noqa: E402
from overlays import focus_area, normalise, object_mask, object_share, overlay_png, unnormalise  # noqa: E402

METHODS = ("gradcam", "integrated_gradients", "occlusion")
CAPTUM_REQUIREMENT = "captum==0.9.0"
MIN_CAM_SIDE = 7  # Grad-CAM's map is as coarse as its layer: below 7x7 it says little more than "the middle"
IG_STEPS = 32
BATCH = 16
MAX_CONFUSED_PAIRS = 5
EXAMPLES_PER_PAIR = 2
TOP_LOSS = 6


class ExplainError(ModelInputError):
    """Bad input: one line on stderr, exit 2."""


def log(message: str) -> None:
    print(message, flush=True)


def ensure_captum() -> None:
    try:
        import captum  # noqa: F401
    except ImportError:
        log(f"captum is not in this image: installing {CAPTUM_REQUIREMENT} from PyPI")
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", CAPTUM_REQUIREMENT],
                              capture_output=True, text=True)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ExplainError(f"captum is not installed and `pip install {CAPTUM_REQUIREMENT}` failed ({last}); "
                               "use an image with captum, allow the job network access, or set [explain] "
                               "enabled = false") from None


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExplainError(f"cannot read {what} {path}: {type(exc).__name__}: {exc}") from exc


def sample_per_class(images: Sequence[dict], class_names: Sequence[str], per_class: int) -> list[dict]:
    """`per_class` scored images of each class, spread evenly over its sorted files (the same on every run)."""
    chosen = []
    for name in class_names:
        own = sorted((r for r in images if r["label"] == name), key=lambda r: r["image"])
        if own:
            picks = np.linspace(0, len(own) - 1, num=min(per_class, len(own))).round().astype(int)
            chosen += [own[i] for i in sorted(set(picks.tolist()))]
    return chosen


def confused_pairs(images: Sequence[dict], limit: int = MAX_CONFUSED_PAIRS) -> list[dict]:
    """The (actual, predicted) pairs the model gets wrong most often, with their most confident mistakes."""
    pairs: dict[tuple[str, str], list[dict]] = {}
    for record in images:
        if record["label"] != record["predicted"]:
            pairs.setdefault((record["label"], record["predicted"]), []).append(record)
    totals = {name: sum(1 for r in images if r["label"] == name) for name in {r["label"] for r in images}}
    ranked = sorted(pairs.items(), key=lambda item: (-len(item[1]), item[0]))[:limit]
    return [{"actual": actual, "predicted": predicted, "count": len(mistakes),
             "share_of_actual": len(mistakes) / totals[actual],
             "examples": sorted(mistakes, key=lambda r: -r["probability"])[:EXAMPLES_PER_PAIR]}
            for (actual, predicted), mistakes in ranked]


def cam_layer(net: Any, example: Any) -> tuple[str, Any]:
    """The deepest module (in the order forward finishes them) with a 4-D output at least MIN_CAM_SIDE wide."""
    import torch

    seen: list[tuple[str, Any, int]] = []
    hooks = [module.register_forward_hook(
        lambda mod, _inputs, output, name=name: seen.append((name, mod, min(output.shape[-2:])))
        if isinstance(output, torch.Tensor) and output.dim() == 4 else None)
        for name, module in net.named_modules() if name]
    try:
        with torch.no_grad():
            net(example)
    finally:
        for hook in hooks:
            hook.remove()
    wide = [(name, module) for name, module, side in seen if side >= MIN_CAM_SIDE] or \
        [(name, module) for name, module, _ in seen[:1]]
    if not wide:
        raise ExplainError("the model has no module with a 4-D (N, C, H, W) output: Grad-CAM needs a conv layer; "
                           "use method = \"integrated_gradients\" or \"occlusion\"")
    return wide[-1]


class Attributor:
    """One Captum method bound to the model: ``maps(batch, targets)`` -> ``N x H x W`` non-negative numpy maps."""

    def __init__(self, net: Any, method: str, example: Any) -> None:
        from captum.attr import IntegratedGradients, LayerGradCam, Occlusion

        self.method, self.detail = method, {}
        if method == "gradcam":
            self.layer_name, layer = cam_layer(net, example)
            self.engine: Any = LayerGradCam(net, layer)
            self.detail = {"layer": self.layer_name}
        elif method == "integrated_gradients":
            self.engine, self.detail = IntegratedGradients(net), {"steps": IG_STEPS, "baseline": "zeros"}
        else:
            side = max(1, min(example.shape[-2:]) // 8)
            self.window, self.stride = (example.shape[1], side, side), (example.shape[1], max(1, side // 2),
                                                                         max(1, side // 2))
            self.engine, self.detail = Occlusion(net), {"window": side, "stride": self.stride[1]}

    def maps(self, batch: Any, targets: list[int]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        batch = batch.clone().requires_grad_(True)
        with torch.enable_grad():
            if self.method == "gradcam":
                cam = self.engine.attribute(batch, target=targets, relu_attributions=True)
                cam = F.interpolate(cam, size=batch.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            elif self.method == "integrated_gradients":
                cam = self.engine.attribute(batch, target=targets, n_steps=IG_STEPS,
                                            internal_batch_size=BATCH).abs().sum(dim=1)
            else:
                cam = self.engine.attribute(batch, target=targets, sliding_window_shapes=self.window,
                                            strides=self.stride, baselines=0.0).sum(dim=1)
        return cam.detach().float().cpu().numpy()


def model_device(net: Any) -> Any:
    """Where the network's weights are (its inputs go there too); the CPU for a network without parameters."""
    import torch

    param = next(iter(net.parameters()), None) if hasattr(net, "parameters") else None
    return param.device if param is not None else torch.device("cpu")


def seen_picture(model: EvalModel, tensor_chw: np.ndarray) -> np.ndarray:
    """One model input as the ``HxWx3`` 0..1 picture the model saw: its meta's normalisation undone."""
    return unnormalise(tensor_chw, model.meta.get("mean", [0.0] * 3), model.meta.get("std", [1.0] * 3))


def overlay_name(image: str) -> str:
    """Where an image's overlay goes: a.png keeps its name, a.jpg becomes a.jpg.png, so the two never share one."""
    return f"overlays/{image}" if image.lower().endswith(".png") else f"overlays/{image}.png"


def explain_images(model: EvalModel, records: Sequence[dict], test_dir: Path, method: str,
                   overlay_dir: Path) -> tuple[dict[str, dict], dict]:
    """Attribution for each record's predicted class: what each image's map says, by image path, and the method's
    settings as used (Grad-CAM's layer, the occlusion window)."""
    import torch

    device = model_device(model.net)
    index = {name: i for i, name in enumerate(model.class_names)}
    results: dict[str, dict] = {}
    attributor: Attributor | None = None
    for start in range(0, len(records), BATCH):
        chunk = records[start:start + BATCH]
        batch = torch.stack([model.preprocess((test_dir / r["image"]).read_bytes()) for r in chunk]).to(device)
        attributor = attributor or Attributor(model.net, method, batch[:1])
        maps = attributor.maps(batch, [index[r["predicted"]] for r in chunk])
        for record, tensor, raw in zip(chunk, batch.detach().cpu().numpy(), maps, strict=True):
            picture, heat = seen_picture(model, tensor), normalise(raw)
            overlay = overlay_name(record["image"])
            (overlay_dir / overlay).parent.mkdir(parents=True, exist_ok=True)
            caption = f"{record['label']} -> {record['predicted']} {record['probability']:.2f}"
            overlay_png(picture, heat, caption).save(overlay_dir / overlay)
            mask = object_mask(picture)
            results[record["image"]] = {
                "image": record["image"], "class_name": record["label"], "predicted": record["predicted"],
                "probability": record["probability"], "loss": record["loss"], "overlay": overlay,
                "object_share": object_share(heat, mask), "object_area": float(mask.mean()) if mask is not None
                else None, "focus_area": focus_area(heat)}
    return results, (attributor.detail if attributor else {})


def per_class_summary(class_names: Sequence[str], explained: Sequence[dict]) -> list[dict]:
    rows = []
    for name in class_names:
        own = [e for e in explained if e["class_name"] == name]
        judged = [e["object_share"] for e in own if e["object_share"] is not None]
        focus = [e["focus_area"] for e in own if e["focus_area"] is not None]
        rows.append({"class_name": name, "images": len(own), "judged": len(judged),
                     "mean_object_share": float(np.mean(judged)) if judged else None,
                     "mean_object_area": float(np.mean([e["object_area"] for e in own if e["object_area"]
                                                        is not None])) if judged else None,
                     "mean_focus_area": float(np.mean(focus)) if focus else None})
    return rows


def explain(args: argparse.Namespace) -> tuple[dict, dict]:
    started = time.perf_counter()
    evaluation = read_json(args.evaluation_dir / "evaluation.json", "EvaluateModel's report")
    predictions = read_json(args.evaluation_dir / "predictions.json", "EvaluateModel's predictions")
    manifest = read_json(args.manifest_dir / "manifest.json", "PrepareData's manifest")
    images = predictions["images"]
    if not images:
        raise ExplainError(f"{args.evaluation_dir / 'predictions.json'} lists no scored test images")
    samples = sample_per_class(images, predictions["class_names"], args.samples_per_class)
    pairs = confused_pairs(images)
    top_loss = sorted(images, key=lambda r: (-r["loss"], r["image"]))[:args.top_loss]
    wanted = {r["image"]: r for r in [*samples, *(e for p in pairs for e in p["examples"]), *top_loss]}
    with tempfile.TemporaryDirectory(prefix="explain-model-") as work:
        model = load_model(resolve_model_dir(args.model_dir, Path(work)))
        if model.class_names != predictions["class_names"]:
            raise ExplainError(f"the model's classes {model.class_names} are not the ones EvaluateModel scored "
                               f"({predictions['class_names']}): inputs from different runs")
        log(f"explaining {len(wanted)} test images with {args.method} "
            f"({len(samples)} samples, {len(pairs)} confused pairs, {len(top_loss)} top-loss)")
        explained, detail = explain_images(model, list(wanted.values()), args.test_dir, args.method,
                                           args.output_dir)
    class_names = model.class_names
    report = {
        "version": "1.0", "method": args.method, "method_detail": detail, "target": "predicted class",
        "samples": [explained[r["image"]] for r in samples],
        "per_class": per_class_summary(class_names, [explained[r["image"]] for r in samples]),
        "most_confused_pairs": [{**{k: v for k, v in p.items() if k != "examples"},
                                 "examples": [explained[e["image"]] for e in p["examples"]]} for p in pairs],
        "top_loss": [explained[r["image"]] for r in top_loss],
        "object_share_note": "share of the attribution on the object, judged only where the image border is a "
                             "uniform background and what differs from it is one piece; null: not judged",
        "seconds": round(time.perf_counter() - started, 3),
    }
    bias = build_bias_report(class_names, manifest["counts"], evaluation["extended_metrics"]["per_class"])
    return report, bias


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    processing = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")) / "processing"
    parser = argparse.ArgumentParser(description="Attribution maps and bias metrics for the trained model.")
    parser.add_argument("--model-dir", type=Path, default=processing / "model")
    parser.add_argument("--test-dir", type=Path, default=processing / "test")
    parser.add_argument("--evaluation-dir", type=Path, default=processing / "evaluation")
    parser.add_argument("--manifest-dir", type=Path, default=processing / "manifest")
    parser.add_argument("--output-dir", type=Path, default=processing / "explainability")
    parser.add_argument("--bias-dir", type=Path, default=processing / "bias")
    parser.add_argument("--samples-per-class", type=int, default=2)
    parser.add_argument("--top-loss", type=int, default=TOP_LOSS)
    parser.add_argument("--method", choices=METHODS, default="gradcam")
    args = parser.parse_args(argv)
    if args.samples_per_class < 1:
        parser.error(f"--samples-per-class must be at least 1, got {args.samples_per_class}")
    if args.top_loss < 0:
        parser.error(f"--top-loss must be 0 or more, got {args.top_loss}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        ensure_captum()
        report, bias = explain(args)
    except ModelInputError as exc:
        print("explain.py: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    args.output_dir.mkdir(parents=True, exist_ok=True)
    args.bias_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "explainability.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    (args.bias_dir / "bias.json").write_text(json.dumps(bias, indent=2, allow_nan=False) + "\n")
    log(f"bias: {bias['summary']}")
    for finding in bias["findings"][1:]:
        log(f"bias: {finding['text']}")
    log(f"explained {len(report['samples'])} samples in {report['seconds']:.1f} s; wrote "
        f"{args.output_dir / 'explainability.json'} and {args.bias_dir / 'bias.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
