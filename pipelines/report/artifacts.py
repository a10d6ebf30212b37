"""Where the report reads the files a job wrote: the local workspace, or S3.

Both targets put outputs at the same S3 URIs (the local workspace maps `s3://bucket/key` to a file), so the report
asks for URIs and one of two small stores answers: `WorkspaceFiles` (local) or `S3Files` (boto3). The local engine
also keeps each job's directory; `job_file` reads from it, and answers None on SageMaker, which has no such thing.
"""

from __future__ import annotations

import builtins
import io
import json
import logging
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

MAX_READ_BYTES = 64 * 1024 * 1024  # a report never needs more from one object; a huge one is skipped, not loaded
MAX_LISTED = 1000


class Files(Protocol):
    def read(self, uri: str) -> bytes | None:
        """The object's bytes; None when it does not exist or cannot be read."""
        ...

    def list(self, prefix_uri: str) -> builtins.list[str]:
        """URIs of the objects under a prefix (at most MAX_LISTED), sorted."""
        ...

    def job_file(self, step: str, job_name: str, relative: str) -> bytes | None:
        """A file of a local job's directory (`<workspace>/jobs/<execution>/<step>/<job>/<relative>`)."""
        ...

    def job_names(self, step: str) -> builtins.list[str]:
        """The local jobs a step ran, oldest first (a failed step records no job name in its properties)."""
        ...


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def parent_uri(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[0]


def read_json(files: Files, uri: str) -> Any:
    return parse_json(files.read(uri))


def parse_json(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def tar_member(archive: bytes | None, name: str) -> bytes | None:
    """A file of a .tar.gz by its base name (output.tar.gz holds `history.json` at its top, or under a folder)."""
    if archive is None:
        return None
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            for member in tar.getmembers():
                if member.isfile() and Path(member.name).name == name:
                    handle = tar.extractfile(member)
                    return handle.read() if handle else None
    except (tarfile.TarError, OSError, EOFError):
        return None
    return None


class WorkspaceFiles:
    """The local target's workspace: `s3://` URIs are files under `<workspace>/s3/`."""

    def __init__(self, workspace: Any, execution_id: str, cache_sources: Mapping[str, str] | None = None) -> None:
        """`cache_sources`: step -> the execution whose job a cache hit reused (its job files are there)."""
        self.workspace, self.execution_id = workspace, execution_id
        self.cache_sources = dict(cache_sources or {})

    def _jobs_of(self, step: str) -> Path:
        return self.workspace.jobs_root / self.cache_sources.get(step, self.execution_id) / step

    def _path(self, uri: str) -> Path | None:
        try:
            return self.workspace.path_for(uri)
        except ValueError:
            return None

    def read(self, uri: str) -> bytes | None:
        path = self._path(uri)
        return _read_file(path) if path is not None else None

    def list(self, prefix_uri: str) -> builtins.list[str]:
        root = self._path(prefix_uri)
        if root is None or not root.is_dir():
            return []
        found = sorted(p for p in root.rglob("*") if p.is_file())[:MAX_LISTED]
        return [join_uri(prefix_uri, p.relative_to(root).as_posix()) for p in found]

    def job_file(self, step: str, job_name: str, relative: str) -> bytes | None:
        return _read_file(self._jobs_of(step) / job_name / relative)

    def job_names(self, step: str) -> builtins.list[str]:
        folder = self._jobs_of(step)
        jobs = [p for p in folder.glob("*") if p.is_dir()] if folder.is_dir() else []
        return [p.name for p in sorted(jobs, key=lambda p: p.stat().st_mtime)]


def _read_file(path: Path) -> bytes | None:
    try:
        if path.is_file() and path.stat().st_size <= MAX_READ_BYTES:
            return path.read_bytes()
    except OSError:
        pass
    return None


class S3Files:
    """S3 through a boto3 client; every failure (missing object, no permission) reads as 'not there'."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3

    def read(self, uri: str) -> bytes | None:
        bucket, key = _split(uri)
        if not bucket:
            return None
        try:
            response = self.s3.get_object(Bucket=bucket, Key=key)
            if response.get("ContentLength", 0) > MAX_READ_BYTES:
                return None
            return response["Body"].read()
        except (ClientError, BotoCoreError) as err:
            log.debug("cannot read %s: %s", uri, err)
            return None

    def list(self, prefix_uri: str) -> builtins.list[str]:
        bucket, prefix = _split(prefix_uri)
        if not bucket:
            return []
        keys: builtins.list[str] = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/")
                                                                           + "/"):
                keys += [item["Key"] for item in page.get("Contents", [])]
                if len(keys) >= MAX_LISTED:
                    break
        except (ClientError, BotoCoreError) as err:
            log.debug("cannot list %s: %s", prefix_uri, err)
        return [f"s3://{bucket}/{key}" for key in sorted(keys)[:MAX_LISTED]]

    def job_file(self, step: str, job_name: str, relative: str) -> bytes | None:
        return None

    def job_names(self, step: str) -> builtins.list[str]:
        return []


def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        return "", ""
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key
