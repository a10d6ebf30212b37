"""scripts/train.py started the way SageMaker's PyTorch training container starts it: `sagemaker-training` (from
PyPI, the `containers` extra) reads the SDK-written hyperparameters.json from /opt/ml (relocated with
SAGEMAKER_BASE_DIR), and its own `Environment.to_cmd_args()` and `to_env_vars()` give the argv and the SM_* env.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "scripts"
# What the container's entry point does before it runs the user script: build the environment from /opt/ml.
TOOLKIT = r'''
import json
from sagemaker_training import environment
env = environment.Environment()
print(json.dumps({"args": env.to_cmd_args(), "env": env.to_env_vars()}))
'''
CLASSES = ("0-zero", "1-one", "7-seven")


def sdk_written_hyperparameters(tmp_path: Path) -> dict[str, str]:
    """TuneHyperparameters' static hyperparameters exactly as the SDK wrote them into the definition, plus one
    trial's tuned values as the tuning service passes them (the ranges' strings)."""
    from pipelines.building import build_definition
    from pipelines.config import load_config
    from pipelines.local.workspace import Workspace
    from pipelines.session import Uploads, build_pipeline_session

    config = load_config(environ={"PIPELINE_LOCAL_WORKSPACE": str(tmp_path / "ws")})
    workspace = Workspace.open(config.local.workspace)
    built = build_definition(config, build_pipeline_session(config, Uploads.WORKSPACE,
                                                            workspace_s3=workspace.s3_root))
    [tuning] = [step for step in json.loads(built.text)["Steps"] if step["Name"] == "TuneHyperparameters"]
    static = tuning["Arguments"]["TrainingJobDefinition"]["StaticHyperParameters"]
    # Small and quick, but written the SDK's way (json.dumps of each value).
    static.update({key: json.dumps(value) for key, value in
                   {"image_size": 16, "epochs": 1, "arch": "shufflenet_v2_x0_5", "pretrained": False}.items()})
    return {**static, "lr": "0.003", "batch_size": '"32"'}


def test_train_py_runs_with_the_argv_and_env_the_training_toolkit_builds(tmp_path: Path,
                                                                         small_digits_dir: Path) -> None:
    base = tmp_path / "opt-ml"
    config = base / "input" / "config"
    config.mkdir(parents=True)
    hyperparameters = sdk_written_hyperparameters(tmp_path)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    channels = {"train": {"TrainingInputMode": "File"}, "validation": {"TrainingInputMode": "File"}}
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    for channel in channels:
        for name in CLASSES:
            shutil.copytree(small_digits_dir / name, base / "input" / "data" / channel / name)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMDEBUG_", "SMPROFILER_"))}
    env["SAGEMAKER_BASE_DIR"] = str(base)
    toolkit = subprocess.run([sys.executable, "-c", TOOLKIT], env=env, capture_output=True, text=True, timeout=120)
    assert toolkit.returncode == 0, toolkit.stderr[-3000:]
    built = json.loads(toolkit.stdout.strip().splitlines()[-1])
    args = built["args"]
    # The toolkit keeps the SDK's sagemaker_* values for itself (SM_USER_ENTRY_POINT, ...); the rest is argv.
    assert args[args.index("--batch_size") + 1] == "32" and not any(a.startswith("--sagemaker_") for a in args)
    assert built["env"]["SM_USER_ENTRY_POINT"] == "train.py"

    job_env = {**env, **{key: str(value) for key, value in built["env"].items()}, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, str(SCRIPTS_DIR / "train.py"), *args], env=job_env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert any(line.startswith("epoch=1/1 ") for line in done.stdout.splitlines()), done.stdout[-2000:]
    model_dir = Path(built["env"]["SM_MODEL_DIR"])
    assert (model_dir / "model.pth").is_file()
    assert json.loads((model_dir / "model_meta.json").read_text())["class_names"] == list(CLASSES)


def test_on_the_second_of_two_instances_the_toolkits_environment_makes_train_py_rank_1(tmp_path: Path) -> None:
    """What sagemaker-training builds on algo-2 of a 2-instance job (resourceconfig.json as SageMaker writes it), as
    scripts/distributed.py reads it; the instance count and the distribution stay framework parameters, not argv."""
    base = tmp_path / "opt-ml"
    config = base / "input" / "config"
    config.mkdir(parents=True)
    hyperparameters = {"lr": "0.003", "sagemaker_program": '"train.py"', "sagemaker_instance_count": "2",
                       "sagemaker_torch_distributed_enabled": "true"}
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]}))
    (config / "inputdataconfig.json").write_text("{}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMDEBUG_", "SMPROFILER_"))}
    env["SAGEMAKER_BASE_DIR"] = str(base)
    toolkit = subprocess.run([sys.executable, "-c", TOOLKIT.replace(
        '"env": env.to_env_vars()', '"env": env.to_env_vars(), "framework": env.additional_framework_parameters')],
        env=env, capture_output=True, text=True, timeout=120)
    assert toolkit.returncode == 0, toolkit.stderr[-3000:]
    built = json.loads(toolkit.stdout.strip().splitlines()[-1])
    assert built["args"] == ["--lr", "0.003"]
    assert built["framework"] == {"sagemaker_instance_count": 2, "sagemaker_torch_distributed_enabled": True}

    sys.path.insert(0, str(SCRIPTS_DIR))
    try:
        from distributed import world_from_env
    finally:
        sys.path.remove(str(SCRIPTS_DIR))
    # sagemaker-pytorch-training-toolkit then sets MASTER_ADDR (the first host) and MASTER_PORT 7777: the same values
    # distributed.py falls back to without them.
    world = world_from_env(built["env"])
    assert world_from_env({**built["env"], "MASTER_ADDR": "algo-1", "MASTER_PORT": "7777"}) == world
    assert (world.rank, world.size, world.master_addr, world.master_port, world.source) == (
        1, 2, "algo-1", 7777, "hosts")
