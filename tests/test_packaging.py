"""A non-editable install, as `pip install .` makes it: the wheel carries pipeline.toml and scripts/, and the
installed `image-pipeline` builds the definition from them, with no checkout on the path.

The fresh environment borrows this one's dependencies through a .pth line (no download, no torch install), which
does not run this environment's own .pth files: the editable install of the checkout stays out of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ("pipelines/bundled/pipeline.toml", "pipelines/bundled/scripts/preprocess.py",
           "pipelines/bundled/scripts/train.py", "pipelines/bundled/scripts/inference.py",
           "pipelines/bundled/scripts/rgb_conversion.py", "pipelines/bundled/scripts/requirements.txt")


def run(*command: str | Path, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")
           and not k.startswith("PIPELINE_")}
    done = subprocess.run([str(c) for c in command], cwd=cwd, env={**env, "SAGEMAKER_SUPPRESS_V2_WARNING": "1"},
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, command))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_the_installed_package_finds_its_defaults_and_container_scripts(tmp_path: Path) -> None:
    run(sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist",
        cwd=REPO_ROOT)
    [wheel] = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(BUNDLED) <= names, set(BUNDLED) - names

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=tmp_path).stdout.strip())
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel, cwd=tmp_path)

    where = json.loads(run(python, "-I", "-c", "import json, pipelines.project_files as f, steps.containers as c; "
                           "print(json.dumps([f.__file__, str(f.DEFAULTS_FILE), str(c.SCRIPTS_DIR)]))",
                           cwd=tmp_path).stdout.strip().splitlines()[-1])  # the last line: after the SDK's own
    assert all(path.startswith(str(site)) for path in where), where  # the installed copy, not the checkout

    definition = json.loads(run(venv / "bin" / "image-pipeline", "definition", cwd=tmp_path).stdout)
    steps = [step["Name"] for step in definition["Steps"]]
    assert steps[:2] == ["PrepareData", "TuneHyperparameters"], steps
