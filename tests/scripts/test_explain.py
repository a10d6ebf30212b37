"""explain.py (ExplainModel) end to end on a real artifact, and its pieces: sampling, confused pairs, bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import evaluate
import explain
import numpy as np
import pytest
import torch
from PIL import Image

SCRIPT = Path(explain.__file__).resolve()
ARCH = "resnet18"  # torchvision's resnets are what users fine-tune; its blocks are Grad-CAM's layers
IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory: pytest.TempPathFactory, small_digits_dir: Path) -> dict[str, Path]:
    """A model dir as train.py writes it (untrained: these tests check the plumbing), a test split of 4 images a
    class, EvaluateModel's real output on it and a manifest as PrepareData writes it."""
    from artifacts import model_meta, write_model_dir
    from inference import build_model

    root = tmp_path_factory.mktemp("explain")
    classes = sorted(p.name for p in small_digits_dir.iterdir() if p.is_dir())
    torch.manual_seed(0)
    write_model_dir(root / "model", build_model(ARCH, len(classes)), model_meta(ARCH, IMAGE_SIZE, classes))
    for name in classes:
        (root / "test" / name).mkdir(parents=True)
        for path in sorted((small_digits_dir / name).glob("*.png"))[:4]:
            (root / "test" / name / path.name).write_bytes(path.read_bytes())
    evaluate.evaluate(root / "model", root / "test", root / "evaluation")
    counts = {"train": {name: 20 for name in classes}, "validation": {name: 4 for name in classes},
              "test": {name: 4 for name in classes}}
    (root / "manifest").mkdir()
    (root / "manifest" / "manifest.json").write_text(json.dumps({"classes": classes, "counts": counts}))
    return {name: root / name for name in ("model", "test", "evaluation", "manifest")}


def run_main(run_dirs: dict[str, Path], out: Path, *extra: str) -> int:
    return explain.main(["--model-dir", str(run_dirs["model"]), "--test-dir", str(run_dirs["test"]),
                         "--evaluation-dir", str(run_dirs["evaluation"]), "--manifest-dir", str(run_dirs["manifest"]),
                         "--output-dir", str(out / "explainability"), "--bias-dir", str(out / "bias"), *extra])


