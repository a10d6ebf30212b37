"""SageMaker Debugger hook, when the job was given one, and a silent stand-in otherwise.

SageMaker writes the hook configuration to ``/opt/ml/input/config/debughookconfig.json``; smdebug reads it from
``$SMDEBUG_CONFIG_FILE_PATH`` (default that path) and its profiler and TensorBoard configs from
``$SMPROFILER_CONFIG_PATH`` and ``$TENSORBOARD_CONFIG_FILE_PATH``. All three are pointed under ``SAGEMAKER_BASE_DIR``
before smdebug is imported, so a relocated job finds its own files, never a stray ``/opt/ml``.
Training never depends on smdebug: missing library, missing config or a failure to create the hook each give one log
line and a run without the hook.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CONFIG_NAMES = {
    "SMDEBUG_CONFIG_FILE_PATH": "debughookconfig.json",
    "SMPROFILER_CONFIG_PATH": "profilerconfig.json",
    "TENSORBOARD_CONFIG_FILE_PATH": "tensorboardoutputconfig.json",
}


def hook_config_path(env: dict[str, str] | os._Environ) -> Path:
    base = Path(env.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
    return Path(env.get("SMDEBUG_CONFIG_FILE_PATH") or base / "input/config" / CONFIG_NAMES["SMDEBUG_CONFIG_FILE_PATH"])


class DebugHook:
    """Forwards to an smdebug hook when there is one; every method is a no-op otherwise."""

    def __init__(self, hook: Any = None, modes: Any = None) -> None:
        self.hook, self.modes = hook, modes

    @property
    def active(self) -> bool:
        return self.hook is not None

    def train(self) -> None:
        if self.hook is not None:
            self.hook.set_mode(self.modes.TRAIN)

    def eval(self) -> None:
        if self.hook is not None:
            self.hook.set_mode(self.modes.EVAL)

    def close(self) -> None:
        if self.hook is not None:
            self.hook.close()


def create_hook(model: Any, criterion: Any) -> tuple[DebugHook, str]:
    """The hook registered on ``model`` and ``criterion`` (or a no-op one), and a log line saying which and why."""
    path = hook_config_path(os.environ)
    if not path.is_file():
        return DebugHook(), f"debugger: off (no hook config at {path})"
    base = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
    os.environ["SMDEBUG_CONFIG_FILE_PATH"] = str(path)
    for variable, name in CONFIG_NAMES.items():
        os.environ.setdefault(variable, str(base / "input/config" / name))
    try:
        from smdebug import modes
        from smdebug.pytorch import Hook
    except Exception as exc:  # not installed, or broken against this torch/numpy/protobuf
        return DebugHook(), f"debugger: off (smdebug failed to import: {type(exc).__name__}: {exc})"
    try:
        hook = Hook.create_from_json_file(str(path))
        out_of_place_relus(model)
        save_labels_and_predictions(hook, criterion)  # before register_loss: see its docstring
        hook.register_module(model)
        hook.register_loss(criterion)
    except Exception as exc:
        return DebugHook(), f"debugger: off (could not create the hook from {path}: {type(exc).__name__}: {exc})"
    return DebugHook(hook, modes), f"debugger: on (config {path}, tensors to {hook.out_dir})"


# ---------------------------------------------------------------------------------------------- what the rules read
def out_of_place_relus(model: Any) -> None:
    """An in-place ReLU (torchvision's default) overwrites its input before smdebug's forward hook reads it, so
    ``relu_input`` would hold the output. PoorWeightInitialization reads the inputs: while the hook watches, ReLUs
    work out of place (a little more memory, the same numbers)."""
    for module in model.modules():
        if type(module).__name__ == "ReLU" and getattr(module, "inplace", False):
            module.inplace = False


def save_labels_and_predictions(hook: Any, criterion: Any) -> None:
    """ClassImbalance reads tensors named ``labels`` and ``predictions``. The criterion sees both (the target and
    the logits), so a forward hook on it saves them without touching the training loop: only when the job's hook
    config has a ``labels`` collection and saves it at this step (a GPU->CPU copy otherwise wasted). Registered
    before smdebug's own hook on the criterion, which writes them with the loss of the same step."""

    def save(module: Any, inputs: tuple, output: Any) -> None:
        try:
            if len(inputs) < 2 or "labels" not in hook.collection_manager.collections:
                return
            if not hook._is_collection_being_saved_for_step("labels"):  # smdebug has no public "saving now?"
                return
            logits, target = inputs[0], inputs[1]
            hook.save_tensor("labels", target.argmax(1) if target.ndim > 1 else target, "labels")
            hook.save_tensor("predictions", logits.detach().argmax(1), "predictions")
        except Exception:  # training never depends on smdebug; ClassImbalance then reports the missing tensors
            pass

    criterion.register_forward_hook(save)
