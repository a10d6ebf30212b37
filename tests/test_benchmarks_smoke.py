"""The benchmarks' pure parts, fast, so that benchmarks/ cannot rot: statistics, tables, the engine's and the cloud
analysis on real and synthetic inputs, the load generator against a tiny loopback server. No timings are asserted."""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator

import pytest

from benchmarks import cloud_cost, engine, training, training_real
from benchmarks.common import Table, Timed, median, percentile, ratio
from benchmarks.loadgen import Client, closed_loop


def test_percentiles_interpolate_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == median(values) == 2.5
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 4.0
    assert percentile(values, 95) == pytest.approx(3.85)
    assert percentile([], 50) != percentile([], 50)  # nan
    assert ratio(1, 0) != ratio(1, 0) and ratio(6, 3) == 2


def test_tables_render_as_markdown() -> None:
    table = Table(["name", "value"])
    table.add("a", 1.23456)
    table.add("bb", float("nan"))
    lines = table.render().splitlines()
    assert lines[0].startswith("| name") and set(lines[1]) <= {"|", "-"}
    assert "1.23" in lines[2] and "n/a" in lines[3]


def test_training_runs_are_parsed_from_the_epoch_and_step_lines() -> None:
    output = "\n".join([
        "train_step_seconds=0.1000,0.3000,0.2000",
        "epoch=1/2 train_loss=1.0 train_accuracy=0.5 validation_loss=1.0 validation_accuracy=0.5000 lr=0.1 "
        "epoch_seconds=2.0",
        "epoch=2/2 train_loss=1.0 train_accuracy=0.5 validation_loss=1.0 validation_accuracy=0.9500 lr=0.1 "
        "epoch_seconds=3.0",
    ])
    run = training.parse_run("x", output, epochs=2, train_images=100, wall=10.0, cpu=15.0)
    assert (run.accuracy, run.loop_s, run.step_s, run.images_per_s) == (0.95, 5.0, 0.2, 20.0)
    with pytest.raises(RuntimeError, match="expected 3 epoch lines"):
        training.parse_run("x", output, epochs=3, train_images=100, wall=1.0, cpu=1.0)


def test_real_size_runs_keep_peak_memory_and_compare_against_the_first_row() -> None:
    line = ("epoch={}/2 train_loss=1.0 train_accuracy=0.5 validation_loss=1.0 validation_accuracy={} lr=0.1 "
            "epoch_seconds=1.0")
    reference = training_real.parse("reference", Timed(0, 40.0, 70.0, "\n".join([line.format(1, "0.8"),
                                                                                 line.format(2, "0.9")]), 900.0),
                                    epochs=2, train_images=100)
    ours = training_real.parse("train.py", Timed(0, 8.0, 10.0, "\n".join([
        "data: 100 train / 20 validation images, 5 classes; decoded in 2.0 s and cached in memory at 224px/224px",
        line.format(1, "0.9"), line.format(2, "0.91")]), 1200.0), epochs=2, train_images=100)
    assert (reference.images_per_s, reference.accuracy, reference.peak_mb) == (5.0, 0.9, 900.0)
    assert (reference.decode_s, ours.decode_s) == (None, 2.0)
    decode = training_real.decode_table({"frozen-x": {"train.py": ours.__dict__}, "speedup": 1.0}).rows
    assert decode == [["frozen-x", 8.0, 2.0, "25.0%", 8.0 / 6.0]]  # a job without its 2 s of decoding
    rows = training_real.recipe_table([reference, ours]).rows
    assert rows[1][0] == "train.py" and rows[1][5] == 5.0 and rows[1][6] == 7.0  # x reference, CPU-s x less
    with pytest.raises(RuntimeError, match="expected 3 epoch lines"):
        training_real.parse("x", Timed(0, 1.0, 1.0, line.format(1, "0.5")), epochs=3, train_images=1)
    frozen = [r for r in training_real.recipes(quick=True) if r.frozen]
    assert {r.arch for r in frozen} == {"resnet50", "resnet18"} and all(r.image_size == 224 for r in frozen)


def step(name: str, kind: str, started: str, ended: str, **props) -> dict:
    return {"name": name, "type": kind, "started": f"2026-01-01T00:00:{started}+00:00",
            "ended": f"2026-01-01T00:00:{ended}+00:00", "properties": props}


def test_engine_overhead_counts_parallel_trials_once() -> None:
    t = "2026-01-01T00:00:{}+00:00".format
    steps = [
        step("Prep", "Processing", "00.000", "02.000", ProcessingStartTime=t("00.100"), ProcessingEndTime=t("02.000")),
        step("Tune", "Tuning", "02.000", "12.000", TrainingJobSummaries=[
            {"TrainingStartTime": t("02.000"), "TrainingEndTime": t("10.000")},
            {"TrainingStartTime": t("02.000"), "TrainingEndTime": t("12.000")}]),
        step("Gate", "Condition", "12.000", "12.500"),
    ]
    assert engine.union_seconds([(0, 2), (1, 3), (5, 6)]) == 4
    assert engine.mean_job_seconds(steps) == pytest.approx({"Prep": 1.9, "Tune": 9.0})
    result = engine.analyse(1.0, 13.0, 5.0, "Succeeded",
                            {"started": t("00.000"), "ended": t("12.500")}, steps)
    assert result.figures["jobs_union_s"] == pytest.approx(11.9)
    assert result.figures["jobs_sum_s"] == pytest.approx(19.9)
    assert result.figures["overhead_s"] == pytest.approx(13.0 - 11.9)
    assert engine.parse_start_output('warning: x\n{"arn": "a", "status": "Succeeded"}\n') == {
        "arn": "a", "status": "Succeeded"}


