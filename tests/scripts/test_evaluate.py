"""EvaluateModel: metrics, the evaluation.json contract, safe artifact handling and the script end to end.

The model artifacts here are real but tiny: a torch module that classifies solid-gray images by brightness, saved as
a state dict with a minimal ``code/inference.py`` written by the test, so each prediction is known in advance.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import evaluate
import numpy as np
import pytest
from evaluate import EvaluationError
from PIL import Image

SCRIPT = Path(evaluate.__file__).resolve()

FAKE_HANDLER = '''
import io, json, os
import numpy as np
import torch
from PIL import Image

RETURN_STYLE = {style!r}

class BrightnessNet(torch.nn.Module):
    """Class i wins when the image's mean brightness is nearest i / (classes - 1)."""
    def __init__(self, num_classes):
        super().__init__()
        self.centers = torch.nn.Parameter(torch.zeros(num_classes))
    def forward(self, x):
        return -(x.mean(dim=(1, 2, 3)).unsqueeze(1) - self.centers).abs() * 50

class Loaded:
    def __init__(self, model, meta):
        self.model, self.meta = model, meta

def model_fn(model_dir):
    with open(os.path.join(model_dir, "model_meta.json")) as f:
        meta = json.load(f)
    net = BrightnessNet(meta["num_classes"])
    net.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), weights_only=True))
    if RETURN_STYLE == "dict":
        return {{"model": net, "meta": meta}}
    if RETURN_STYLE == "object":
        return Loaded(net, meta)
    return net  # bare module: evaluate.py falls back to model_meta.json
