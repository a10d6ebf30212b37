"""A multi-model endpoint's models (pipelines.local.model_cache) and its HTTP face (serving.create_app over a
ModelCache), in-process, with plain-Python models packed the way PublishModel publishes them: `v<n>.tar.gz` under
one prefix. What each bad TargetModel gets: missing header 400, a path that is not relative 400, an unknown key 404
listing the keys there are, an archive that cannot be unpacked 500 naming it, a model whose model_fn fails 500
naming it, one bigger than the whole budget 507; none of them unloads a loaded model."""

from __future__ import annotations

import json
import os
import tarfile
import warnings
from pathlib import Path

import pytest
from test_serving import _restore_import_state, png_bytes, write_tiny_model  # noqa: F401 (autouse: undoes sys.path)

from pipelines.local.model_cache import MB, TARGET_MODEL_HEADER, ModelCache, directory_size
from pipelines.local.serving import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PREFIX_URL = "s3://bucket/image-classifier/multi-model/"
# Each model's code/ has its own helper module of the same name: the second model must not get the first's.
HELPER_IMPORT = "from helper import SUFFIX\n"
OUTPUT_WITH_HELPER = '''
def output_fn(prediction, accept):
    return json.dumps({"predictions": [{"top_k": [{"label": prediction + SUFFIX, "probability": 1.0}]}]})
'''


def publish(prefix: Path, key: str, classes: list[str], kind: str = "plain", suffix: str = "") -> Path:
    """`prefix/key`: a model.tar.gz whose model always answers classes[0] + suffix."""
    source = write_tiny_model(prefix.parent / "sources" / key, classes, kind=kind)
    entry = source / "code" / "inference.py"
    if kind == "plain":
        entry.write_text(HELPER_IMPORT + entry.read_text() + OUTPUT_WITH_HELPER)
        (source / "code" / "helper.py").write_text(f"SUFFIX = {suffix!r}\n")
    archive = prefix / key
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)
    return archive


def top_label(response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]["top_k"][0]["label"]


@pytest.fixture()
def prefix(tmp_path: Path) -> Path:
    folder = tmp_path / "multi-model"
    publish(folder, "v1.tar.gz", ["cat", "dog"], suffix="-helper1")
    publish(folder, "v2.tar.gz", ["oak", "elm"], suffix="-helper2")
    publish(folder, "teams/v3.tar.gz", ["red", "blue"], suffix="-helper3")
    return folder


def cache_over(prefix: Path, budget_mb: float = 64) -> ModelCache:
    return ModelCache(prefix, PREFIX_URL, prefix.parent / "cache", int(budget_mb * MB), "code/inference.py")


def client(cache: ModelCache) -> TestClient:
    return TestClient(create_app(cache))


def invoke(http: TestClient, key: str | None):
    headers = {"Content-Type": "image/png", **({TARGET_MODEL_HEADER: key} if key is not None else {})}
    return http.post("/invocations", content=png_bytes(), headers=headers)


def test_each_target_model_answers_with_its_own_classes_and_its_own_helper_code(prefix: Path) -> None:
    http = client(cache_over(prefix))
    assert top_label(invoke(http, "v1.tar.gz")) == "cat-helper1"
    assert top_label(invoke(http, "v2.tar.gz")) == "oak-helper2"
    assert top_label(invoke(http, "teams/v3.tar.gz")) == "red-helper3"  # a key may have folders, as in S3
    assert top_label(invoke(http, "v1.tar.gz")) == "cat-helper1"
    listed = http.get("/models").json()
    assert listed["mode"] == "MultiModel" and listed["prefix"] == PREFIX_URL and listed["evictions"] == 0
    assert [(m["target_model"], m["invocations"]) for m in listed["loaded"]] == [
        ("v2.tar.gz", 1), ("teams/v3.tar.gz", 1), ("v1.tar.gz", 2)]  # least recently used first


