"""The relocated container contract: paths, names, metrics, archives, S3 copies and the job process."""

from __future__ import annotations

import io
import math
import os
import re
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from pipelines.local import container
from pipelines.local.container import (
    CpuSlots,
    JobProcess,
    MetricExtractor,
    download,
    extract_tar_gz,
    job_name,
    pack_tar_gz,
    relocate,
    upload,
)
from pipelines.local.step_api import StepFailed
from pipelines.local.workspace import Workspace
from steps.estimator import METRIC_DEFINITIONS

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
EPOCH_LINES = [  # what scripts/train.py prints (format_epoch_line)
    "epoch=1/3 train_loss=2.1034 train_accuracy=0.2500 validation_loss=1.9821 validation_accuracy=0.3100 "
    "lr=0.001 epoch_seconds=3.2",
    "checkpoint: saved",
    "epoch=2/3 train_loss=nan train_accuracy=0.5000 validation_loss=1.2e-01 validation_accuracy=0.8000 "
    "lr=0.000854 epoch_seconds=3.1",
    "epoch=3/3 train_loss=0.4321 train_accuracy=0.8765 validation_loss=0.3210 validation_accuracy=0.9012 "
    "lr=0.0005 epoch_seconds=3.0",
]


# ---------------------------------------------------------------------------------------------- relocation, names
@pytest.mark.parametrize(("value", "expected"), [
    ("/opt/ml/processing/input/code/preprocess.py", "/job/opt_ml/processing/input/code/preprocess.py"),
    ("/opt/ml", "/job/opt_ml"),
    ("/opt/ml/", "/job/opt_ml/"),
    ("--model-dir=/opt/ml/model", "--model-dir=/job/opt_ml/model"),
    ("/opt/mlx/data", "/opt/mlx/data"),
    ("data/opt/ml", "data/opt/ml"),
    ("0.1", "0.1"),
])
def test_relocate_rewrites_only_opt_ml_paths(value: str, expected: str) -> None:
    assert relocate(value, Path("/job/opt_ml")) == expected


def test_job_names_follow_the_service_pattern() -> None:
    name = job_name("PrepareData", "abc123xyz", suffix="k3f9a1")
    assert name == "preparedata-abc123xyz-k3f9a1"
    long = job_name("A_Very Long.Step-Name" * 5, "x" * 20)
    assert len(long) <= 63 and NAME_PATTERN.match(long) and long.endswith(long.rsplit("-", 1)[1])
    assert f"-{'x' * 20}-" in long
    assert job_name("TrainModel", "e1") != job_name("TrainModel", "e1")  # a retry gets its own job


# ---------------------------------------------------------------------------------------------- metrics
def test_metric_extractor_reads_train_py_lines_with_the_definition_regexes() -> None:
    metrics = MetricExtractor(METRIC_DEFINITIONS)
    for line in EPOCH_LINES:
        metrics.feed(line)
    final = {item["MetricName"]: item for item in metrics.final_metric_data_list()}
    assert final["validation:accuracy"]["Value"] == pytest.approx(0.9012)
    assert final["train:loss"]["Value"] == pytest.approx(0.4321)
    assert final["validation:loss"]["Value"] == pytest.approx(0.3210)
    history = metrics.to_json()["Metrics"]
    assert [h["Value"] for h in history["validation:accuracy"]] == [0.31, 0.8, 0.9012]
    assert history["validation:loss"][1]["Value"] == pytest.approx(0.12)
    assert math.isnan(history["train:loss"][1]["Value"])  # nan is a value (a diverging run), not a parse failure
    assert all("Timestamp" in h for h in history["train:accuracy"])


