"""The deployment steps: CreateModel, CreateEndpointConfig and CreateEndpoint, answered the way the service does.

A model and an endpoint config are records (names are unique, a model must exist before a config names it, an
artifact must exist before a model points at it). The Endpoint step extracts the model's artifact into
`endpoints/<name>/<config>/model/` and has `EndpointManager` serve it: it creates the endpoint, or updates it in
place when it exists, and succeeds only once the new server answers `/ping`. A `Mode: MultiModel` model's
ModelDataUrl is an S3 prefix: its endpoint serves every archive under that prefix, each loaded on first use.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from pipelines.local.container import DEFAULT_REGION, OPT_ML, extract_tar_gz, job_arn, workspace_path
from pipelines.local.endpoints import EndpointManager
from pipelines.local.state import StateStore, utc_now
from pipelines.local.step_api import StepFailed, StepRun
from pipelines.local.workspace import Workspace

MAX_NAME = 63
MODEL_ROOT = f"{OPT_ML}/model"
MULTI_MODEL = "MultiModel"

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    arn TEXT NOT NULL,
    primary_container TEXT NOT NULL,   -- JSON, as in the CreateModel request
    execution_role TEXT,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoint_configs (
    name TEXT PRIMARY KEY,
    arn TEXT NOT NULL,
    production_variants TEXT NOT NULL, -- JSON, as in the CreateEndpointConfig request
    created TEXT NOT NULL
);
"""


def generated_model_name(execution_id: str, step_name: str) -> str:
    """`pipelines-<execution-id>-<step-name>-<random>` in the service's model-name alphabet, at most 63 chars."""
    def clean(text: str) -> str:
        return re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9-]", "-", text)).strip("-")

    head, tail = f"pipelines-{clean(execution_id)}", secrets.token_hex(4)
    step = clean(step_name)[: max(0, MAX_NAME - len(head) - len(tail) - 2)].strip("-")
    return "-".join(part for part in (head, step, tail) if part)[:MAX_NAME]


class DeploymentRecords:
    """The models and endpoint_configs tables."""

    def __init__(self, store: StateStore, region: str) -> None:
        self.store = store
        self.region = region
        store.execute_script(SCHEMA)

    def create_model(self, name: str, container: Mapping[str, Any], role: str | None) -> dict[str, Any]:
        if self.model(name) is not None:
            raise StepFailed(f'ValidationException: Cannot create already existing model "{self._arn("model", name)}".')
        with self.store.transaction() as db:
            db.execute("INSERT INTO models (name, arn, primary_container, execution_role, created) VALUES "
                       "(?, ?, ?, ?, ?)", (name, self._arn("model", name), json.dumps(container), role, utc_now()))
        return self.model(name)  # type: ignore[return-value]

    def model(self, name: str) -> dict[str, Any] | None:
        rows = self.store.query("SELECT * FROM models WHERE name = ?", (name,))
        if not rows:
            return None
        row = rows[0]
        described = {"ModelName": row["name"], "ModelArn": row["arn"],
                     "PrimaryContainer": json.loads(row["primary_container"]), "CreationTime": row["created"]}
        if row["execution_role"]:
            described["ExecutionRoleArn"] = row["execution_role"]
        return described

    def create_config(self, name: str, variants: list[dict[str, Any]]) -> dict[str, Any]:
        existing = self.config(name)
        if existing is not None:
            if existing["ProductionVariants"] == variants:
                return existing  # the same request again (a retried step): nothing to create
            raise StepFailed(f'ValidationException: Cannot create already existing endpoint configuration '
                             f'"{existing["EndpointConfigArn"]}".')
        with self.store.transaction() as db:
            db.execute("INSERT INTO endpoint_configs (name, arn, production_variants, created) VALUES (?, ?, ?, ?)",
                       (name, self._arn("endpoint-config", name), json.dumps(variants), utc_now()))
        return self.config(name)  # type: ignore[return-value]

    def config(self, name: str) -> dict[str, Any] | None:
        rows = self.store.query("SELECT * FROM endpoint_configs WHERE name = ?", (name,))
        if not rows:
            return None
        row = rows[0]
        return {"EndpointConfigName": row["name"], "EndpointConfigArn": row["arn"],
                "ProductionVariants": json.loads(row["production_variants"]), "CreationTime": row["created"]}

    def _arn(self, kind: str, name: str) -> str:
        # The service lower-cases names in model and endpoint ARNs.
        return job_arn(kind, name.lower(), self.region)