@pytest.fixture(scope="module")
def cloud_definition() -> dict:
    from pipelines.building import build_definition
    from pipelines.config import load_config
    from pipelines.session import Uploads, build_pipeline_session

    config = load_config(None, {"project.target": "sagemaker", "project.role_arn": cloud_cost.ROLE,
                                "project.bucket": cloud_cost.BUCKET})
    return build_definition(config, build_pipeline_session(config, Uploads.DISCARD)).definition


def test_cloud_cost_shape_of_the_default_definition(cloud_definition: dict) -> None:
    result = cloud_cost.analyse(cloud_definition, json.loads(json.dumps(cloud_definition)), {"TrainModel": 36.0})
    figures = result.figures
    # processing, MaxTuningJobs trainings, training, processing (evaluate, explain), the batch transform (no runtime
    # bound)
    assert figures["jobs"] == 1 + 4 + 1 + 2 + 1
    assert figures["rule_jobs"] == 16 and figures["max_instance_hours"] == 8 * 24
    assert figures["local_instance_hours"] == pytest.approx(0.01)
    assert figures["repack"]["repack_steps"] == [] and not figures["repack"]["repack_script_referenced"]
    assert figures["endpoint"] == {"type": "ml.m5.large", "count": 1}
    assert all(result.targets.values())
    assert set(figures["reupsert_cache"].values()) == {"hit"}  # the same definition twice: every key matches


def test_a_changed_cache_key_and_its_downstream_rerun(cloud_definition: dict) -> None:
    changed = json.loads(json.dumps(cloud_definition))
    train = next(s for s in changed["Steps"] if s["Name"] == "TrainModel")
    train["Arguments"]["HyperParameters"]["seed"] = "43"
    table, outcome = cloud_cost.caching_table(cloud_definition, changed)
    assert outcome == {"PrepareData": "hit", "TuneHyperparameters": "hit", "TrainModel": "miss",
                       "EvaluateModel": "miss", "ExplainModel": "miss"}
    rows = {row[0]: row[3] for row in table.rows}
    assert rows["TrainModel"] == "MISS: HyperParameters.seed" and "from TrainModel" in rows["EvaluateModel"]


@pytest.fixture()
def echo_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = 400 if body == b"bad" else 200
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_load_generator_is_bounded_and_counts_errors(echo_server: str) -> None:
    result = closed_loop(echo_server, [b"ok", b"ok", b"bad"], "text/plain", concurrency=3, max_requests=30,
                         max_seconds=10)
    assert len(result.latencies_s) + result.errors == 30 and result.errors > 0
    assert result.requests_per_s > 0
    with pytest.raises(ValueError, match="loopback only"):
        Client("http://example.com:80")


def test_the_load_generator_spreads_requests_over_the_given_headers(echo_server: str, monkeypatch) -> None:
    sent: list[str] = []
    real_invoke = Client.invoke

    def recording(self, body, content_type, headers=None):
        sent.append((headers or {}).get("X-Amzn-SageMaker-Target-Model", ""))
        return real_invoke(self, body, content_type, headers)

    monkeypatch.setattr(Client, "invoke", recording)
    spread = [{"X-Amzn-SageMaker-Target-Model": key} for key in ("v1.tar.gz", "v2.tar.gz", "v3.tar.gz")]
    result = closed_loop(echo_server, [b"ok"], "text/plain", concurrency=1, max_requests=6, max_seconds=10,
                         headers=spread)
    assert len(result.latencies_s) == 6 and result.errors == 0
    assert sent == ["v1.tar.gz"] + ["v1.tar.gz", "v2.tar.gz", "v3.tar.gz"] * 2  # the warm-up, then round-robin


def test_multi_model_benchmark_publishes_three_versions_with_their_own_class_names(tmp_path) -> None:
    import tarfile

    from benchmarks.multi_model import KEYS, publish_versions

    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "code" / "inference.py").write_text("# handlers\n")
    (model / "model.pth").write_bytes(b"w" * 100)
    (model / "model_meta.json").write_text(json.dumps({"arch": "resnet18", "class_names": ["a", "b"]}))
    size = publish_versions(model, tmp_path / "prefix")
    assert size == sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    for number, key in enumerate(KEYS, start=1):
        with tarfile.open(tmp_path / "prefix" / key) as tar:
            assert sorted(tar.getnames()) == ["code/inference.py", "model.pth", "model_meta.json"]
            meta = json.loads(tar.extractfile("model_meta.json").read())
        assert meta == {"arch": "resnet18", "class_names": [f"v{number}-a", f"v{number}-b"]}
    assert sorted(p.name for p in (tmp_path / "prefix").iterdir()) == list(KEYS)