def test_metric_extractor_skips_non_numbers_and_omits_metrics_that_never_matched() -> None:
    metrics = MetricExtractor([{"Name": "status", "Regex": r"status=(\S+)"}, {"Name": "never", "Regex": "zzz=(\\d+)"},
                               {"Name": "whole", "Regex": r"\d+ images"}])
    for line in ("status=ok", "status=0.5", "status=done", "1797 images"):
        metrics.feed(line)
    assert metrics.history["status"][0]["Value"] == 0.5 and len(metrics.history["status"]) == 1
    names = [item["MetricName"] for item in metrics.final_metric_data_list()]
    assert names == ["status"]  # "1797 images" is not a float: a regex without a group uses the whole match


def test_an_invalid_metric_regex_fails_naming_the_metric() -> None:
    with pytest.raises(StepFailed, match="MetricDefinitions broken"):
        MetricExtractor([{"Name": "broken", "Regex": "loss=(["}])


# ---------------------------------------------------------------------------------------------- archives
def test_pack_tar_gz_puts_files_at_the_archive_root(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "model.pth").write_bytes(b"weights")
    (model / "code" / "inference.py").write_text("def model_fn(d): ...\n")
    archive = pack_tar_gz(model, tmp_path / "out" / "model.tar.gz")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"model.pth", "code", "code/inference.py"} == names
    assert list((tmp_path / "out").iterdir()) == [archive]  # no partial file left beside it
    extract_tar_gz(archive, tmp_path / "back")
    assert (tmp_path / "back" / "model.pth").read_bytes() == b"weights"


def test_pack_tar_gz_of_an_empty_or_missing_folder_is_a_valid_empty_archive(tmp_path: Path) -> None:
    archive = pack_tar_gz(tmp_path / "missing", tmp_path / "output.tar.gz")
    with tarfile.open(archive) as tar:
        assert tar.getnames() == []


@pytest.mark.parametrize("member", ["../escape.py", "/abs/evil.py", "link"])
def test_extract_refuses_members_that_would_escape(tmp_path: Path, member: str) -> None:
    archive = tmp_path / "sourcedir.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(member)  # built by hand: tar.add would strip a leading "/"
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 3
            tar.addfile(info, io.BytesIO(b"x=1"))
    with pytest.raises(StepFailed, match="refusing to extract sourcedir.tar.gz"):
        extract_tar_gz(archive, tmp_path / "code")
    assert not (tmp_path / "escape.py").exists()


