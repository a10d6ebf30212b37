"""PublishModel (multi-model deployment): the registered model.tar.gz, copied as `v<version>.tar.gz` to the folder
whose upload is the multi-model endpoint's model-data prefix, so `TargetModel="v<version>.tar.gz"` serves exactly
that registered version.

Reads the SageMaker Processing contract only: the artifact in /opt/ml/processing/model, the output folder
/opt/ml/processing/published (both under SAGEMAKER_BASE_DIR when it is set, as in local runs), the model package
ARN as an argument.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

ARTIFACT = "model.tar.gz"
# arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>
VERSIONED_PACKAGE_ARN = re.compile(r"^arn:[\w-]+:sagemaker:[\w-]*:\d*:model-package/[^/]+/(\d+)$")


class PublishError(Exception):
    """The inputs are not what the step gives: the message says which."""


def target_model_key(model_package_arn: str) -> str:
    """`v<version>.tar.gz`: the TargetModel a request names to be served by this registered version."""
    match = VERSIONED_PACKAGE_ARN.match(model_package_arn.strip())
    if match is None:
        raise PublishError(f"{model_package_arn!r} is not a versioned model package ARN "
                           "(arn:aws:sagemaker:REGION:ACCOUNT:model-package/GROUP/VERSION)")
    return f"v{int(match.group(1))}.tar.gz"


def publish(model_dir: Path, published_dir: Path, model_package_arn: str) -> dict[str, str]:
    """Copies `model_dir/model.tar.gz` to `published_dir/<key>`; returns what was published (also written beside
    it as `<key>.json`, for people reading the prefix)."""
    source = model_dir / ARTIFACT
    if not source.is_file():
        found = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
        raise PublishError(f"no {ARTIFACT} in {model_dir} (found: {', '.join(found) or 'nothing'})")
    key = target_model_key(model_package_arn)
    published_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, published_dir / key)
    digest = hashlib.sha256((published_dir / key).read_bytes()).hexdigest()
    record = {"target_model": key, "model_package_arn": model_package_arn, "sha256": digest}
    (published_dir / f"{key}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    processing = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")) / "processing"
    parser = argparse.ArgumentParser(description="Publish a registered model under the multi-model prefix.")
    parser.add_argument("--model-package-arn", required=True)
    parser.add_argument("--model-dir", type=Path, default=processing / "model")
    parser.add_argument("--published-dir", type=Path, default=processing / "published")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        record = publish(args.model_dir, args.published_dir, args.model_package_arn)
    except PublishError as exc:
        print("publish_model.py: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    print(f"published {record['model_package_arn']} as TargetModel {record['target_model']} "
          f"(sha256 {record['sha256'][:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
