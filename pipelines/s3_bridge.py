"""S3 as a folder: serves the S3 calls the SageMaker SDK makes while it builds a definition, without a network.

The SDK uploads code (``sourcedir.tar.gz``, processing scripts) while it *builds* step arguments. Offline commands
(`definition`, `validate`) and the local target must not reach AWS for that, so a botocore ``before-call`` handler
answers those calls: with a folder (``root/<bucket>/<key>``, the local workspace) or with nothing (a dry run that
only needs the URIs the SDK computes). botocore treats a handler's return value as the service's response, which is
how its own ``Stubber`` works.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class _HttpStub:
    status_code = 200
    headers: dict[str, str] = {}
    raw = None
    content = b""


def s3_uri_to_path(root: Path, uri: str) -> Path:
    """``s3://bucket/a/b`` -> ``root/bucket/a/b``, refusing keys that would escape ``root``."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return _object_path(root, bucket, key)


def _object_path(root: Path, bucket: str, key: str) -> Path:
    path = (root / bucket / key).resolve()
    if not str(path).startswith(str(root.resolve())):
        raise ValueError(f"S3 key escapes the workspace: s3://{bucket}/{key}")
    return path


class S3Bridge:
    """Answers S3 calls of one boto3 session from a folder, or discards writes when ``root`` is None.

    With ``record=True`` writes are also kept in memory, to be replayed to real S3 once the definition they belong
    to has passed validation (`upsert` must not upload code for a definition it then refuses).
    """

    def __init__(self, root: Path | None, record: bool = False) -> None:
        self.root = Path(root) if root is not None else None
        self.record = record
        self.recorded: dict[tuple[str, str], bytes] = {}
        self._uploads: dict[str, dict[str, bytes]] = {}
        self._handlers: dict[str, Handler] = {
            "PutObject": self._put_object,
            "HeadObject": self._head_object,
            "GetObject": self._get_object,
            "ListObjectsV2": self._list_objects,
            "HeadBucket": lambda params: {},
            # The SDK looks its default bucket up by listing buckets; here every bucket exists.
            "ListBuckets": self._list_buckets,
            "CreateBucket": lambda params: {"Location": f"/{params['Bucket']}"},
            "GetBucketLocation": lambda params: {"LocationConstraint": None},
            "CreateMultipartUpload": self._create_multipart,
            "UploadPart": self._upload_part,
            "CompleteMultipartUpload": self._complete_multipart,
            "AbortMultipartUpload": lambda params: {},
        }

    def attach(self, boto_session: boto3.Session) -> boto3.Session:
        # The API parameters are only visible before they are serialized; the response is given at before-call.
        boto_session.events.register("before-parameter-build.s3.*", self._capture)
        boto_session.events.register("before-call.s3.*", self._dispatch)
        return boto_session

    @staticmethod
    def _capture(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["s3_bridge_params"] = dict(params)

    def _dispatch(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[_HttpStub, dict[str, Any]]:
        handler = self._handlers.get(model.name)
        if handler is None:
            raise NotImplementedError(f"S3 {model.name} is not served offline; this command needs no such call")
        return _HttpStub(), handler(context.get("s3_bridge_params", {}))

    def _path(self, params: dict[str, Any]) -> Path | None:
        return None if self.root is None else _object_path(self.root, params["Bucket"], params["Key"])

    def replay(self, put: Callable[[str, str, bytes], None]) -> int:
        """Hands each recorded object to `put(bucket, key, data)` (a real S3 client, a folder); returns how many."""
        for (bucket, key), data in self.recorded.items():
            put(bucket, key, data)
        return len(self.recorded)

    def forget(self, uris: list[str]) -> None:
        """Drops recorded objects the definition no longer names (they are not replayed)."""
        for uri in uris:
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            self.recorded.pop((bucket, key), None)

    def _write(self, params: dict[str, Any], data: bytes) -> dict[str, Any]:
        if self.record:
            self.recorded[(params["Bucket"], params["Key"])] = data
        path = self._path(params)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return {"ETag": f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'}

    def _put_object(self, params: dict[str, Any]) -> dict[str, Any]:
        body = params.get("Body", b"")
        data = body.read() if hasattr(body, "read") else (body.encode() if isinstance(body, str) else body)
        return self._write(params, data)

    def _existing(self, params: dict[str, Any]) -> Path:
        from botocore.exceptions import ClientError

        path = self._path(params)
        if path is None or not path.is_file():
            error = {"Error": {"Code": "404", "Message": f"no object s3://{params['Bucket']}/{params['Key']}"}}
            raise ClientError(error, "HeadObject")
        return path

    def _head_object(self, params: dict[str, Any]) -> dict[str, Any]:
        path = self._existing(params)
        stat = path.stat()
        return {"ContentLength": stat.st_size, "LastModified": datetime.fromtimestamp(stat.st_mtime, UTC)}

    def _get_object(self, params: dict[str, Any]) -> dict[str, Any]:
        from botocore.response import StreamingBody

        data = self._existing(params).read_bytes()
        return {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentLength": len(data)}

    def _list_objects(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("Prefix", "")
        if self.root is None:
            return {"KeyCount": 0, "IsTruncated": False}
        bucket_dir = self.root / params["Bucket"]
        keys = sorted(
            str(p.relative_to(bucket_dir)) for p in bucket_dir.rglob("*") if p.is_file()
        ) if bucket_dir.is_dir() else []
        contents = [{"Key": k, "Size": (bucket_dir / k).stat().st_size} for k in keys if k.startswith(prefix)]
        return {"Contents": contents, "KeyCount": len(contents), "IsTruncated": False}

    def _list_buckets(self, params: dict[str, Any]) -> dict[str, Any]:
        names = sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root and self.root.is_dir() else []
        return {"Buckets": [{"Name": name, "CreationDate": datetime(2020, 1, 1, tzinfo=UTC)} for name in names]}

    def _create_multipart(self, params: dict[str, Any]) -> dict[str, Any]:
        upload_id = f"{params['Bucket']}/{params['Key']}"
        self._uploads[upload_id] = {}
        return {"UploadId": upload_id, "Bucket": params["Bucket"], "Key": params["Key"]}

    def _upload_part(self, params: dict[str, Any]) -> dict[str, Any]:
        body = params["Body"]
        data = body.read() if hasattr(body, "read") else body
        self._uploads[params["UploadId"]][params["PartNumber"]] = data
        return {"ETag": f'"{params["PartNumber"]}"'}

    def _complete_multipart(self, params: dict[str, Any]) -> dict[str, Any]:
        parts = self._uploads.pop(params["UploadId"])
        data = b"".join(parts[number] for number in sorted(parts))
        self._write(params, data)
        return {"Bucket": params["Bucket"], "Key": params["Key"]}
