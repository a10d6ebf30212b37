"""Debugger rules (pipelines/local/debugging) over real smdebug trials: tiny torch runs in this process with the
training script's own hook (scripts/debugger.py, the hook config the step builder makes); each rule fires on a
deliberately broken run and stays quiet on a healthy one, and reports Error when the job saved too little."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

import debugger
import numpy as np
import pytest
import torch
from sagemaker.debugger import rule_configs
from torch import nn

from pipelines.config import ConfigError, load_config
from pipelines.local.debugging import job as debugging_job
from pipelines.local.debugging.job import JobRules, load_runner
from pipelines.local.step_api import StepFailed
from steps.training import rule_collections

RULE_NAMES = {"LossNotDecreasing": "loss_not_decreasing", "VanishingGradient": "vanishing_gradient",
              "ExplodingTensor": "exploding_tensor", "Overfit": "overfit", "Overtraining": "overtraining",
              "PoorWeightInitialization": "poor_weight_initialization", "ClassImbalance": "class_imbalance",
              "DeadRelu": "dead_relu"}
runner = load_runner()


# ---------------------------------------------------------------------------------------------- tiny runs
class Layer(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.fc, self.relu = nn.Linear(n_in, n_out), nn.ReLU(inplace=True)  # tensors "<layer>.relu_input_0"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.fc(x))


class Net(nn.Module):
    def __init__(self, features: int = 8, width: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.hidden1, self.hidden2, self.out = Layer(features, width), Layer(width, width), nn.Linear(width, classes)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden2(self.hidden1(x)))


def blobs(counts: list[int], seed: int, noise: float = 2.0, shuffle_labels: bool = False) -> tuple:
    """Gaussian blobs around fixed class centres, `counts[c]` samples of class c, in a random order."""
    centres = np.random.default_rng(123).normal(0, 1.5, (len(counts), 8))
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.concatenate([np.full(n, c) for c, n in enumerate(counts)]))
    x = centres[y] + rng.normal(0, noise, (len(y), 8))
    if shuffle_labels:
        y = rng.permutation(y)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def hook_collections(save_interval: int) -> list[dict[str, Any]]:
    """The DebugHookConfig collections the step builder makes for all eight rules."""
    found: dict[str, dict[str, Any]] = {}
    for name in RULE_NAMES.values():
        for config in rule_collections(name, getattr(rule_configs, name)(), save_interval):
            found[config.name] = {"CollectionName": config.name, "CollectionParameters": config.parameters}
    return list(found.values())


def train(root: Path, model: nn.Module, train_set: tuple, val_set: tuple, *, epochs: int = 4, lr: float = 0.01,
          sgd: bool = False, batch: int = 32, shuffle: bool = True, save_interval: int = 5,
          collections: list[dict[str, Any]] | None = None) -> Path:
    """Trains like scripts/train.py does (TRAIN then EVAL each epoch) with its smdebug hook; returns the trial dir."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "debughookconfig.json"
    config.write_text(json.dumps({"LocalPath": str(root / "tensors"),
                                  "CollectionConfigurations": collections or hook_collections(save_interval)}))
    criterion = nn.CrossEntropyLoss()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    with mock.patch.dict(os.environ, {"SMDEBUG_CONFIG_FILE_PATH": str(config), "SAGEMAKER_BASE_DIR": str(root)}):
        hook, message = debugger.create_hook(model, criterion)
        assert hook.active, message
        parameters = [p for p in model.parameters() if p.requires_grad]
        optimizer = (torch.optim.SGD if sgd else torch.optim.Adam)(parameters, lr=lr) if parameters else None
        (x, y), (vx, vy) = train_set, val_set
        for _ in range(epochs):
            hook.train()
            order = torch.randperm(len(y), generator=generator) if shuffle else torch.arange(len(y))
            for i in range(0, len(y) - batch + 1, batch):
                loss = criterion(model(x[order[i:i + batch]]), y[order[i:i + batch]])
                if optimizer is not None:
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
            hook.eval()
            with torch.no_grad():
                for i in range(0, len(vy), batch):
                    criterion(model(vx[i:i + batch]), vy[i:i + batch])
        hook.close()
    return root / "tensors"


