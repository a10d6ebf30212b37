"""pipelines.step_cache: the cache key attributes AWS documents per step type, and CacheConfig's ExpireAfter."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipelines.step_cache import cache_key, cacheable, expire_after, key_attributes

PROCESSING = {"AppSpecification": {"ImageUri": "image", "ContainerEntrypoint": ["python3", "run.py"]},
              "ProcessingInputs": [{"InputName": "code", "S3Input": {"S3Uri": "s3://b/code/run.py"}}],
              "ProcessingOutputConfig": {"Outputs": [{"S3Output": {"S3Uri": "s3://b/exec1/out"}}]},
              "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.m5.xlarge"}}}


def test_only_the_documented_attributes_make_the_key() -> None:
    assert set(key_attributes("Processing", PROCESSING)) == {"AppSpecification", "Environment", "ProcessingInputs"}
    elsewhere = {**PROCESSING, "ProcessingOutputConfig": {"Outputs": [{"S3Output": {"S3Uri": "s3://b/exec2/out"}}]},
                 "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.c5.xlarge"}}}
    assert cache_key("Processing", elsewhere) == cache_key("Processing", PROCESSING)  # outputs, instance: not keys
    new_code = {**PROCESSING, "ProcessingInputs": [{"InputName": "code", "S3Input": {"S3Uri": "s3://b/code2.py"}}]}
    assert cache_key("Processing", new_code) != cache_key("Processing", PROCESSING)
    assert cache_key("Training", PROCESSING) != cache_key("Processing", PROCESSING)  # the type is in the key
    tuning = {"TrainingJobDefinition": {"StaticHyperParameters": {"seed": "1"}, "RoleArn": "a"}}
    assert key_attributes("Tuning", tuning)["TrainingJobDefinition.StaticHyperParameters"] == {"seed": "1"}


def test_only_enabled_steps_of_cacheable_types_are_looked_up() -> None:
    enabled = {"CacheConfig": {"Enabled": True, "ExpireAfter": "P30D"}}
    assert cacheable({"Type": "Training", **enabled}) and not cacheable({"Type": "Training"})
    assert not cacheable({"Type": "RegisterModel", **enabled})
    assert not cacheable({"Type": "Processing", "CacheConfig": {"Enabled": False}})


@pytest.mark.parametrize(("text", "expected"), [
    ("P30D", timedelta(days=30)), ("PT1H", timedelta(hours=1)), ("30d", timedelta(days=30)),
    ("T16m", timedelta(minutes=16)), ("30dT5h", timedelta(days=30, hours=5)), ("5y", timedelta(days=5 * 365)),
    ("P2W", timedelta(days=14)), ("P1M", timedelta(days=30)), ("PT0S", timedelta(0))])
def test_expire_after_reads_iso_8601_durations_as_sagemaker_writes_them(text: str, expected: timedelta) -> None:
    assert expire_after({"CacheConfig": {"Enabled": True, "ExpireAfter": text}}) == expected


def test_no_expire_after_is_no_limit_and_a_bad_one_is_named() -> None:
    assert expire_after({"CacheConfig": {"Enabled": True}}) is None
    with pytest.raises(ValueError, match="ExpireAfter '30 days' is not an ISO 8601 duration such as P30D"):
        expire_after({"CacheConfig": {"Enabled": True, "ExpireAfter": "30 days"}})