@pytest.mark.parametrize("method", explain.METHODS)
def test_every_method_writes_an_overlay_per_explained_image(
        method: str, run_dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_main(run_dirs, tmp_path, "--method", method, "--samples-per-class", "1", "--top-loss", "2") == 0
    report = json.loads((tmp_path / "explainability" / "explainability.json").read_text())
    classes = json.loads((run_dirs["evaluation"] / "predictions.json").read_text())["class_names"]
    assert report["method"] == method
    assert [s["class_name"] for s in report["samples"]] == classes  # one of every class
    assert len(report["top_loss"]) == 2
    shown = report["samples"] + report["top_loss"] + [e for p in report["most_confused_pairs"] for e in p["examples"]]
    for entry in shown:
        with Image.open(tmp_path / "explainability" / entry["overlay"]) as png:
            # two 128-px panels (the 32-px input scaled up) over a caption line
            assert png.format == "PNG" and png.size == (256, 128 + 16)
        assert entry["focus_area"] is None or 0 < entry["focus_area"] <= 1
    # the digits have a uniform black border: the object is judged and the share is a fraction
    judged = [s["object_share"] for s in report["samples"] if s["object_share"] is not None]
    assert judged and all(0 <= share <= 1 for share in judged)
    if method == "gradcam":
        assert report["method_detail"]["layer"] == "layer1"  # 8x8 at 32 px; layer2 is 4x4, under MIN_CAM_SIDE
    assert "bias: " in capsys.readouterr().out


def test_the_bias_report_is_clarify_shaped_and_names_the_cut_class(
        run_dirs: dict[str, Path], tmp_path: Path) -> None:
    manifest = json.loads((run_dirs["manifest"] / "manifest.json").read_text())
    cut_class = manifest["classes"][6]  # "6-six"
    manifest["counts"]["train"][cut_class] = 2  # one class cut to a tenth
    cut = dict(run_dirs, manifest=tmp_path / "manifest")
    cut["manifest"].mkdir()
    (cut["manifest"] / "manifest.json").write_text(json.dumps(manifest))
    assert run_main(cut, tmp_path, "--samples-per-class", "1", "--top-loss", "0") == 0
    bias = json.loads((tmp_path / "bias" / "bias.json").read_text())
    entries = bias["pre_training_bias_metrics"]["facets"]["class"]
    assert [e["value_or_threshold"] for e in entries] == manifest["classes"]
    ci = {e["value_or_threshold"]: e["metrics"][0] for e in entries}
    assert ci[cut_class]["name"] == "CI" and ci[cut_class]["value"] == pytest.approx((182 - 4) / 182)
    assert ci[manifest["classes"][0]]["value"] == pytest.approx((182 - 40) / 182)
    assert bias["summary"].startswith(f"class {cut_class} has 1.1% of the training images (an even split gives "
                                      "10.0%)")
    rd = bias["post_training_bias_metrics"]["facets"]["class"][0]["metrics"][0]
    assert rd["name"] == "RD" and isinstance(rd["value"], float)


def test_sampling_is_spread_and_stable() -> None:
    images = [{"image": f"a/{i:02d}.png", "label": "a"} for i in range(9)] + [{"image": "b/0.png", "label": "b"}]
    chosen = explain.sample_per_class(images, ["a", "b", "c"], 3)
    assert [r["image"] for r in chosen] == ["a/00.png", "a/04.png", "a/08.png", "b/0.png"]  # c has none


def test_confused_pairs_rank_by_count_and_show_the_most_confident_mistakes() -> None:
    def rec(image: str, label: str, predicted: str, p: float) -> dict:
        return {"image": image, "label": label, "predicted": predicted, "probability": p}

    images = [rec("a/1", "a", "b", 0.6), rec("a/2", "a", "b", 0.9), rec("a/3", "a", "b", 0.7), rec("a/4", "a", "a", 1),
              rec("b/1", "b", "a", 0.8), rec("b/2", "b", "b", 0.9)]
    pairs = explain.confused_pairs(images)
    assert [(p["actual"], p["predicted"], p["count"]) for p in pairs] == [("a", "b", 3), ("b", "a", 1)]
    assert pairs[0]["share_of_actual"] == 0.75
    assert [e["image"] for e in pairs[0]["examples"]] == ["a/2", "a/3"]


def test_inputs_from_different_runs_are_refused(run_dirs: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    other = tmp_path / "evaluation"
    other.mkdir()
    predictions = json.loads((run_dirs["evaluation"] / "predictions.json").read_text())
    predictions["class_names"] = ["x", *predictions["class_names"][1:]]
    (other / "predictions.json").write_text(json.dumps(predictions))
    (other / "evaluation.json").write_text((run_dirs["evaluation"] / "evaluation.json").read_text())
    assert run_main(dict(run_dirs, evaluation=other), tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("explain.py: error: the model's classes [") and "inputs from different runs" in err
    assert err.count("\n") == 1 and not (tmp_path / "bias").exists()  # nothing half-written


def test_a_missing_evaluation_is_one_line_naming_the_file(run_dirs: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    assert run_main(dict(run_dirs, evaluation=tmp_path / "nowhere"), tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"explain.py: error: cannot read EvaluateModel's report {tmp_path / 'nowhere'}")


def test_without_captum_and_no_network_it_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "captum", None)  # import fails as it does in SageMaker's image
    monkeypatch.setattr(explain.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 1, "", "ERROR: Could not find a version that satisfies the requirement captum==0.9.0"))
    with pytest.raises(explain.ExplainError) as caught:
        explain.ensure_captum()
    assert str(caught.value).startswith("captum is not installed and `pip install captum==0.9.0` failed (ERROR: "
                                        "Could not find a version")
    assert "[explain] enabled = false" in str(caught.value)


@pytest.mark.parametrize("argv, message", [
    (["--samples-per-class", "0"], "--samples-per-class must be at least 1, got 0"),
    (["--top-loss", "-1"], "--top-loss must be 0 or more, got -1"),
    (["--method", "shap"], "argument --method: invalid choice: 'shap'"),
])
def test_bad_arguments_exit_2_naming_the_flag(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as caught:
        explain.parse_args(argv)
    assert caught.value.code == 2 and message in capsys.readouterr().err


def test_the_script_alone_finds_the_modules_the_definition_ships(run_dirs: dict[str, Path], tmp_path: Path) -> None:
    """As in a SageMaker processing job: explain.py alone in its code folder, each module where its input puts it."""
    from steps.containers import MODULES_ROOT
    from steps.explain import EXPLAIN_MODULES

    base = tmp_path / "opt-ml"
    code = tmp_path / "code" / "explain.py"
    code.parent.mkdir()
    code.write_bytes(SCRIPT.read_bytes())
    for module in EXPLAIN_MODULES:
        destination = Path(f"{MODULES_ROOT}/{module}".replace("/opt/ml", str(base), 1))
        destination.mkdir(parents=True)
        (destination / f"{module}.py").write_bytes((SCRIPT.parent / f"{module}.py").read_bytes())
    for name, path in run_dirs.items():
        (base / "processing" / name).symlink_to(path, target_is_directory=True)
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, str(code), "--samples-per-class", "1"], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((base / "processing" / "bias" / "bias.json").read_text())["version"] == "1.0"
    assert np.isfinite(json.loads((base / "processing" / "explainability" / "explainability.json").read_text())
                       ["seconds"])


def test_the_config_offers_exactly_the_methods_the_script_takes() -> None:
    from pipelines.config import EXPLAIN_METHODS

    assert EXPLAIN_METHODS == explain.METHODS


def test_an_overlay_keeps_a_png_name_and_never_shares_one_with_a_same_stem_jpeg() -> None:
    assert explain.overlay_name("cat/a.png") == "overlays/cat/a.png"
    assert explain.overlay_name("cat/a.jpg") == "overlays/cat/a.jpg.png"
    assert len({explain.overlay_name(name) for name in ("a.png", "a.jpg", "a.jpeg", "a.PNG")}) == 4


def test_the_report_reads_every_overlay_and_the_verdict_explain_py_writes(run_dirs: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    from pipelines.report.collect_explain import explanation_section

    assert run_main(run_dirs, tmp_path) == 0
    root = tmp_path / "explainability"
    section = explanation_section(json.loads((root / "explainability.json").read_text()),
                                  json.loads((tmp_path / "bias" / "bias.json").read_text()),
                                  lambda overlay: (root / overlay).read_bytes(), ("explainability.json", "bias.json"))
    classes = sorted(p.name for p in run_dirs["test"].iterdir())
    assert sorted({s.class_name for s in section.samples}) == classes
    explained = [*section.samples, *section.top_loss, *(e for pair in section.confused for e in pair.examples)]
    assert explained and all(e.overlay and e.overlay.startswith(b"\x89PNG") for e in explained)
    assert section.verdict and section.class_counts["train"] == {name: 20 for name in classes}
    assert [c.name for c in section.per_class] == classes and section.missing == {}
