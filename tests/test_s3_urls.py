"""parse_s3_url: the one place an S3 URL is split into bucket and key."""

from __future__ import annotations

import pytest

from pipelines.s3_urls import parse_s3_url


@pytest.mark.parametrize(
    ("url", "bucket", "key"),
    [
        ("s3://datasets/pets/v1", "datasets", "pets/v1"),
        ("s3://datasets/pets/v1/", "datasets", "pets/v1"),
        ("s3://my.bucket-1/a", "my.bucket-1", "a"),
    ],
)
def test_bucket_and_key_are_split_at_the_first_slash(url: str, bucket: str, key: str) -> None:
    parsed = parse_s3_url(url)
    assert (parsed.bucket, parsed.key) == (bucket, key)
    assert str(parsed) == f"s3://{bucket}/{key}"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://datasets", "--to 's3://datasets' names a bucket but no key prefix"),
        ("s3:///pets", "'' is not a valid S3 bucket name"),
        ("https://datasets.s3.amazonaws.com/pets", "is not an S3 URL: write it as s3://BUCKET/KEY/PREFIX"),
        ("", "--to '' is not an S3 URL"),
    ],
)
def test_a_url_that_is_no_s3_prefix_says_what_one_looks_like(url: str, message: str) -> None:
    with pytest.raises(ValueError, match="e.g. s3://my-bucket/datasets/pets/v1") as raised:
        parse_s3_url(url, "--to")
    assert message in str(raised.value)
