"""The local Model Registry: model package groups, numbered versions, approval status and the metrics they carry.

It answers the RegisterModel step (a CreateModelPackage request) the way the service does: registering into a group
name that does not exist yet creates the group, versions count 1, 2, ... per group, and the new package is
`Completed` at once. The ModelQuality statistics file (evaluation.json) is read from the workspace when the package
is registered and kept in the database, so `models` can show accuracy after the S3 folder is gone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from pipelines.config import APPROVAL_STATUSES
from pipelines.local.container import DEFAULT_REGION, job_arn
from pipelines.local.state import StateStore, utc_now
from pipelines.local.step_api import StepFailed, StepRun
from pipelines.local.workspace import Workspace
from pipelines.model_quality import accuracy_of, bias_summary_of
from pipelines.target_base import TargetError

# The service's default for a package registered into a group without ModelApprovalStatus.
DEFAULT_APPROVAL = "PendingManualApproval"

SCHEMA = """
CREATE TABLE IF NOT EXISTS model_package_groups (
    name TEXT PRIMARY KEY,
    arn TEXT NOT NULL,
    description TEXT,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS model_packages (
    arn TEXT PRIMARY KEY,
    group_name TEXT NOT NULL REFERENCES model_package_groups (name),
    version INTEGER NOT NULL,
    approval_status TEXT NOT NULL,
    description TEXT,
    inference_spec TEXT NOT NULL,      -- InferenceSpecification as registered (JSON)
    model_metrics TEXT,                -- ModelMetrics as registered: the S3 references (JSON)
    metrics_content TEXT,              -- {"ModelQuality.Statistics": <evaluation.json content>, ...} (JSON)
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    UNIQUE (group_name, version)
);
"""


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def metric_references(model_metrics: Mapping[str, Any] | None) -> Iterator[tuple[str, str]]:
    """(`ModelQuality.Statistics`, S3 URI) for every MetricsSource in a ModelMetrics request field."""
    for section, sources in (model_metrics or {}).items():
        for kind, source in (sources or {}).items():
            if isinstance(source, Mapping) and isinstance(source.get("S3Uri"), str):
                yield f"{section}.{kind}", source["S3Uri"]


def check_approval(status: str) -> None:
    if status not in APPROVAL_STATUSES:
        raise TargetError(f"unknown approval status {status!r}; use one of {', '.join(APPROVAL_STATUSES)}")


class ModelRegistry:
    """Groups and versioned packages in the state database."""

    def __init__(self, store: StateStore, region: str = DEFAULT_REGION) -> None:
        self.store = store
        self.region = region
        store.execute_script(SCHEMA)

    def create_package(self, request: Mapping[str, Any],
                       metrics_content: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Registers a CreateModelPackage request as the group's next version; returns it as `describe` does.

        `metrics_content` holds the documents the ModelMetrics S3 URIs point at (see `metric_references`).
        """
        group = request.get("ModelPackageGroupName")
        if not group:
            raise TargetError("the local registry keeps versioned packages only: ModelPackageGroupName is required")
        status = request.get("ModelApprovalStatus") or DEFAULT_APPROVAL
        check_approval(status)
        now = utc_now()
        with self.store.transaction() as db:
            db.execute("INSERT OR IGNORE INTO model_package_groups (name, arn, description, created) "
                       "VALUES (?, ?, ?, ?)", (group, job_arn("model-package-group", group, self.region),
                                               f"created by registering into {group}", now))
            (version,) = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM model_packages WHERE group_name = ?",
                                    (group,)).fetchone()
            arn = job_arn("model-package", f"{group}/{version}", self.region)
            db.execute(
                "INSERT INTO model_packages (arn, group_name, version, approval_status, description, inference_spec, "
                "model_metrics, metrics_content, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (arn, group, version, status, request.get("ModelPackageDescription"),
                 json.dumps(request.get("InferenceSpecification") or {}),
                 json.dumps(request.get("ModelMetrics")) if request.get("ModelMetrics") else None,
                 json.dumps(metrics_content) if metrics_content else None, now, now),
            )
        return self.describe(arn)

    def update_approval(self, arn: str, status: str) -> dict[str, Any]:
        """Sets a version's approval status (UpdateModelPackage); returns the package as `describe` does."""
        check_approval(status)
        self._require(arn)
        with self.store.transaction() as db:
            db.execute("UPDATE model_packages SET approval_status = ?, updated = ? WHERE arn = ?",
                       (status, utc_now(), arn))
        return self.describe(arn)

    def describe(self, arn: str) -> dict[str, Any]:
        """DescribeModelPackageOutput-shaped."""
        row = self._require(arn)
        described = {
            "ModelPackageArn": row["arn"],
            # A versioned package is named after its group, as the service reports it.
            "ModelPackageName": row["group_name"],
            "ModelPackageGroupName": row["group_name"],
            "ModelPackageVersion": row["version"],
            "ModelPackageDescription": row["description"],
            "ModelApprovalStatus": row["approval_status"],
            "ModelPackageStatus": "Completed",
            "InferenceSpecification": _json(row["inference_spec"]),
            "CreationTime": row["created"],
            "LastModifiedTime": row["updated"],
        }
        if row["model_metrics"]:
            described["ModelMetrics"] = _json(row["model_metrics"])
        return {key: value for key, value in described.items() if value is not None}

    def list_packages(self, group: str | None = None) -> list[dict[str, Any]]:
        """Every version (of `group`, when given), oldest first, as the `models` command shows them."""
        if group is not None and not self.store.query("SELECT 1 FROM model_package_groups WHERE name = ?", (group,)):
            known = [row["name"] for row in self.store.query("SELECT name FROM model_package_groups ORDER BY name")]
            raise TargetError(f"no model package group {group!r}; known groups: {', '.join(known) or 'none yet'}")
        where, parameters = ("WHERE group_name = ?", (group,)) if group is not None else ("", ())
        rows = self.store.query(f"SELECT * FROM model_packages {where} ORDER BY group_name, version", parameters)
        return [self._summary(row) for row in rows]

    def _summary(self, row: Any) -> dict[str, Any]:
        metrics = _json(row["metrics_content"])
        containers = (_json(row["inference_spec"]) or {}).get("Containers") or [{}]
        return {
            "arn": row["arn"], "group": row["group_name"], "version": row["version"],
            "approval": row["approval_status"], "status": "Completed", "description": row["description"],
            "accuracy": accuracy_of((metrics or {}).get("ModelQuality.Statistics")),
            "bias": bias_summary_of((metrics or {}).get("Bias.Report")), "metrics": metrics,
            "model_data_url": containers[0].get("ModelDataUrl"), "created": row["created"],
        }

    def _require(self, arn: str) -> Any:
        rows = self.store.query("SELECT * FROM model_packages WHERE arn = ?", (arn,))
        if rows:
            return rows[0]
        known = [row["arn"] for row in self.store.query("SELECT arn FROM model_packages ORDER BY created DESC, "
                                                        "version DESC LIMIT 10")]
        hint = ("known (newest first): " + ", ".join(known)) if known else "no model is registered yet"
        raise TargetError(f"no model package {arn!r} in the local registry; {hint}")