def evaluate(tensors: Path, rule: str, output_dir: Path | None = None, **parameters: Any) -> Any:
    """One rule over a finished trial, with parameters as the request carries them (strings)."""
    config = runner.RuleConfig(rule, rule, {key: str(value) for key, value in parameters.items()})
    evaluation = runner.RuleEvaluation([config], tensors, "trainmodel-job", "us-east-1", output_dir)
    evaluation.finish()
    return evaluation.runs[0]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices on a shared machine: more threads only spin
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Balanced, learnable data, a well-initialised net, a sound learning rate; still improving after 4 epochs."""
    return train(tmp_path_factory.mktemp("healthy"), Net(), blobs([96] * 4, seed=0), blobs([48] * 4, seed=1))


@pytest.fixture(scope="module")
def diverging(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A huge learning rate (plain SGD, lr 1e4)."""
    return train(tmp_path_factory.mktemp("diverging"), Net(), blobs([96] * 4, seed=0), blobs([48] * 4, seed=1),
                 lr=1e4, sgd=True)


# ---------------------------------------------------------------------------------------------- quiet and firing
@pytest.mark.parametrize("rule", list(RULE_NAMES))
def test_a_healthy_run_raises_no_issue(healthy: Path, rule: str) -> None:
    run = evaluate(healthy, rule)
    assert run.status == "NoIssuesFound", run.details
    assert run.details.startswith(f"{rule}: no issues found in ")


def test_loss_not_decreasing_and_exploding_tensor_fire_on_a_huge_learning_rate(diverging: Path) -> None:
    run = evaluate(diverging, "LossNotDecreasing")
    assert run.status == "IssuesFound"
    assert "LossNotDecreasing: the TRAIN loss CrossEntropyLoss_output_0 became" in run.details or \
        "did not decrease" in run.details, run.details
    assert "learning rate" in run.details
    run = evaluate(diverging, "ExplodingTensor")
    assert run.status == "IssuesFound" and "mode TRAIN" in run.details, run.details
    assert "NaN" in run.details or "infinite" in run.details
    assert "learning rate is most likely too high" in run.details


def test_loss_not_decreasing_fires_on_a_frozen_network(tmp_path: Path) -> None:
    model = Net()
    model.requires_grad_(False)
    tensors = train(tmp_path / "frozen", model, blobs([96] * 4, seed=0), blobs([48] * 4, seed=1), shuffle=False)
    run = evaluate(tensors, "LossNotDecreasing")
    assert run.status == "IssuesFound" and "did not decrease from" in run.details, run.details


def test_vanishing_gradient_fires_on_an_all_zero_initialisation(tmp_path: Path) -> None:
    model = Net()
    for parameter in model.parameters():
        nn.init.zeros_(parameter)
    tensors = train(tmp_path / "zeros", model, blobs([96] * 4, seed=0), blobs([48] * 4, seed=1), epochs=1)
    run = evaluate(tensors, "VanishingGradient")
    assert run.status == "IssuesFound", run.details
    assert "gradient/Net_hidden" in run.details and "(step 0, mode TRAIN)" in run.details


def test_overfit_fires_when_a_big_net_memorises_a_tiny_training_set(tmp_path: Path) -> None:
    tensors = train(tmp_path / "memorise", Net(width=128), blobs([8] * 4, seed=0, shuffle_labels=True),
                    blobs([16] * 4, seed=1, shuffle_labels=True), epochs=8, batch=8)
    run = evaluate(tensors, "Overfit")
    assert run.status == "IssuesFound", run.details
    assert "mean validation loss was above the mean training loss by more than 10% in 2 evaluations" in run.details