def test_sample_digits_read_without_scikit_learn_match_load_digits() -> None:
    import numpy as np
    from sklearn.datasets import load_digits

    from pipelines.sample_data import load_digit_arrays

    images, targets = load_digit_arrays()
    digits = load_digits()
    assert np.array_equal(images, digits.images) and np.array_equal(targets, digits.target)


def test_photo_dataset_is_a_users_style_tree_of_real_photographs(tmp_path) -> None:
    from PIL import Image

    from benchmarks.photo_dataset import SPLIT_BANDS, photo_sources, write_photo_dataset

    out = write_photo_dataset(tmp_path / "photos", per_class=7, size=(30, 24), seed=3)
    classes = sorted(photo_sources())
    assert sorted(p.name for p in out.iterdir()) == sorted(SPLIT_BANDS)
    for split in SPLIT_BANDS:
        assert sorted(p.name for p in (out / split).iterdir()) == classes
    modes = set()
    for path in (out / "train").rglob("*.*"):
        if path.name == "broken.jpg":
            continue
        with Image.open(path) as image:
            modes.add(image.mode)
            assert image.size == (30, 24)
    assert {"CMYK", "P", "RGB"} <= modes  # the odd modes users' folders hold
    with pytest.raises(OSError):
        Image.open(out / "train" / "brick" / "broken.jpg").load()
    again = write_photo_dataset(tmp_path / "again", per_class=7, size=(30, 24), seed=3)
    same = "train/grass/0002.jpg"  # same arguments, same files
    assert (again / same).read_bytes() == (out / same).read_bytes()


def test_photos_benchmark_reads_the_chosen_size_and_the_accuracy_and_compares_with_its_baseline(tmp_path) -> None:
    from benchmarks import photos
    from pipelines.local.workspace import Workspace

    log = "epoch=1\nimage_size: 64px, from the training images (median short side 375px, kept within 32-64px)\n"
    assert photos.chosen_image_size(log) == 64 and photos.chosen_image_size("epoch=1\n") is None
    uri = "s3://local-pipeline/image-classifier/exec/EvaluateModel/output/evaluation"
    report = Workspace.open(tmp_path).path_for(uri)
    report.mkdir(parents=True)
    (report / "evaluation.json").write_text(json.dumps(
        {"multiclass_classification_metrics": {"accuracy": {"value": 0.96, "standard_deviation": "NaN"}}}))
    steps = [{"name": "EvaluateModel", "properties": {"ProcessingOutputConfig": {"Outputs": [
        {"OutputName": "evaluation", "S3Output": {"S3Uri": uri}}]}}}]
    assert photos.evaluated_accuracy(tmp_path, steps) == 0.96
    assert photos.evaluated_accuracy(tmp_path, [{"name": "EvaluateModel", "properties": {}}]) is None  # it failed
    result = photos.analyse([
        {"label": "baseline", "status": "Failed", "start_s": 50.0, "accuracy": 0.8, "image_size": 32},
        {"label": "default", "status": "Succeeded", "start_s": 100.0, "accuracy": None, "image_size": None}])
    assert result.figures["wall_ratio"] == 2
    assert "none written" in result.render() and "not logged" in result.render()
    assert list(result.targets.values()) == [True]


@pytest.mark.parametrize(("text", "message"), [("big", "'big' is not WIDTHxHEIGHT, e.g. 500x375"),
                                               ("5x5", "'5x5': both sides must be at least 8 px")])
def test_photo_dataset_size_that_cannot_be_used_is_refused(text: str, message: str) -> None:
    import argparse

    from benchmarks.photo_dataset import parse_size

    assert parse_size("500X375") == (500, 375)
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        parse_size(text)


def test_distributed_runs_are_parsed_from_rank_0s_lines_and_the_share_is_bounded() -> None:
    from benchmarks import distributed

    log = "\n".join(["train_step_seconds=0.2000,0.4000,0.3000",
                     "epoch=1/1 train_loss=1.0 train_accuracy=0.5 validation_loss=1.0 validation_accuracy=0.9 "
                     "lr=0.1 epoch_seconds=4.5"])
    props = {"FinalMetricDataList": [{"MetricName": "validation:accuracy", "Value": 0.9}]}
    job = distributed.parse_job("2 hosts", log, 2, 2, 64, 10.0, props)
    assert (job.step_s, job.loop_s, job.accuracy) == (0.3, 4.5, 0.9)
    assert distributed.communication_share(0.3, 0.2) == pytest.approx(1 / 3)
    assert distributed.communication_share(0.2, 0.3) == 0.0  # a faster alone-run is noise, not negative comms
    request = distributed.request_for("s3://b/data", distributed.SCRIPTS_DIR, {"epochs": 2, "arch": "resnet18"}, 2)
    assert request["ResourceConfig"]["InstanceCount"] == 2
    assert request["HyperParameters"]["arch"] == '"resnet18"' and request["HyperParameters"]["epochs"] == "2"