class RegisterModelHandler:
    """The RegisterModel step (CreateModelPackage)."""

    def __init__(self, workspace: Workspace, store: StateStore, region: str = DEFAULT_REGION) -> None:
        self.workspace = workspace
        self.registry = ModelRegistry(store, region)

    def run(self, run: StepRun) -> dict[str, Any]:
        request = run.arguments
        if request.get("ModelPackageName") and not request.get("ModelPackageGroupName"):
            raise StepFailed("ValidationException: the local registry keeps versioned packages only; "
                             "give ModelPackageGroupName")
        for container in (request.get("InferenceSpecification") or {}).get("Containers", []):
            self._require_model_data(container.get("ModelDataUrl"))
        try:
            described = self.registry.create_package(request, self._read_metrics(run, request.get("ModelMetrics")))
        except TargetError as exc:
            raise StepFailed(f"ValidationException: {exc}") from exc
        run.log(f"registered {described['ModelPackageArn']} ({described['ModelApprovalStatus']})")
        return described

    def _require_model_data(self, uri: str | None) -> None:
        # The service checks the artifact is readable when the package is created; a typo should fail here.
        if not uri:
            return
        try:
            path = self.workspace.path_for(uri)
        except ValueError as exc:
            raise StepFailed(f"ValidationException: model data {uri}: {exc}") from exc
        if not path.is_file():
            raise StepFailed(f"ValidationException: model data {uri} not found (looked in {path})")

    def _read_metrics(self, run: StepRun, model_metrics: Mapping[str, Any] | None) -> dict[str, Any]:
        content: dict[str, Any] = {}
        for key, uri in metric_references(model_metrics):
            path = self.workspace.path_for(uri)
            try:
                content[key] = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                # The service stores only the reference, so a missing report is no reason to fail registration.
                run.log(f"warning: {key} report {uri} not read ({exc}); registered without its content")
        return content
