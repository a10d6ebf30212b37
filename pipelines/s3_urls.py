"""S3 URLs, parsed in one place: every command that reads or writes `s3://bucket/key` splits it here."""

from __future__ import annotations

import re
from dataclasses import dataclass

# S3's bucket naming rules, less the ones a typo never breaks (no IP-address check).
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Url:
    bucket: str
    key: str  # no leading or trailing slash

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_url(url: str, where: str = "S3 URL") -> S3Url:
    """`s3://bucket/some/prefix` -> S3Url; anything else is a ValueError that says what a good one looks like.

    A prefix is required: a dataset written at a bucket's root mixes with everything else in it."""
    example = "s3://BUCKET/KEY/PREFIX, e.g. s3://my-bucket/datasets/pets/v1"
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ValueError(f"{where} {url!r} is not an S3 URL: write it as {example}")
    bucket, _, key = url[len("s3://"):].partition("/")
    key = key.strip("/")
    if not BUCKET_NAME.match(bucket):
        raise ValueError(f"{where} {url!r}: {bucket!r} is not a valid S3 bucket name (3-63 characters: lowercase "
                         f"letters, digits, dots and hyphens); write it as {example}")
    if not key:
        raise ValueError(f"{where} {url!r} names a bucket but no key prefix: write it as {example}")
    return S3Url(bucket, key)
