"""The batch transform's section: the Transform job, and what its `.out` files say (one per input, the handler's
JSON response; SageMaker's layout, which the local engine keeps)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from pipelines.report.artifacts import Files
from pipelines.report.execution_view import ExecutionView
from pipelines.report.model import BatchJob


def add_batch(view: ExecutionView, files: Files) -> None:
    name, run = view.find("Transform")
    if run is None or name is None or not (run.properties or {}).get("TransformJobName"):
        view.data.missing["batch"] = view.absent(name, run, "batch transform (a Transform step)")
        return
    described = view.described(name, run)
    source = (described.get("TransformInput") or {}).get("DataSource", {}).get("S3DataSource", {}).get("S3Uri")
    output = (described.get("TransformOutput") or {}).get("S3OutputPath")
    batch = BatchJob(job_name=str(described["TransformJobName"]), status=described.get("TransformJobStatus"),
                     input_uri=source if isinstance(source, str) else None,
                     output_uri=output if isinstance(output, str) else None, outputs=0, predictions={},
                     failure_reason=described.get("FailureReason") or run.failure_reason)
    if batch.output_uri:
        _read_outputs(batch, files, batch.output_uri)
    view.data.batch = batch


def _read_outputs(batch: BatchJob, files: Files, output_uri: str) -> None:
    prefix = output_uri.rstrip("/") + "/"
    labelled: list[tuple[str, str]] = []  # (the folder the input sat in, or "", top label)
    for uri in files.list(output_uri):
        if not uri.endswith(".out"):
            continue
        batch.outputs += 1
        label = top_label(files.read(uri))
        if label is None:
            batch.unreadable += 1
            continue
        folders = uri.removeprefix(prefix).split("/")[:-1]
        labelled.append((folders[-1] if folders else "", label))
    batch.predictions = dict(Counter(label for _, label in labelled).most_common())
    # Folders judge the predictions only when they are class names (a test split: test/<class>/<image>).
    folder_names = {folder for folder, _ in labelled}
    if labelled and "" not in folder_names and folder_names & set(batch.predictions):
        batch.folder_agreement = sum(folder == label for folder, label in labelled) / len(labelled)


def top_label(body: bytes | None) -> str | None:
    """The first top-k label of a response `{"predictions": [{"top_k": [{"label": ...}]}]}`; None otherwise."""
    if body is None:
        return None
    try:
        answer: Any = json.loads(body)
        label = answer["predictions"][0]["top_k"][0]["label"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return label if isinstance(label, str) else None