'''

INPUT_FN = '''
def input_fn(body, content_type):
    if content_type != "application/x-image":
        raise ValueError("unsupported " + content_type)
    image = Image.open(io.BytesIO(body)).convert("L").resize((8, 8))
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None, None]
'''


def class_list(n: int) -> list[str]:
    return [f"c{i:03d}" for i in range(n)]


def make_model_dir(root: Path, class_names: list[str], style: str = "dict", with_input_fn: bool = True) -> Path:
    import torch

    (root / "code").mkdir(parents=True)
    n = len(class_names)
    torch.save({"centers": torch.linspace(0, 1, n)}, root / "model.pth")
    meta = {"arch": "brightness", "num_classes": n, "class_names": class_names, "image_size": 8,
            "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "framework": "pytorch"}
    (root / "model_meta.json").write_text(json.dumps(meta))
    (root / "code" / "inference.py").write_text(FAKE_HANDLER.format(style=style) + (INPUT_FN if with_input_fn else ""))
    return root


def make_archive(model_dir: Path, archive: Path) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False)
    return archive


def gray_png(path: Path, level: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), int(round(255 * level))).save(path)


def make_test_dir(root: Path, counts: dict[str, int], n_classes: int) -> Path:
    """Each class's images have that class's brightness, so the fake model gets them all right."""
    for name, count in counts.items():
        index = int(name[1:])
        for k in range(count):
            gray_png(root / name / f"{k}.png", index / (n_classes - 1))
    return root


def run_main(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    rc = evaluate.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------- metrics on hand-computed cases


def test_confusion_matrix_rows_are_actual_columns_predicted() -> None:
    matrix = evaluate.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_perfect_predictions_score_one_everywhere() -> None:
    y = np.array([0, 1, 2, 2, 1, 0])
    assert evaluate.summary_metrics(y, y, 3) == pytest.approx(
        {k: 1.0 for k in ("accuracy", "weighted_recall", "weighted_precision", "weighted_f0_5", "weighted_f1",
                          "weighted_f2")})


def test_all_wrong_predictions_score_zero_without_division_errors() -> None:
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])
    assert set(evaluate.summary_metrics(y_true, y_pred, 3).values()) == {0.0}
    scores = evaluate.per_class_scores(evaluate.confusion_matrix(y_true, y_pred, 3))
    assert scores["fbeta"].tolist() == [0.0, 0.0, 0.0] and scores["support"].tolist() == [2, 2, 0]


def test_imbalanced_case_matches_hand_computation() -> None:
    # class 0: 4 actual, 3 right, 1 -> class 1; class 1: 2 actual, 1 right, 1 -> class 2; class 2: 1 actual, right.
    y_true = np.array([0, 0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 2, 2])
    scores = evaluate.per_class_scores(evaluate.confusion_matrix(y_true, y_pred, 3))
    assert scores["precision"] == pytest.approx([1.0, 0.5, 0.5])
    assert scores["recall"] == pytest.approx([0.75, 0.5, 1.0])
    assert scores["fbeta"] == pytest.approx([6 / 7, 0.5, 2 / 3])
    summary = evaluate.summary_metrics(y_true, y_pred, 3)
    assert summary["accuracy"] == pytest.approx(5 / 7)
    assert summary["weighted_precision"] == pytest.approx((4 * 1.0 + 2 * 0.5 + 1 * 0.5) / 7)
    assert summary["weighted_f1"] == pytest.approx((4 * 6 / 7 + 2 * 0.5 + 2 / 3) / 7)
    f2 = evaluate.per_class_scores(evaluate.confusion_matrix(y_true, y_pred, 3), beta=2.0)["fbeta"]
    assert f2[0] == pytest.approx(5 * 1.0 * 0.75 / (4 * 1.0 + 0.75))


def test_weighted_metrics_reproduce_the_model_monitor_documentation_example() -> None:
    # The multiclass example in SageMaker's "Model quality metrics" documentation: confusion matrix and values.
    counts = {(0, 0): 1180, (0, 1): 510, (1, 0): 268, (1, 1): 138}
    y_true = np.repeat([a for a, _ in counts], list(counts.values()))
    y_pred = np.repeat([p for _, p in counts], list(counts.values()))
    assert evaluate.summary_metrics(y_true, y_pred, 2) == pytest.approx({
        "accuracy": 0.6288167938931297, "weighted_recall": 0.6288167938931297,
        "weighted_precision": 0.6983172269629505, "weighted_f0_5": 0.6803947317178771,
        "weighted_f1": 0.6571162346664904, "weighted_f2": 0.6384024354394601}, rel=1e-12)


def test_best_constant_classifier_predicts_the_majority_class() -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1, 2])
    report = evaluate.build_evaluation_report(["a", "b", "c"], y_true, y_true)
    metrics = report["multiclass_classification_metrics"]
    share = 4 / 7  # always "a": right 4/7 of the time, precision 4/7 on "a", recall 1 on "a"
    assert metrics["accuracy_best_constant_classifier"]["value"] == pytest.approx(share)
    assert metrics["weighted_recall_best_constant_classifier"]["value"] == pytest.approx(share)
    assert metrics["weighted_precision_best_constant_classifier"]["value"] == pytest.approx(share * share)
    assert metrics["weighted_f1_best_constant_classifier"]["value"] == pytest.approx(share * 2 * share / (share + 1))


def test_top_k_accuracy_counts_the_true_class_among_the_k_best() -> None:
    scores = np.array([[0.5, 0.3, 0.1, 0.05, 0.03, 0.02],   # true 0: rank 1
                       [0.5, 0.3, 0.1, 0.05, 0.03, 0.02],   # true 4: rank 5
                       [0.5, 0.3, 0.1, 0.05, 0.03, 0.02]])  # true 5: rank 6
    y_true = np.array([0, 4, 5])
    assert evaluate.top_k_accuracy(y_true, scores, 1) == pytest.approx(1 / 3)
    assert evaluate.top_k_accuracy(y_true, scores, 5) == pytest.approx(2 / 3)
    assert evaluate.top_k_accuracy(y_true, scores, 6) == pytest.approx(1.0)


def test_metrics_agree_with_scikit_learn_on_random_predictions() -> None:
    from sklearn import metrics as skm

    rng = np.random.default_rng(7)
    n_classes = 8
    y_true = rng.integers(0, n_classes - 1, 300)  # the last class never occurs in the labels
    scores = rng.random((300, n_classes))
    scores[np.arange(300), y_true] += rng.random(300)  # better than chance, not perfect
    y_pred = scores.argmax(axis=1)
    report = evaluate.build_evaluation_report(class_list(n_classes), y_true, y_pred, scores)
    got, ext = report["multiclass_classification_metrics"], report["extended_metrics"]
    labels = list(range(n_classes))
    assert ext["num_test_images"] == 300
    assert np.array_equal(evaluate.confusion_matrix(y_true, y_pred, n_classes),
                          skm.confusion_matrix(y_true, y_pred, labels=labels))
    assert got["accuracy"]["value"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    for key, beta in (("weighted_f0_5", 0.5), ("weighted_f1", 1.0), ("weighted_f2", 2.0)):
        expected = skm.fbeta_score(y_true, y_pred, beta=beta, average="weighted", zero_division=0)
        assert got[key]["value"] == pytest.approx(expected)
    assert got["weighted_precision"]["value"] == pytest.approx(
        skm.precision_score(y_true, y_pred, average="weighted", zero_division=0))
    assert got["weighted_recall"]["value"] == pytest.approx(
        skm.recall_score(y_true, y_pred, average="weighted", zero_division=0))
    assert ext["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    assert [c["precision"] for c in ext["per_class"]] == pytest.approx(p.tolist())
    assert [c["recall"] for c in ext["per_class"]] == pytest.approx(r.tolist())
    assert [c["f1"] for c in ext["per_class"]] == pytest.approx(f.tolist())
    assert [c["support"] for c in ext["per_class"]] == s.tolist() and s[-1] == 0
    assert ext["top_5_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y_true, scores, k=5, labels=labels))


# ---------------------------------------------------------------- evaluation.json contract

REGISTRY_METRICS = {f"{name}{suffix}" for name in ("accuracy", "weighted_recall", "weighted_precision",
                                                   "weighted_f0_5", "weighted_f1", "weighted_f2")
                    for suffix in ("", "_best_constant_classifier")}


def test_report_has_the_registry_shape_and_the_accuracy_path_resolves() -> None:
    names = class_list(6)
    y_true = np.array([0, 1, 2, 3, 4, 5, 5])
    y_pred = np.array([0, 1, 2, 3, 4, 4, 5])
    report = evaluate.build_evaluation_report(names, y_true, y_pred, np.eye(6)[y_pred])
    metrics = report["multiclass_classification_metrics"]
    assert set(metrics) == REGISTRY_METRICS | {"confusion_matrix"}
    for name in REGISTRY_METRICS:
        assert set(metrics[name]) == {"value", "standard_deviation"}
        assert isinstance(metrics[name]["value"], float) and metrics[name]["standard_deviation"] == "NaN"
    assert metrics["confusion_matrix"]["c005"] == {n: (1 if n in ("c004", "c005") else 0) for n in names}
    accuracy = functools.reduce(lambda node, key: node[key], evaluate.ACCURACY_JSON_PATH.split("."), report)
    assert accuracy == pytest.approx(6 / 7) and accuracy == metrics["accuracy"]["value"]
    assert set(report) == {"multiclass_classification_metrics", "extended_metrics"}
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_report_extras_top5_only_with_five_classes_and_skipped_listed() -> None:
    skipped = [{"path": "a/bad.png", "reason": "UnidentifiedImageError: cannot identify"}]
    report = evaluate.build_evaluation_report(["a", "b", "c"], [0, 1, 2], [0, 1, 1], np.eye(3), skipped)
    ext = report["extended_metrics"]
    assert ext["top_5_accuracy"] is None
    assert ext["class_names"] == ["a", "b", "c"] and ext["num_skipped"] == 1 and ext["skipped"] == skipped
    assert ext["per_class"][2] == {"class_name": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    lines = evaluate.summary_lines(report)
    assert "accuracy: 0.6667" in lines[1] and "worst: c f1=0.0000" in lines[3]


# ---------------------------------------------------------------- model artifact handling


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


@pytest.mark.parametrize(("name", "kind", "fragment"), [
    ("../evil.py", tarfile.REGTYPE, "'..' escapes the archive"),
    ("code/../../evil.py", tarfile.REGTYPE, "'..' escapes the archive"),
    ("/etc/evil.py", tarfile.REGTYPE, "absolute path"),
    ("code/link", tarfile.SYMTYPE, "links are not allowed"),
    ("code/hard", tarfile.LNKTYPE, "links are not allowed"),
    ("dev", tarfile.FIFOTYPE, "not a regular file"),
])
def test_safe_extract_rejects_unsafe_members(tmp_path: Path, name: str, kind: bytes, fragment: str) -> None:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    archive = _tar_with(tmp_path / "model.tar.gz", member)
    with pytest.raises(EvaluationError, match="unsafe member") as caught:
        evaluate.safe_extract_tar(archive, tmp_path / "out")
    assert fragment in str(caught.value) and repr(name) in str(caught.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.py").exists()


def test_safe_extract_caps_the_uncompressed_size(tmp_path: Path) -> None:
    archive = _tar_with(tmp_path / "model.tar.gz", tarfile.TarInfo("model.pth"), b"0" * 2048)
    with pytest.raises(EvaluationError, match="expands to more than 1024 bytes"):
        evaluate.safe_extract_tar(archive, tmp_path / "out", max_bytes=1024)
    evaluate.safe_extract_tar(archive, tmp_path / "ok", max_bytes=4096)
    assert (tmp_path / "ok" / "model.pth").read_bytes() == b"0" * 2048


def test_resolve_model_dir_accepts_archive_or_extracted_files(tmp_path: Path) -> None:
    extracted = make_model_dir(tmp_path / "extracted", class_list(3))
    assert evaluate.resolve_model_dir(extracted, tmp_path / "work1") == extracted
    packed = tmp_path / "packed"
    make_archive(extracted, packed / "model.tar.gz")
    root = evaluate.resolve_model_dir(packed, tmp_path / "work2")
    assert root == tmp_path / "work2" / "model" and (root / "code" / "inference.py").is_file()


# ---------------------------------------------------------------- the script


@pytest.mark.parametrize(("style", "with_input_fn"), [("object", True), ("module", False)])
def test_main_scores_extracted_model_and_skips_unreadable_images(
        tmp_path: Path, capsys: pytest.CaptureFixture, style: str, with_input_fn: bool) -> None:
    names = class_list(4)
    model_dir = make_model_dir(tmp_path / "model", names, style=style, with_input_fn=with_input_fn)
    test_dir = make_test_dir(tmp_path / "test", {"c000": 3, "c001": 2, "c002": 2}, 4)  # c003 absent: support 0
    gray_png(test_dir / "c001" / "looks-like-c002.png", 2 / 3)
    (test_dir / "c000" / "broken.png").write_bytes(b"not a png")
    (test_dir / ".hidden-marker").write_text("ignored")
    rc, out, err = run_main(capsys, "--model-dir", model_dir, "--test-dir", test_dir, "--output-dir", tmp_path / "out")
    assert rc == 0, err
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    metrics, ext = report["multiclass_classification_metrics"], report["extended_metrics"]
    assert metrics["accuracy"]["value"] == pytest.approx(7 / 8)
    assert metrics["confusion_matrix"]["c001"] == {"c000": 0, "c001": 2, "c002": 1, "c003": 0}
    assert [c["support"] for c in ext["per_class"]] == [3, 3, 2, 0]
    assert ext["num_skipped"] == 1 and ext["skipped"][0]["path"] == "c000/broken.png"
    assert "accuracy: 0.8750" in out and "worst: c001" in out


def test_script_runs_with_sagemaker_defaults_relocated(tmp_path: Path) -> None:
    names = class_list(6)
    base = tmp_path / "opt-ml"
    make_archive(make_model_dir(tmp_path / "built", names), base / "processing" / "model" / "model.tar.gz")
    make_test_dir(base / "processing" / "test", {name: 2 for name in names}, 6)
    shipped = tmp_path / "code" / "evaluate.py"  # alone, as ProcessingStep ships it: no project module to lean on
    shipped.parent.mkdir()
    shipped.write_bytes(SCRIPT.read_bytes())
    from steps.containers import MODULES_ROOT
    from steps.evaluation import EVALUATE_MODULES

    for module in EVALUATE_MODULES:  # each where the definition's "modules" input puts it
        destination = Path(f"{MODULES_ROOT}/{module}".replace("/opt/ml", str(base), 1))
        destination.mkdir(parents=True)
        (destination / f"{module}.py").write_bytes((SCRIPT.parent / f"{module}.py").read_bytes())
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, str(shipped)], env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out_dir = base / "processing" / "evaluation"
    report = json.loads((out_dir / "evaluation.json").read_text())
    assert report["multiclass_classification_metrics"]["accuracy"]["value"] == 1.0
    assert report["extended_metrics"]["top_5_accuracy"] == 1.0
    cm = json.loads((out_dir / "confusion_matrix.json").read_text())
    assert cm["class_names"] == names and cm["matrix"] == (2 * np.eye(6, dtype=int)).tolist()
    assert (out_dir / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "accuracy: 1.0000" in proc.stdout


def _bad_model_files(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "notes.txt").write_text("no model here")
    return tmp_path / "model"


def _corrupt_archive(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.tar.gz").write_bytes(b"\x1f\x8b\x08\x00garbage, not a gzip stream")
    return tmp_path / "model"


@pytest.mark.parametrize(("case", "fragment"), [
    ("missing model dir", "model dir"),
    ("no model files", "no model in"),
    ("corrupt tar", "corrupt model archive"),
    ("empty test dir", "has no images"),
    ("missing test dir", "does not exist"),
    ("unknown class", "test classes unknown to the model: ['zebra']"),
    ("only unreadable images", "no readable images"),
])
def test_bad_input_exits_2_with_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture, case: str,
                                               fragment: str) -> None:
    model_dir = make_model_dir(tmp_path / "good-model", class_list(3))
    test_dir = make_test_dir(tmp_path / "test", {"c000": 1, "c001": 1}, 3)
    if case == "missing model dir":
        model_dir = tmp_path / "nowhere"
    elif case == "no model files":
        model_dir = _bad_model_files(tmp_path)
    elif case == "corrupt tar":
        model_dir = _corrupt_archive(tmp_path)
    elif case == "empty test dir":
        test_dir = tmp_path / "empty"
        (test_dir / "c000").mkdir(parents=True)
    elif case == "missing test dir":
        test_dir = tmp_path / "no-test"
    elif case == "unknown class":
        gray_png(test_dir / "zebra" / "0.png", 0.5)
    elif case == "only unreadable images":
        test_dir = tmp_path / "unreadable"
        (test_dir / "c000").mkdir(parents=True)
        (test_dir / "c000" / "a.png").write_bytes(b"junk")
    rc, _, err = run_main(capsys, "--model-dir", model_dir, "--test-dir", test_dir, "--output-dir", tmp_path / "o")
    assert rc == 2
    assert fragment in err and err.startswith("evaluate.py: error: ") and err.count("\n") == 1
    assert not (tmp_path / "o" / "evaluation.json").exists()


def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path: Path) -> None:
    test_dir = make_test_dir(tmp_path / "test", {"c000": 1}, 2)
    args = ["--model-dir", str(_corrupt_archive(tmp_path)), "--test-dir", str(test_dir), "--output-dir", str(tmp_path)]
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "corrupt model archive" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- the plot


def test_confusion_plot_stays_readable_for_133_classes(tmp_path: Path) -> None:
    n = 133
    matrix = np.diag(np.full(n, 5)) + np.roll(np.eye(n, dtype=int), 1, axis=1)
    assert evaluate.plot_confusion_matrix(matrix, class_list(n), tmp_path / "cm.png")
    with Image.open(tmp_path / "cm.png") as image:
        assert max(image.size) <= 2400


def test_confusion_plot_is_skipped_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert not evaluate.plot_confusion_matrix(np.eye(2, dtype=int), ["a", "b"], tmp_path / "cm.png")
    assert "skipping confusion_matrix.png" in capsys.readouterr().out and not (tmp_path / "cm.png").exists()


# ---------------------------------------------------------------- the project's real serving handler



def _noise_png(path: Path, seed: int, mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 24, 4), dtype=np.uint8)
    Image.fromarray(pixels, mode="RGBA").convert(mode).save(path)


def test_real_handler_artifact_scores_exactly_like_serving(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    import inference
    import torch
    names = ["a-cat", "b-dog", "c-fox"]
    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    (model_dir / "code").mkdir(parents=True)
    torch.save(inference.build_model("mobilenet_v3_small", len(names)).state_dict(), model_dir / "model.pth")
    meta = {"arch": "mobilenet_v3_small", "num_classes": len(names), "class_names": names, "image_size": 32,
            "mean": list(inference.IMAGENET_MEAN), "std": list(inference.IMAGENET_STD), "framework": "pytorch",
            "torch_version": torch.__version__}
    (model_dir / "model_meta.json").write_text(json.dumps(meta))
    from artifacts import SERVING_MODULES

    for module in SERVING_MODULES:  # code/ as train.py writes it: the handler and the conversion it imports
        shutil.copy(SCRIPT.parent / module, model_dir / "code" / module)
    archive_dir = make_archive(model_dir, tmp_path / "packed" / "model.tar.gz").parent
    modes = ("RGB", "L", "RGBA", "P")  # grayscale, alpha and palette images go through the handler's own to_rgb
    for c, name in enumerate(names[:2]):
        for k, mode in enumerate(modes):
            _noise_png(tmp_path / "test" / name / f"{k}.png", 10 * c + k, mode)
    (tmp_path / "test" / names[0] / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    rc, _, err = run_main(capsys, "--model-dir", archive_dir, "--test-dir", tmp_path / "test",
                          "--output-dir", tmp_path / "out")
    assert rc == 0, err
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    ext = report["extended_metrics"]
    assert ext["num_test_images"] == 8 and [c["support"] for c in ext["per_class"]] == [4, 4, 0]
    assert ext["skipped"][0]["path"] == "a-cat/truncated.png" and "cannot decode image" in ext["skipped"][0]["reason"]
    # The endpoint's answer for each image (all 3 classes fit in its default top 5) must match evaluation's scores.
    loaded = inference.model_fn(str(model_dir))
    items = evaluate.label_samples(evaluate.list_test_images(tmp_path / "test"), names)
    scores, _, _ = evaluate.predict(evaluate.load_model(model_dir), items, tmp_path / "test")
    served = np.zeros_like(scores)
    for row, (_, path) in enumerate(p for p in items if p[1].name != "truncated.png"):
        for label, probability in inference.predict_fn(inference.input_fn(path.read_bytes(), "image/png"), loaded)[0]:
            served[row, names.index(label)] = probability
    assert scores == pytest.approx(served, abs=1e-5)
    predicted = served.argmax(axis=1)
    expected_cm = {actual: {p: int(((predicted == j) & (np.arange(8) // 4 == i)).sum()) for j, p in enumerate(names)}
                   for i, actual in enumerate(names)}
    assert report["multiclass_classification_metrics"]["confusion_matrix"] == expected_cm


REAL_TRAIN = SCRIPT.parent / "train.py"


def test_model_trained_by_train_py_evaluates_like_its_own_validation(
        tmp_path: Path, small_digits_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    # Same images for validation and test: evaluation (serving's preprocessing) must reproduce the accuracy
    # train.py measured with its own eval preprocessing, or training and serving disagree about the input.
    import shutil

    digits = tmp_path / "digits"  # 10 a class: the smallest set that still trains past constant predictions
    for class_dir in sorted(p for p in small_digits_dir.iterdir() if p.is_dir()):
        (digits / class_dir.name).mkdir(parents=True)
        for image in sorted(class_dir.iterdir())[:10]:
            shutil.copy(image, digits / class_dir.name / image.name)
    base = tmp_path / "opt-ml"
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "SM_CHANNEL_TRAIN": str(digits),
           "SM_CHANNEL_VALIDATION": str(digits), "SM_MODEL_DIR": str(base / "model"),
           "SM_OUTPUT_DATA_DIR": str(base / "output" / "data"), "SM_NUM_GPUS": "0"}
    # shufflenet_v2_x0_5: the cheapest torchvision net here that learns something (~0.4) in a few epochs.
    hyperparameters = ["--arch", "shufflenet_v2_x0_5", "--pretrained", "false", "--epochs", "6", "--image-size", "32",
                       "--batch-size", "10", "--lr", "0.03", "--num-workers", "0", "--amp", "false"]
    trained = subprocess.run([sys.executable, str(REAL_TRAIN), *hyperparameters], env=env, capture_output=True,
                             text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    validation_accuracy = json.loads((base / "output" / "data" / "history.json").read_text())[-1]["validation_accuracy"]
    make_archive(base / "model", base / "processing" / "model" / "model.tar.gz")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    rc, _, err = run_main(capsys, "--test-dir", digits)
    assert rc == 0, err
    report = json.loads((base / "processing" / "evaluation" / "evaluation.json").read_text())
    ext = report["extended_metrics"]
    assert ext["class_names"] == sorted(p.name for p in digits.iterdir())
    assert ext["num_test_images"] == 100 and ext["num_skipped"] == 0 and ext["top_5_accuracy"] is not None
    accuracy = report["multiclass_classification_metrics"]["accuracy"]["value"]
    assert accuracy == pytest.approx(validation_accuracy, abs=0.02)


def test_predictions_file_has_every_scored_image_with_its_loss(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    names = class_list(3)
    model_dir = make_model_dir(tmp_path / "model", names)
    test_dir = make_test_dir(tmp_path / "test", {name: 2 for name in names}, 3)
    (test_dir / "c000" / "broken.png").write_bytes(b"not a png")
    rc, _, err = run_main(capsys, "--model-dir", model_dir, "--test-dir", test_dir, "--output-dir", tmp_path / "out")
    assert rc == 0, err
    written = json.loads((tmp_path / "out" / evaluate.PREDICTIONS_FILE).read_text())
    assert written["class_names"] == names
    images = written["images"]
    assert len(images) == 6 and "c000/broken.png" not in {r["image"] for r in images}  # skipped: not scored
    for record in images:
        assert record["image"].split("/")[0] == record["label"]
        assert record["loss"] == pytest.approx(-math.log(record["probability_of_label"]), rel=1e-6)
        assert record["probability"] >= record["probability_of_label"]


def test_prediction_records_give_a_certain_miss_a_large_finite_loss() -> None:
    scores = np.array([[1.0, 0.0], [0.25, 0.75]])
    records = evaluate.prediction_records(["a", "b"], ["a/1.png", "a/2.png"], np.array([1, 0]), scores)
    assert records[0]["predicted"] == "a" and records[0]["loss"] == pytest.approx(-math.log(1e-12))
    assert records[1] == {"image": "a/2.png", "label": "a", "predicted": "b", "probability": 0.75,
                          "probability_of_label": 0.25, "loss": pytest.approx(-math.log(0.25))}
