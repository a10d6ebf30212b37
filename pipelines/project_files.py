"""Where the files that are not Python modules live: `pipeline.toml` (the defaults) and `scripts/` (container code).

In a checkout they sit at the repository root. A wheel cannot ship files outside its packages, so `setup.py` copies
them into `pipelines/bundled/`; an installed package finds them there.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
CHECKOUT_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_FILES = ("pipeline.toml", "scripts")  # setup.py copies exactly these


def project_path(name: str) -> Path:
    """`name` (one of BUNDLED_FILES) in the installed package, else in the checkout."""
    bundled = BUNDLED_DIR / name
    return bundled if bundled.exists() else CHECKOUT_ROOT / name


DEFAULTS_FILE = project_path("pipeline.toml")
SCRIPTS_DIR = project_path("scripts")
