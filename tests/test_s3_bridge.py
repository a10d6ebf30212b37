"""`pipelines.s3_bridge`: the S3 calls the SDK makes while it builds a definition, answered from a folder (the local
workspace), or discarded and recorded (offline commands, `upsert` before validation) — no network either way."""

from __future__ import annotations

import io
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from pipelines.s3_bridge import S3Bridge, s3_uri_to_path


def client(bridge: S3Bridge):
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
    return bridge.attach(session).client("s3", endpoint_url="http://127.0.0.1:9")  # a closed port: never reached


def test_a_folder_bridge_stores_and_serves_objects_under_root_bucket_key(tmp_path: Path) -> None:
    s3 = client(S3Bridge(tmp_path))
    s3.put_object(Bucket="b", Key="code/a.txt", Body=b"hello")
    assert (tmp_path / "b" / "code" / "a.txt").read_bytes() == b"hello"
    assert s3.get_object(Bucket="b", Key="code/a.txt")["Body"].read() == b"hello"
    assert s3.head_object(Bucket="b", Key="code/a.txt")["ContentLength"] == 5
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="b", Prefix="code/")["Contents"]] == ["code/a.txt"]
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["b"]
    with pytest.raises(ClientError, match="404"):
        s3.head_object(Bucket="b", Key="missing")


def test_a_multipart_upload_is_assembled_in_part_order(tmp_path: Path) -> None:
    s3 = client(S3Bridge(tmp_path))
    s3.upload_fileobj(io.BytesIO(b"x" * (9 * 1024 * 1024)), "b", "big.bin",
                      Config=boto3.s3.transfer.TransferConfig(multipart_threshold=5 * 1024 * 1024,
                                                              multipart_chunksize=5 * 1024 * 1024, use_threads=False))
    assert (tmp_path / "b" / "big.bin").stat().st_size == 9 * 1024 * 1024


def test_a_recording_bridge_keeps_writes_for_replay_and_stores_nothing() -> None:
    bridge = S3Bridge(None, record=True)
    s3 = client(bridge)
    s3.put_object(Bucket="b", Key="k1", Body=b"one")
    s3.put_object(Bucket="b", Key="k2", Body="two")
    assert s3.list_objects_v2(Bucket="b")["KeyCount"] == 0  # nothing is kept to be read back
    replayed: list[tuple[str, str, bytes]] = []
    assert bridge.replay(lambda bucket, key, data: replayed.append((bucket, key, data))) == 2
    assert replayed == [("b", "k1", b"one"), ("b", "k2", b"two")]


def test_a_call_the_bridge_does_not_serve_is_refused_by_name() -> None:
    with pytest.raises(NotImplementedError, match="S3 DeleteObject is not served offline"):
        client(S3Bridge(None)).delete_object(Bucket="b", Key="k")


def test_keys_may_not_escape_the_root(tmp_path: Path) -> None:
    assert s3_uri_to_path(tmp_path, "s3://b/a/b.txt") == (tmp_path / "b" / "a" / "b.txt").resolve()
    with pytest.raises(ValueError, match="S3 key escapes the workspace"):
        s3_uri_to_path(tmp_path, "s3://b/../../etc/passwd")
    with pytest.raises(ValueError, match="not an S3 URI"):
        s3_uri_to_path(tmp_path, "/etc/passwd")
