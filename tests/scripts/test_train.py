"""scripts/train.py: hyperparameter parsing, the container contract, resume after a kill, Debugger, data errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import checkpointing
import data_cache
import debugger
import inference
import modeling
import pytest
import torch
import train
from modeling import ConfigError

TRAIN_PY = Path(train.__file__)
# The regexes of docs/container-contract.md, verbatim.
CONTRACT_REGEXES = {
    "train:loss": r"train_loss=([0-9.eE+-]+|nan|inf)",
    "train:accuracy": r"train_accuracy=([0-9.]+)",
    "validation:loss": r"validation_loss=([0-9.eE+-]+|nan|inf)",
    "validation:accuracy": r"validation_accuracy=([0-9.]+)",
}
EPOCH_LINE = re.compile(
    r"^epoch=(\d+)/(\d+) train_loss=\S+ train_accuracy=[0-9.]+ validation_loss=\S+ "
    r"validation_accuracy=[0-9.]+ lr=\S+ epoch_seconds=[0-9.]+$"
)
META_KEYS = {"arch", "num_classes", "class_names", "image_size", "mean", "std", "framework", "torch_version"}
# Tiny and quick: what is tested is the plumbing, not the accuracy.
FAST = ["--arch", "shufflenet_v2_x0_5", "--pretrained", "false", "--image-size", "16", "--batch_size", "32",
        "--lr", "0.003"]


# ---------------------------------------------------------------------------------------------- pure pieces
def test_epoch_line_matches_the_contract_regexes_even_for_nan() -> None:
    entry = {"epoch": 3, "train_loss": float("nan"), "train_accuracy": 0.87654, "validation_loss": float("inf"),
             "validation_accuracy": 0.9012, "lr": 0.0005, "epoch_seconds": 12.34}
    line = train.format_epoch_line(entry, 10)
    assert line == ("epoch=3/10 train_loss=nan train_accuracy=0.8765 validation_loss=inf validation_accuracy=0.9012 "
                    "lr=0.0005 epoch_seconds=12.3")
    assert {name: re.search(rx, line).group(1) for name, rx in CONTRACT_REGEXES.items()} == {
        "train:loss": "nan", "train:accuracy": "0.8765", "validation:loss": "inf", "validation:accuracy": "0.9012"}


@pytest.mark.parametrize(("image_size", "expected"), [(0, torch.contiguous_format), (64, torch.contiguous_format),
                                                      (128, torch.channels_last), (224, torch.channels_last)])
def test_cpu_memory_format_follows_the_image_size(image_size: int, expected: torch.memory_format) -> None:
    config = train.Config(image_size=image_size)
    assert train.setup_runtime(config, train.distributed.SINGLE_WORKER).memory_format == expected
    config.channels_last = False
    assert train.setup_runtime(config, train.distributed.SINGLE_WORKER).memory_format == torch.contiguous_format


def test_warmup_cosine_schedule() -> None:
    factor = modeling.warmup_cosine(total_steps=100, warmup_steps=10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5) and factor(100) == pytest.approx(0.0, abs=1e-9)


def test_augment_is_identity_without_randomness_and_in_range_with_it() -> None:
    batch = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    same = data_cache.augment(batch, 20, generator, min_scale=1.0, hflip=False, jitter=0.0)
    assert torch.allclose(same, batch.float() / 255, atol=1e-5)
    out = data_cache.augment(batch, 12, generator, min_scale=0.5, hflip=True, jitter=0.3)
    assert out.shape == (4, 3, 12, 12) and 0 <= out.min() and out.max() <= 1


def test_lazy_and_cached_sources_yield_the_same_validation_batches(split_dir: Path) -> None:
    _, validation = data_cache.load_splits(split_dir / "train", split_dir / "validation")
    images, labels, skipped = data_cache.decode_all(validation.paths, validation.labels, 16, workers=2)
    cached = list(data_cache.CachedSource(images, labels).batches(16, None, drop_last=False))
    lazy = list(data_cache.LazySource(validation.paths, validation.labels, 16, 2, False).batches(16, None, False))
    assert skipped == 0 and len(cached) == len(lazy) == 4
    for (a, la), (b, lb) in zip(cached, lazy, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_backbone_weights_load_everything_but_the_head(tmp_path: Path) -> None:
    source = inference.build_model("resnet18", 1000)
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "w.pth")
    model, message = modeling.create_model("resnet18", 4, pretrained=True, weights_dir=tmp_path,
                                           freeze_backbone=True)
    assert "loaded" in message and "head fc" in message
    assert torch.equal(model.conv1.weight, source.conv1.weight) and model.fc.out_features == 4
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]


def test_mnasnet_backbone_weights_keep_their_version_metadata(tmp_path: Path) -> None:
    torch.save(inference.build_model("mnasnet0_5", 1000).state_dict(), tmp_path / "w.pth")
    model, _ = modeling.create_model("mnasnet0_5", 3, pretrained=False, weights_dir=tmp_path, freeze_backbone=False)
    assert model.classifier[1].out_features == 3


def test_weights_for_another_arch_are_a_clear_error(tmp_path: Path) -> None:
    torch.save(inference.build_model("squeezenet1_1", 10).state_dict(), tmp_path / "w.pth")
    with pytest.raises(ConfigError, match=r"does not match the arch: \d+ missing keys"):
        modeling.create_model("resnet18", 4, pretrained=False, weights_dir=tmp_path, freeze_backbone=False)


@pytest.mark.parametrize(("files", "count"), [((), 0), (("README.txt",), 0), (("a.pth", "b.pt"), 2)])
def test_a_weights_channel_without_exactly_one_state_dict_is_refused(tmp_path: Path, files, count) -> None:
    tmp_path.joinpath("weights").mkdir()
    for name in files:
        tmp_path.joinpath("weights", name).write_bytes(b"x")
    with pytest.raises(ConfigError, match=rf"weights channel .*weights holds {count} \.pth/\.pt files .*exactly one"):
        modeling.find_weights_file(tmp_path / "weights")
    assert modeling.find_weights_file(tmp_path / "no-channel") is None  # no channel: no file, and no error


def test_failed_imagenet_download_suggests_the_weights_channel(monkeypatch, tmp_path: Path) -> None:
    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(modeling, "build_model", offline)
    with pytest.raises(ConfigError, match="'weights' channel"):
        modeling.create_model("resnet18", 4, pretrained=True, weights_dir=tmp_path / "none", freeze_backbone=False)


def test_bn_momentum_floor() -> None:
    model = inference.build_model("mobilenet_v3_small", 3)
    assert modeling.raise_bn_momentum(model, 0.1) > 0
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_checkpoint_load_survives_garbage_and_compares_configs(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    assert checkpointing.load(path) == (None, "no checkpoint")
    path.write_bytes(b"truncated")
    state, reason = checkpointing.load(path)
    assert state is None and "unreadable checkpoint" in reason
    checkpointing.save_atomic({"epoch": 1, "rng": checkpointing.rng_state()}, path)
    assert checkpointing.load(path)[0]["epoch"] == 1 and list(tmp_path.iterdir()) == [path]
    assert checkpointing.mismatched_keys({"lr": 0.1, "arch": "a"}, {"lr": 0.2, "arch": "a"}) == ["lr"]


def test_resume_only_from_a_checkpoint_of_the_same_configuration(tmp_path: Path, capsys) -> None:
    def parts():
        model = torch.nn.Linear(2, 2)
        optimizer = torch.optim.Adam(model.parameters())
        return model, optimizer

    model, optimizer = parts()
    fp = {"arch": "a", "epochs": 3, "classes": ["x", "y"]}
    path = tmp_path / checkpointing.CHECKPOINT_FILE
    checkpointing.save_atomic({"epoch": 3, "fingerprint": fp, "history": [{"epoch": 1}], "model": model.state_dict(),
                               "optimizer": optimizer.state_dict(), "rng": checkpointing.rng_state()}, path)
    assert train.try_resume(path, {**fp, "classes": ["x", "z"]}, *parts()) == (0, [])
    assert "written with a different configuration (classes)" in capsys.readouterr().out
    fresh = parts()
    assert train.try_resume(path, fp, *fresh) == (3, [{"epoch": 1}])
    assert "has all 3 epochs done" in capsys.readouterr().out
    assert torch.equal(fresh[0].weight, model.weight)


def test_debugger_off_lines(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    monkeypatch.delenv("SMDEBUG_CONFIG_FILE_PATH", raising=False)
    hook, message = debugger.create_hook(None, None)
    assert not hook.active and message.startswith("debugger: off (no hook config at")
    config = tmp_path / "input/config/debughookconfig.json"
    config.parent.mkdir(parents=True)
    config.write_text("{}")
    monkeypatch.setitem(sys.modules, "smdebug", None)  # as if smdebug failed to import with this torch
    for variable in debugger.CONFIG_NAMES:
        monkeypatch.delenv(variable, raising=False)
    hook, message = debugger.create_hook(None, None)
    assert not hook.active and message.startswith("debugger: off (smdebug failed to import")
    hook.train(), hook.eval(), hook.close()


# ---------------------------------------------------------------------------------------------- data problems
def run_main_expecting_exit_2(tmp_path: Path, train_dir: Path, val_dir: Path, capsys, monkeypatch) -> str:
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path / "job"))
    assert train.main([*FAST, "--epochs", "1", "--train", str(train_dir), "--validation", str(val_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ERROR: ") and "\n" not in err and "Traceback" not in err
    assert (tmp_path / "job/output/failure").read_text().strip() == err.removeprefix("ERROR: ")
    return err


def test_empty_train_channel_exits_2(tmp_path: Path, split_dir: Path, capsys, monkeypatch) -> None:
    (tmp_path / "empty").mkdir()
    err = run_main_expecting_exit_2(tmp_path, tmp_path / "empty", split_dir / "validation", capsys, monkeypatch)
    assert "has no class folders" in err


def test_missing_validation_channel_exits_2(tmp_path: Path, split_dir: Path, capsys, monkeypatch) -> None:
    err = run_main_expecting_exit_2(tmp_path, split_dir / "train", tmp_path / "nope", capsys, monkeypatch)
    assert "validation channel" in err and "does not exist" in err


def test_class_mismatch_exits_2(tmp_path: Path, split_dir: Path, capsys, monkeypatch) -> None:
    val = tmp_path / "val"
    shutil.copytree(split_dir / "validation", val)
    shutil.rmtree(val / "7-seven")
    (val / "7-sevn").mkdir()
    shutil.copy(next((split_dir / "validation/1-one").iterdir()), val / "7-sevn/x.png")
    err = run_main_expecting_exit_2(tmp_path, split_dir / "train", val, capsys, monkeypatch)
    assert "only in train ['7-seven']" in err and "only in validation ['7-sevn']" in err


def test_class_folder_without_images_exits_2(tmp_path: Path, split_dir: Path, capsys, monkeypatch) -> None:
    tr = tmp_path / "tr"
    shutil.copytree(split_dir / "train", tr)
    for f in (tr / "2-two").iterdir():
        f.unlink()
    (tr / "2-two/notes.txt").write_text("not an image")
    err = run_main_expecting_exit_2(tmp_path, tr, split_dir / "validation", capsys, monkeypatch)
    assert "class folders without images: 2-two" in err


def test_bad_hyperparameter_exits_2(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    assert train.main(["--epochs", "many"]) == 2
    assert "hyperparameter epochs='many'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- real runs
def sm_env(base: Path, split_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMDEBUG_", "SMPROFILER_"))}
    env.update(SAGEMAKER_BASE_DIR=str(base), SM_CHANNEL_TRAIN=str(split_dir / "train"),
               SM_CHANNEL_VALIDATION=str(split_dir / "validation"), SM_MODEL_DIR=str(base / "model"),
               SM_OUTPUT_DATA_DIR=str(base / "output/data"), SM_NUM_GPUS="0", PYTHONUNBUFFERED="1")
    return env


def test_contract_run_with_debugger(tmp_path: Path, split_dir: Path) -> None:
    """One real training job as SageMaker runs it: every contract file, the log lines, and Debugger tensors."""
    base = tmp_path / "job"
    config = base / "input/config/debughookconfig.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({
        "LocalPath": str(base / "output/tensors"), "HookParameters": {"save_interval": "1"},
        "CollectionConfigurations": [{"CollectionName": "losses"}, {"CollectionName": "gradients"},
                                     {"CollectionName": "weights"}]}))
    argv = [*FAST, "--epochs", '"2"', "--batch_size", '"\\"64\\""', "--sagemaker_program", '"train.py"']
    done = subprocess.run([sys.executable, str(TRAIN_PY), *argv], env=sm_env(base, split_dir), capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch=")]
    assert [EPOCH_LINE.match(line).group(1, 2) for line in epoch_lines] == [("1", "2"), ("2", "2")]
    for name, regex in CONTRACT_REGEXES.items():
        assert all(re.search(regex, line) for line in epoch_lines), name
    assert "WARNING: ignoring unknown hyperparameter sagemaker_program='\"train.py\"'" in lines
    assert any(line.startswith("debugger: on") for line in lines)

    model_dir = base / "model"
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")) == [
        "code", "code/inference.py", "code/requirements.txt", "code/rgb_conversion.py", "model.pth",
        "model_meta.json"]
    assert (model_dir / "code/inference.py").read_bytes() == Path(inference.__file__).read_bytes()
    meta = json.loads((model_dir / "model_meta.json").read_text())
    assert set(meta) == META_KEYS
    assert meta["class_names"] == sorted(p.name for p in (split_dir / "train").iterdir()) and meta["num_classes"] == 10
    assert (meta["arch"], meta["image_size"], meta["framework"]) == ("shufflenet_v2_x0_5", 16, "pytorch")
    assert meta["mean"] == list(inference.IMAGENET_MEAN) and meta["std"] == list(inference.IMAGENET_STD)
    history = json.loads((base / "output/data/history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert set(history[0]) == {"epoch", "train_loss", "train_accuracy", "validation_loss", "validation_accuracy",
                               "lr", "epoch_seconds"}
    assert (base / "output/data/training_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (base / "checkpoints" / checkpointing.CHECKPOINT_FILE).is_file()

    from smdebug import modes
    from smdebug.trials import create_trial

    trial = create_trial(str(base / "output/tensors"))
    (loss,) = trial.tensor_names(collection="losses")
    assert len(trial.tensor(loss).steps(mode=modes.TRAIN)) >= 2 and trial.tensor(loss).steps(mode=modes.EVAL)
    assert trial.tensor_names(collection="gradients") and trial.tensor_names(collection="weights")
    assert float(trial.tensor(loss).value(trial.tensor(loss).steps(mode=modes.TRAIN)[0], mode=modes.TRAIN)) > 0


def test_resume_after_sigkill_finishes_the_requested_epochs(tmp_path: Path, split_dir: Path) -> None:
    base = tmp_path / "job"
    env = sm_env(base, split_dir)
    command = [sys.executable, str(TRAIN_PY), *FAST, "--image_size", "32", "--epochs", "3"]
    checkpoint = base / "checkpoints" / checkpointing.CHECKPOINT_FILE
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while not checkpoint.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)  # a spot interruption: no chance to clean up
    first_output = first.communicate()[0]
    assert first.returncode == -signal.SIGKILL, first_output
    assert checkpointing.load(checkpoint)[0]["epoch"] == 1
    assert not (base / "model/model.pth").exists()

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "checkpoint: resuming from" in second.stdout and "at epoch 2/3" in second.stdout
    assert [line.split()[0] for line in second.stdout.splitlines() if line.startswith("epoch=")] == [
        "epoch=2/3", "epoch=3/3"]
    history = json.loads((base / "output/data/history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert (base / "model/model.pth").is_file()