def _artifact(workspace: Workspace, uri: str) -> Path:
    try:
        path = workspace.path_for(uri)
    except ValueError as exc:
        raise StepFailed(f"ValidationException: {uri}: {exc}") from exc
    if not path.is_file():
        raise StepFailed(f"ValidationException: Could not find model data at {uri} (looked in {path}).")
    return path


def _multi_model_prefix(workspace: Workspace, container: Mapping[str, Any]) -> Path:
    """The folder of a multi-model model's archives (it may still be empty: models are added to it over time)."""
    prefix = container.get("ModelDataUrl") or ""
    if not prefix.startswith("s3://") or not prefix.endswith("/"):
        raise StepFailed(f"ValidationException: a MultiModel container's ModelDataUrl must be an S3 prefix ending "
                         f"in /, got {prefix!r}")
    return workspace_path(workspace, prefix)


def multi_model_entry_point(container: Mapping[str, Any]) -> str:
    """Each model's entry point, relative to its unpacked archive: the serving toolkit imports SAGEMAKER_PROGRAM
    from `<model>/code` in multi-model mode (SAGEMAKER_SUBMIT_DIRECTORY is not read)."""
    program = (container.get("Environment") or {}).get("SAGEMAKER_PROGRAM", "inference.py")
    return (PurePosixPath("code") / program).as_posix()


def install_model(workspace: Workspace, container: Mapping[str, Any], model_dir: Path) -> str:
    """Extracts the model's artifact (and an S3 source dir) into `model_dir`, as the serving container finds them;
    returns the entry point relative to it. The endpoint and the batch transform both serve from such a dir."""
    if not model_dir.is_dir():  # already there when this config is deployed again: same model, same files
        if not container.get("ModelDataUrl"):
            raise StepFailed("ValidationException: the model has no ModelDataUrl: nothing to serve locally")
        partial = model_dir.with_name(f".model-{secrets.token_hex(4)}.partial")
        try:
            extract_tar_gz(_artifact(workspace, container["ModelDataUrl"]), partial)
            _install_source(workspace, container, partial)
            partial.rename(model_dir)  # whole or not at all: a crash never leaves half a model dir
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    environment = container.get("Environment") or {}
    program = environment.get("SAGEMAKER_PROGRAM", "inference.py")
    submit_dir = environment.get("SAGEMAKER_SUBMIT_DIRECTORY", f"{MODEL_ROOT}/code")
    code_dir = "code"
    if submit_dir.startswith(MODEL_ROOT):
        code_dir = PurePosixPath(submit_dir).relative_to(MODEL_ROOT).as_posix()
    entry_point = (PurePosixPath(code_dir) / program).as_posix()
    if not (model_dir / entry_point).is_file():
        raise StepFailed(f"ClientError: {program} not found in the model artifact: expected {entry_point} in "
                         f"{container.get('ModelDataUrl')} (SAGEMAKER_SUBMIT_DIRECTORY={submit_dir})")
    return entry_point


def _install_source(workspace: Workspace, container: Mapping[str, Any], model_dir: Path) -> None:
    # A model made with entry_point/source_dir and no repack points at an uploaded sourcedir.tar.gz.
    submit_dir = (container.get("Environment") or {}).get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    if submit_dir.startswith("s3://"):
        extract_tar_gz(_artifact(workspace, submit_dir), model_dir / "code")


class CreateModelHandler:
    """The Model step (CreateModel)."""

    def __init__(self, workspace: Workspace, store: StateStore, region: str = DEFAULT_REGION) -> None:
        self.workspace = workspace
        self.records = DeploymentRecords(store, region)

    def run(self, run: StepRun) -> dict[str, Any]:
        request = run.arguments
        containers = request.get("Containers") or []
        container = request.get("PrimaryContainer") or (containers[0] if len(containers) == 1 else None)
        if container is None:
            raise StepFailed("ValidationException: the local engine serves a model with one container: give "
                             f"PrimaryContainer (got {len(containers)} Containers)")
        if container.get("Mode") == MULTI_MODEL:
            _multi_model_prefix(self.workspace, container)
        elif container.get("ModelDataUrl"):
            _artifact(self.workspace, container["ModelDataUrl"])
        name = request.get("ModelName") or generated_model_name(run.execution_id, run.step_name)
        described = self.records.create_model(name, container, request.get("ExecutionRoleArn"))
        run.log(f"created model {name} ({container.get('ModelDataUrl', 'no model data')})")
        return described


