"""Users' photos on the local defaults: `upload-data` then `start` on a photo set built from scikit-image's real
photographs (500x375 JPEGs, odd modes, one broken file), with the default image size (0: follow the images) against
the former fixed 32 px preset (`--param ImageSize=32`) measured in the same run.

Reported: the image size each run's training job chose (from its log), test accuracy against the gate, `start`'s
wall time and the ratio to the baseline. Targets (issue 9): the default passes the local gate in <= 5 minutes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from benchmarks.common import Result, Table, ratio
from benchmarks.engine import cli, parse_start_output, read_steps
from benchmarks.photo_dataset import write_photo_dataset
from pipelines.local.workspace import Workspace

TARGET_TOTAL_S = 300.0
CHOSEN_SIZE = re.compile(r"image_size: (\d+)px, from the training images")
# (label, extra `start` arguments, the ImageSize given; None: the default, 0, which the job resolves and logs)
VARIANTS = (("former preset: ImageSize=32 (baseline)", ["--param", "ImageSize=32"], 32),
            ("default: image_size 0, follows the images", [], None))


def evaluated_accuracy(workspace: Path, steps: list[dict[str, Any]]) -> float | None:
    """The Model Registry accuracy in the evaluation.json EvaluateModel wrote, None if it wrote none."""
    evaluate = next((s for s in steps if s["name"] == "EvaluateModel"), None)
    outputs = ((evaluate or {}).get("properties") or {}).get("ProcessingOutputConfig", {}).get("Outputs", [])
    uri = next((o["S3Output"]["S3Uri"] for o in outputs if o.get("OutputName") == "evaluation"), None)
    report = Workspace.open(workspace).path_for(uri) / "evaluation.json" if uri else None
    if report is None or not report.is_file():
        return None
    return json.loads(report.read_text())["multiclass_classification_metrics"]["accuracy"]["value"]


def chosen_image_size(log_text: str) -> int | None:
    """The size train.py logged choosing when ImageSize was 0; None when it was given one."""
    found = CHOSEN_SIZE.search(log_text)
    return int(found.group(1)) if found else None


def run_variant(workdir: Path, photos: Path, variant: tuple[str, list[str], int | None], index: int) -> dict[str, Any]:
    label, params, given_size = variant
    workspace = workdir / f"photos-workspace-{index}"
    shutil.rmtree(workspace, ignore_errors=True)
    for args in (["upload-data", str(photos)], ["upsert"]):
        done = cli(args, workspace, workdir / f"photos-{index}-{args[0]}.log", 300)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.output[-3000:]}")
    start = cli(["start", "--json", *params], workspace, workdir / f"photos-{index}-start.log", 900)
    try:
        outcome = parse_start_output(start.output)
        _, steps = read_steps(workspace, outcome["arn"])
    finally:  # a passed gate leaves a live endpoint: stop its server
        cli(["delete-endpoint", "image-classifier"], workspace, workdir / f"photos-{index}-delete.log", 120)
    logs = "".join(p.read_text(errors="replace") for p in (workspace / "jobs").rglob("job.log"))
    return {"label": label, "status": outcome["status"], "start_s": start.wall_s,
            "accuracy": evaluated_accuracy(workspace, steps),
            "image_size": given_size if given_size is not None else chosen_image_size(logs)}


def run(workdir: Path, quick: bool) -> Result:
    """Two full runs (about 2.5 minutes on 2 cores); `quick` changes nothing: the defaults are what is measured."""
    photos = workdir / "photos-500x375"
    if not (photos / "train").is_dir():
        write_photo_dataset(photos, per_class=110, size=(500, 375))
    runs = [run_variant(workdir, photos, variant, i) for i, variant in enumerate(VARIANTS)]
    return analyse(runs)


def analyse(runs: list[dict[str, Any]]) -> Result:
    baseline, default = runs
    table = Table(["run", "image size (px)", "test accuracy", "status", "`start` wall s", "x baseline"])
    for entry in runs:
        accuracy = entry["accuracy"] if entry["accuracy"] is not None else "none written"
        table.add(entry["label"], entry["image_size"] or "not logged", accuracy, entry["status"], entry["start_s"],
                  ratio(entry["start_s"], baseline["start_s"]))
    result = Result("photos", "Users' photos on the local defaults (5 classes, 545 images, 500x375)")
    result.tables.append(("", table))
    result.figures = {"runs": runs, "wall_ratio": ratio(default["start_s"], baseline["start_s"])}
    passed = default["status"] == "Succeeded"
    result.targets[f"default passes the gate in <= {TARGET_TOTAL_S / 60:.0f} min ({default['start_s']:.0f} s)"] = (
        passed and default["start_s"] <= TARGET_TOTAL_S)
    return result
