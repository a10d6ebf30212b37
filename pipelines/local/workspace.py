"""The local workspace: one folder holding S3, job directories, endpoints and the state database.

    <root>/s3/<bucket>/<key>      objects (s3://bucket/key)
    <root>/jobs/<execution>/<step>/<job>/   one job's relocated /opt/ml tree and its log
    <root>/endpoints/<name>/      a served model and its server log
    <root>/state.db               pipelines, executions, steps, model packages, endpoints (SQLite)
Deleting the folder resets the local target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from pipelines.s3_bridge import s3_uri_to_path


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def open(cls, root: str | Path) -> Workspace:
        workspace = cls(Path(root).expanduser().resolve())
        for folder in (workspace.s3_root, workspace.jobs_root, workspace.endpoints_root):
            folder.mkdir(parents=True, exist_ok=True)
        return workspace

    @property
    def s3_root(self) -> Path:
        return self.root / "s3"

    @property
    def jobs_root(self) -> Path:
        return self.root / "jobs"

    @property
    def endpoints_root(self) -> Path:
        return self.root / "endpoints"

    @property
    def state_db(self) -> Path:
        return self.root / "state.db"

    def path_for(self, url: str) -> Path:
        """The file or folder behind `s3://bucket/key` (inside the workspace), `file:///abs` or a plain path."""
        if url.startswith("s3://"):
            return s3_uri_to_path(self.s3_root, url.rstrip("/"))
        if url.startswith("file://"):
            return Path(unquote(urlparse(url).path))
        return Path(url).expanduser().resolve()

    def uri_for(self, bucket: str, key: str) -> str:
        return f"s3://{bucket}/{key.lstrip('/')}"

    def job_dir(self, execution_id: str, step_name: str, job_name: str) -> Path:
        path = self.jobs_root / execution_id / step_name / job_name
        path.mkdir(parents=True, exist_ok=True)
        return path