class EndpointConfigHandler:
    """The EndpointConfig step (CreateEndpointConfig)."""

    def __init__(self, workspace: Workspace, store: StateStore, region: str = DEFAULT_REGION) -> None:
        self.records = DeploymentRecords(store, region)

    def run(self, run: StepRun) -> dict[str, Any]:
        name, variants = run.arguments["EndpointConfigName"], list(run.arguments.get("ProductionVariants") or [])
        if len(variants) != 1:
            raise StepFailed(f"ValidationException: the local engine serves one production variant per endpoint; "
                             f"{name} has {len(variants)}")
        for variant in variants:
            if self.records.model(variant.get("ModelName", "")) is None:
                raise StepFailed(f'ValidationException: Could not find model "{variant.get("ModelName")}".')
            if int(variant.get("InitialInstanceCount") or 1) > 1:
                run.log(f"note: {variant['VariantName']} asks for {variant['InitialInstanceCount']} instances; "
                        "locally one serving process answers")
        described = self.records.create_config(name, variants)
        run.log(f"created endpoint config {name}")
        return described


class EndpointHandler:
    """The Endpoint step (CreateEndpoint; an existing endpoint is updated to the new config, like UpdateEndpoint)."""

    def __init__(self, workspace: Workspace, store: StateStore, region: str = DEFAULT_REGION,
                 manager: EndpointManager | None = None, endpoint_memory_mb: int | None = None) -> None:
        self.workspace = workspace
        self.records = DeploymentRecords(store, region)
        self.manager = manager or EndpointManager(workspace, store, region, memory_budget_mb=endpoint_memory_mb)

    def run(self, run: StepRun) -> dict[str, Any]:
        name, config_name = run.arguments["EndpointName"], run.arguments["EndpointConfigName"]
        endpoint_config = self.records.config(config_name)
        if endpoint_config is None:
            raise StepFailed(f'ValidationException: Could not find endpoint configuration "{config_name}".')
        variant = endpoint_config["ProductionVariants"][0]
        model = self.records.model(variant["ModelName"])
        if model is None:
            raise StepFailed(f'ValidationException: Could not find model "{variant["ModelName"]}".')
        container = model["PrimaryContainer"]
        multi_model_url = container["ModelDataUrl"] if container.get("Mode") == MULTI_MODEL else None
        if multi_model_url is not None:
            model_dir, entry_point = _multi_model_prefix(self.workspace, container), multi_model_entry_point(container)
            run.log(f"deploying multi-model {model['ModelName']} to endpoint {name} (config {config_name}): every "
                    f"archive under {multi_model_url}, loaded on first use; memory budget "
                    f"{self.manager.memory_budget_mb} MB ([local] endpoint_memory_mb)")
        else:
            model_dir = self.manager.endpoint_dir(name, config_name) / "model"
            entry_point = install_model(self.workspace, container, model_dir)
            run.log(f"deploying {model['ModelName']} to endpoint {name} (config {config_name})")
        served = self.manager.deploy(name, config_name, model_dir, model_name=model["ModelName"],
                                     entry_point=entry_point, environment=container.get("Environment") or {},
                                     cancelled=run.cancelled, multi_model_url=multi_model_url)
        run.log(f"endpoint {name} is InService at {served['url']}")
        return self._describe(served, variant, container)

    def _describe(self, served: Mapping[str, Any], variant: Mapping[str, Any],
                  container: Mapping[str, Any]) -> dict[str, Any]:
        """DescribeEndpointOutput-shaped."""
        image = container.get("Image", "")
        summary = {
            "VariantName": variant.get("VariantName", "AllTraffic"),
            "DeployedImages": [{"SpecifiedImage": image, "ResolvedImage": image}] if image else [],
            "CurrentWeight": float(variant.get("InitialVariantWeight", 1.0)),
            "DesiredWeight": float(variant.get("InitialVariantWeight", 1.0)),
            "CurrentInstanceCount": 1,
            "DesiredInstanceCount": int(variant.get("InitialInstanceCount") or 1),
        }
        return {
            "EndpointName": served["name"], "EndpointArn": served["arn"], "EndpointConfigName": served["config"],
            "EndpointStatus": "InService", "ProductionVariants": [summary],
            "CreationTime": served["created"], "LastModifiedTime": served["updated"],
        }