def test_overtraining_fires_when_the_loss_stops_improving(tmp_path: Path) -> None:
    tensors = train(tmp_path / "stalled", Net(), blobs([16] * 4, seed=0), blobs([16] * 4, seed=1), epochs=6,
                    lr=1e-7)
    run = evaluate(tensors, "Overtraining")
    assert run.status == "IssuesFound", run.details
    assert "mean training loss has not improved by more than 0.1 for 5 passes" in run.details


def test_poor_weight_initialization_fires_on_a_badly_scaled_layer(tmp_path: Path) -> None:
    model = Net()
    with torch.no_grad():
        model.hidden2.fc.weight.mul_(1000)
    tensors = train(tmp_path / "scaled", model, blobs([96] * 4, seed=0), blobs([48] * 4, seed=1), epochs=1)
    run = evaluate(tensors, "PoorWeightInitialization")
    assert run.status == "IssuesFound", run.details
    assert "variance of the activation inputs differs" in run.details and "hidden2.relu_input_0" in run.details


def test_class_imbalance_fires_on_an_unbalanced_dataset(tmp_path: Path) -> None:
    tensors = train(tmp_path / "unbalanced", Net(), blobs([200, 12, 200, 200], seed=0), blobs([48] * 4, seed=1),
                    epochs=2)
    run = evaluate(tensors, "ClassImbalance")
    assert run.status == "IssuesFound", run.details
    assert re.search(r"class \d has \d+\.\dx the samples of class 1 \(\d+ vs \d+ of \d+ labels", run.details)
    assert "mode TRAIN" in run.details


def test_dead_relu_fires_when_a_layer_never_activates(tmp_path: Path) -> None:
    model = Net()
    with torch.no_grad():
        model.hidden1.fc.bias.fill_(-100.0)
    tensors = train(tmp_path / "dead", model, blobs([96] * 4, seed=0), blobs([48] * 4, seed=1), epochs=1)
    run = evaluate(tensors, "DeadRelu")
    assert run.status == "IssuesFound", run.details
    assert "100% of the ReLUs in hidden1.relu_output_0 are dead" in run.details


# ---------------------------------------------------------------------------------------------- Error, not silence
def test_a_rule_without_its_data_reports_error(tmp_path: Path) -> None:
    only_losses = [{"CollectionName": "losses", "CollectionParameters": {"save_interval": "1"}}]
    tensors = train(tmp_path / "losses", Net(), blobs([32] * 4, seed=0), blobs([16] * 4, seed=1), epochs=2,
                    collections=only_losses)
    expected = {"VanishingGradient": "no gradients were saved", "DeadRelu": "no ReLU outputs matching",
                "ClassImbalance": "the training script must save its labels and predictions"}
    for rule, why in expected.items():
        run = evaluate(tensors, rule)
        assert run.status == "Error" and why in run.details, run.details
    run = evaluate(tensors, "LossNotDecreasing", num_steps=1000)
    assert run.status == "Error" and "no loss series went on for 1000 steps after its first pass" in run.details


def test_bad_configurations_are_errors_from_the_start(healthy: Path) -> None:
    assert "takes no parameter patiense" in evaluate(healthy, "Overfit", patiense=2).details
    assert "parameter patience='two'" in evaluate(healthy, "Overfit", patience="two").details
    unknown = runner.RuleEvaluation([runner.RuleConfig("Mine", "WeightUpdateRatio", {})], healthy, "job", "us-east-1")
    assert unknown.runs[0].status == "Error" and "does not evaluate the rule WeightUpdateRatio" in \
        unknown.runs[0].details
    nothing = evaluate(healthy.parent / "no-such-dir", "Overfit")
    assert nothing.status == "Error" and "saved no Debugger tensors" in nothing.details


def test_parameters_from_the_request_change_the_verdict(healthy: Path) -> None:
    assert evaluate(healthy, "Overfit", ratio_threshold=-1, patience=0).status == "IssuesFound"
    assert evaluate(healthy, "Overtraining", patience_train=1, delta=100).status == "IssuesFound"