def test_a_budget_that_holds_one_model_evicts_the_least_recently_used_and_reloads_on_demand(prefix: Path) -> None:
    cache = cache_over(prefix)
    cache.get("v1.tar.gz")
    footprint = cache.loaded()[0]["footprint_bytes"]
    assert footprint == directory_size(next((prefix.parent / "cache").glob("*/model")))
    cache.budget = int(footprint * 1.5)  # room for one model, not two
    http = client(cache)
    assert top_label(invoke(http, "v2.tar.gz")) == "oak-helper2"
    assert [m["target_model"] for m in cache.loaded()] == ["v2.tar.gz"] and cache.evictions == 1
    assert top_label(invoke(http, "v1.tar.gz")) == "cat-helper1"  # loaded again, v2 out
    assert [m["target_model"] for m in cache.loaded()] == ["v1.tar.gz"] and cache.evictions == 2


def test_bad_target_models_get_their_own_status_and_leave_the_loaded_models_alone(prefix: Path) -> None:
    (prefix / "corrupt.tar.gz").write_bytes(b"this is not a gzip file")
    publish(prefix, "broken.tar.gz", ["x"], kind="broken")
    cache = cache_over(prefix)
    http = client(cache)
    assert top_label(invoke(http, "v1.tar.gz")) == "cat-helper1"

    missing = invoke(http, None)
    assert missing.status_code == 400 and "multi-model endpoint" in missing.json()["error"]
    assert "v1.tar.gz, v2.tar.gz" in missing.json()["error"]
    unknown = invoke(http, "v9.tar.gz")
    assert unknown.status_code == 404
    assert unknown.json()["error"].startswith(f"model 'v9.tar.gz' not found: there is no {PREFIX_URL}v9.tar.gz")
    assert "broken.tar.gz, corrupt.tar.gz, teams/v3.tar.gz, v1.tar.gz, v2.tar.gz" in unknown.json()["error"]
    for escaping in ("../v1.tar.gz", "/etc/passwd", "a/../../b"):
        refused = invoke(http, escaping)
        assert refused.status_code == 400 and "relative to the model prefix" in refused.json()["error"], escaping
    corrupt = invoke(http, "corrupt.tar.gz")
    assert corrupt.status_code == 500 and "model 'corrupt.tar.gz'" in corrupt.json()["error"]
    assert "cannot be unpacked" in corrupt.json()["error"]
    broken = invoke(http, "broken.tar.gz")
    assert broken.status_code == 500
    assert "model 'broken.tar.gz' (s3://bucket/image-classifier/multi-model/broken.tar.gz) failed to load: " \
           "RuntimeError: weights.json is corrupt" in broken.json()["error"]
    cache.budget = 1  # byte: no model fits
    too_big = invoke(http, "v2.tar.gz")
    assert too_big.status_code == 507 and "[local] endpoint_memory_mb" in too_big.json()["error"]

    assert [m["target_model"] for m in cache.loaded()] == ["v1.tar.gz"] and cache.evictions == 0
    assert top_label(invoke(http, "v1.tar.gz")) == "cat-helper1"


def test_a_single_model_endpoint_refuses_a_target_model_and_says_it_serves_one(tmp_path: Path) -> None:
    from pipelines.local.inference_handlers import InferenceHandlers

    http = TestClient(create_app(InferenceHandlers.load(write_tiny_model(tmp_path / "m", ["cat"], kind="plain"))))
    refused = invoke(http, "v1.tar.gz")
    assert refused.status_code == 400 and "serves one model and takes no TargetModel" in refused.json()["error"]
    assert top_label(invoke(http, None)) == "cat"
    assert http.get("/models").json() == {"mode": "SingleModel"}


def test_an_archive_replaced_under_the_same_key_is_unpacked_again(prefix: Path) -> None:
    cache = cache_over(prefix)
    cache.get("v1.tar.gz")
    cache.unload("v1.tar.gz")
    archive = publish(prefix, "v1.tar.gz", ["fox"], suffix="-new")
    stat = archive.stat()
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the same second on a coarse clock
    handlers = cache.get("v1.tar.gz")
    body, _ = handlers.invoke(png_bytes(), "image/png", "application/json")
    assert json.loads(body)["predictions"][0]["top_k"][0]["label"] == "fox-new"