# ---------------------------------------------------------------------------------------------- S3 copies
def test_download_copies_a_prefix_or_the_one_file_a_key_names(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    (ws.s3_root / "b" / "data" / "cats").mkdir(parents=True)
    (ws.s3_root / "b" / "data" / "cats" / "1.png").write_bytes(b"png")
    (ws.s3_root / "b" / "code").mkdir(parents=True)
    (ws.s3_root / "b" / "code" / "run.py").write_text("pass\n")
    assert download(ws, "s3://b/data/", tmp_path / "in") == 1
    assert (tmp_path / "in" / "cats" / "1.png").read_bytes() == b"png"
    assert download(ws, "s3://b/code/run.py", tmp_path / "code") == 1
    assert (tmp_path / "code" / "run.py").is_file()
    with pytest.raises(StepFailed, match='No S3 objects found under S3 URL "s3://b/nothing"'):
        download(ws, "s3://b/nothing", tmp_path / "x")
    assert download(ws, "s3://b/nothing", tmp_path / "x", required=False) == 0
    assert download(ws, f"file://{ws.s3_root / 'b' / 'data'}", tmp_path / "local") == 1


def test_upload_copies_every_file_and_creates_nothing_for_an_empty_folder(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "x.json").write_text("{}")
    assert upload(ws, out, "s3://b/run/output/") == 1
    assert (ws.s3_root / "b" / "run" / "output" / "a" / "x.json").read_text() == "{}"
    (tmp_path / "empty").mkdir()
    assert upload(ws, tmp_path / "empty", "s3://b/empty") == 0
    assert not (ws.s3_root / "b" / "empty").exists()
    with pytest.raises(StepFailed, match="escapes the workspace"):
        upload(ws, out, "s3://b/../../outside")


# ---------------------------------------------------------------------------------------------- the process
def _process(tmp_path: Path, code: str, **kwargs) -> tuple[JobProcess, list[str]]:
    lines: list[str] = []
    kwargs.setdefault("max_runtime_s", 60)
    kwargs.setdefault("cancelled", threading.Event())
    process = JobProcess(["python3", "-c", code], job_dir=tmp_path, cwd=tmp_path, cpu_budget=1, log=lines.append,
                         env={"SAGEMAKER_BASE_DIR": str(tmp_path / "opt_ml")}, **kwargs)
    return process, lines


def test_job_process_streams_lines_to_the_log_file_and_callbacks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SM_CHANNEL_STALE", "/somewhere/else")
    code = ("import os, sys; print('hello'); print('to stderr', file=sys.stderr); "
            "print(sys.executable); print(os.environ['SAGEMAKER_BASE_DIR']); print(os.environ['OMP_NUM_THREADS']); "
            "print(os.environ['PYTHONUNBUFFERED']); print(os.environ.get('SM_CHANNEL_STALE', 'no-stale'))")
    seen: list[str] = []
    process, lines = _process(tmp_path, code, on_line=seen.append)
    process.run()
    assert lines == seen == ["hello", "to stderr", sys.executable, str(tmp_path / "opt_ml"), "1", "1", "no-stale"]
    assert (tmp_path / "job.log").read_text().splitlines() == lines


def test_a_non_zero_exit_is_an_algorithm_error_with_the_last_lines(tmp_path: Path) -> None:
    failure = tmp_path / "opt_ml" / "output" / "failure"
    code = (f"import pathlib, sys; [print(f'line {{i}}') for i in range(30)]; p = pathlib.Path({str(failure)!r}); "
            "p.parent.mkdir(parents=True); p.write_text('bad hyperparameter lr'); sys.exit(3)")
    process, _ = _process(tmp_path, code, failure_file=failure)
    with pytest.raises(StepFailed) as failed:
        process.run()
    reason = failed.value.reason
    assert reason.startswith("AlgorithmError: exit code 3 (bad hyperparameter lr), last lines:")
    assert reason.splitlines()[1:] == [f"line {i}" for i in range(20, 30)]


def test_a_job_past_its_max_runtime_is_killed(tmp_path: Path) -> None:
    code = "import time; print('started', flush=True); time.sleep(60)"
    process, lines = _process(tmp_path, code, max_runtime_s=0.5)
    started = time.monotonic()
    with pytest.raises(StepFailed, match=r"^MaxRuntimeExceeded: .*\(0.5 s\)"):
        process.run()
    assert time.monotonic() - started < 10


def test_a_cancelled_job_is_terminated_even_when_it_ignores_sigterm(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(container, "STOP_GRACE_SECONDS", 0.5)
    cancelled = threading.Event()
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(60)")
    process, lines = _process(tmp_path, code, cancelled=cancelled, on_line=lambda line: cancelled.set())
    started = time.monotonic()
    with pytest.raises(StepFailed, match="^Stopped"):
        process.run()
    assert lines == ["ready"] and time.monotonic() - started < 10


def test_an_entry_point_that_cannot_start_fails_clearly(tmp_path: Path) -> None:
    process = JobProcess([str(tmp_path / "missing.sh")], job_dir=tmp_path, cwd=tmp_path, env={}, cpu_budget=1,
                         max_runtime_s=None, cancelled=threading.Event(), log=lambda line: None)
    with pytest.raises(StepFailed, match="ClientError: cannot start"):
        process.run()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this platform")
def test_cpu_slots_give_concurrent_jobs_disjoint_cores(monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    slots = CpuSlots()
    with slots.reserve(2) as first, slots.reserve(1) as second, slots.reserve(2) as third:
        assert first == {0, 1} and second == {2} and third is None  # not enough left: run unpinned
    with slots.reserve(4) as whole:
        assert whole is None  # the whole machine needs no pinning
    with slots.reserve(3) as again:
        assert again == {0, 1, 2}  # released on exit