# ---------------------------------------------------------------------------------------------- statuses, outputs
def test_statuses_and_rule_output_look_like_sagemakers(diverging: Path, tmp_path: Path) -> None:
    run = evaluate(diverging, "ExplodingTensor", tmp_path / "rule-output")
    assert set(run.status_entry()) == {"RuleConfigurationName", "RuleEvaluationJobArn", "RuleEvaluationStatus",
                                       "StatusDetails", "LastModifiedTime"}
    assert run.arn == "arn:aws:sagemaker:us-east-1:000000000000:processing-job/trainmodel-job-explodingtensor"
    output = json.loads((tmp_path / "rule-output/ExplodingTensor/findings.json").read_text())
    assert output["RuleEvaluationStatus"] == "IssuesFound" and output["RuleParameters"]["only_nan"] is False
    assert output["Finding"]["Mode"] == "TRAIN" and output["Finding"]["Values"]["tensor"]


def test_the_sdks_action_json_means_stop_training() -> None:
    rule = rule_configs.exploding_tensor()
    from sagemaker.debugger import Rule

    built = Rule.sagemaker(rule, actions=rule_configs.ActionList(rule_configs.StopTraining()))
    built.prepare_actions("image-classifier-train-2026")
    config = runner.RuleConfig.from_request(built.to_debugger_rule_config_dict())
    assert config.stop_training and config.parameters == {} and config.rule_to_invoke == "ExplodingTensor"


def test_stop_training_stops_the_job_while_it_runs(diverging: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debugging_job, "POLL_SECONDS", 0.1)
    action = '[{\\"name\\": \\"stoptraining\\", \\"training_job_prefix\\": \\"x\\"}]'
    request = {"DebugRuleConfigurations": [
        {"RuleConfigurationName": "ExplodingTensor", "RuleParameters": {"rule_to_invoke": "ExplodingTensor",
                                                                        "action_json": action}}],
        "HyperParameters": {"lr": "10000"}}
    cancelled, published = threading.Event(), []
    rules = JobRules(request, "trainmodel-job", "us-east-1", diverging, None, cancelled)
    with rules.watching(published.append):
        assert rules.signal.wait(30), "the StopTraining action did not stop the job"
    assert rules.stopped_by_rule and not cancelled.is_set()
    reason = rules.failure(StepFailed("Stopped: the job was stopped on request")).reason
    assert reason.startswith("Stopped: the StopTraining action of Debugger rule ExplodingTensor stopped the training")
    assert "This job's learning rate: 1e+04." in reason
    assert published[-1][0]["RuleEvaluationStatus"] == "IssuesFound"
    properties = rules.finish()
    assert properties["TrainingJobStatus"] == "Stopped"
    assert properties["DebugRuleEvaluationStatuses"][0]["RuleEvaluationStatus"] == "IssuesFound"


def test_a_job_without_rules_pays_nothing() -> None:
    rules = JobRules({}, "job", "us-east-1", Path("/nonexistent"), None, threading.Event())
    started = time.monotonic()
    with rules.watching(lambda statuses: pytest.fail("published")):
        pass
    assert rules.finish() == {} and time.monotonic() - started < 1


# ---------------------------------------------------------------------------------------------- what the job saves
def test_the_hook_config_saves_what_the_rules_read() -> None:
    collections = {c["CollectionName"]: c["CollectionParameters"] for c in hook_collections(25)}
    assert {name: p["save_interval"] for name, p in collections.items()} == {
        "losses": "1", "labels": "1", "predictions": "1", "gradients": "25", "relu_input": "25", "relu_output": "25"}
    assert collections["relu_input"]["include_regex"] == ".*relu_input"


def test_save_interval_comes_from_the_config() -> None:
    assert load_config(environ={}).debugger.save_interval == 50  # [local.debugger]; AWS's 500 on sagemaker
    assert load_config(environ={"PIPELINE_TARGET": "sagemaker"}).debugger.save_interval == 500
    with pytest.raises(ConfigError, match=r"\[debugger\] save_interval must be at least 1"):
        load_config(environ={"PIPELINE_DEBUGGER_SAVE_INTERVAL": "0"})
