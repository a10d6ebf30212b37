"""Local executions written directly (no engine, no training): the state database rows and the files a real run
leaves, in their real shapes, trimmed to what the report reads. Fixtures that use them: conftest.py."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from PIL import Image

from pipelines.config import load_config
from pipelines.local.registry import ModelRegistry
from pipelines.local.state import StateStore
from pipelines.local.target import LocalTarget
from pipelines.local.workspace import Workspace

PIPELINE = "image-classifier"
PIPELINE_ARN = f"arn:aws:sagemaker:us-east-1:000000000000:pipeline/{PIPELINE}"
BUCKET = "s3://local-pipeline/image-classifier"
CLASSES = ["0-zero", "1-one", "2-two"]
DEBUG_RULES = ["LossNotDecreasing", "ExplodingTensor", "Overfit"]
PROFILER_RULES = ["ProfilerReport", "CPUBottleneck"]
T0 = 1_790_000_000.0  # the first system metrics sample (epoch seconds)


def png_bytes(colour: tuple[int, int, int] = (30, 90, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def get(path: str) -> dict:
    return {"Get": path}


def rule(name: str, **parameters: str) -> dict:
    return {"RuleConfigurationName": name, "RuleEvaluatorImage": "503895931360.dkr.ecr.us-east-1.amazonaws.com/x",
            "RuleParameters": {"rule_to_invoke": name, **parameters}}


TRAINING_ARGUMENTS = {
    "HyperParameters": {"arch": "resnet18", "lr": get("Steps.TuneHyperparameters.BestTrainingJob."
                                                      "TunedHyperParameters['lr']"),
                        "sagemaker_program": '"train.py"'},
    "OutputDataConfig": {"S3OutputPath": f"{BUCKET}/models"},
    "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
    "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
        "S3Uri": get("Steps.PrepareData.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri")}}}],
    "DebugRuleConfigurations": [rule(name) for name in DEBUG_RULES],
    "ProfilerRuleConfigurations": [rule("ProfilerReport"), rule("CPUBottleneck", threshold="50")],
    "ProfilerConfig": {"S3OutputPath": f"{BUCKET}/profiler-output", "ProfilingIntervalInMilliseconds": 500},
}
EVALUATION_OUTPUTS = {"Outputs": [{"OutputName": "evaluation", "S3Output": {
    "S3Uri": f"{BUCKET}/EXECUTION/EvaluateModel/output/evaluation", "LocalPath": "/opt/ml/processing/evaluation"}}]}
EXPLAIN_OUTPUTS = {"Outputs": [{"OutputName": name, "S3Output": {
    "S3Uri": f"{BUCKET}/EXECUTION/ExplainModel/output/{name}", "LocalPath": f"/opt/ml/processing/{name}"}}
    for name in ("explainability", "bias")]}
DEFINITION = {"Version": "2020-12-01", "Parameters": [{"Name": "AccuracyThreshold", "Type": "Float",
                                                       "DefaultValue": 0.9}], "Steps": [
    {"Name": "PrepareData", "Type": "Processing", "Arguments": {"ProcessingOutputConfig": {"Outputs": []}}},
    {"Name": "TuneHyperparameters", "Type": "Tuning", "Arguments": {
        "HyperParameterTuningJobConfig": {"Strategy": "Random", "ParameterRanges": {"ContinuousParameterRanges": [
            {"Name": "lr", "MinValue": "0.0001", "MaxValue": "0.01", "ScalingType": "Logarithmic"}]}},
        "TrainingJobDefinition": {"InputDataConfig": TRAINING_ARGUMENTS["InputDataConfig"]}}},
    {"Name": "TrainModel", "Type": "Training", "Arguments": TRAINING_ARGUMENTS},
    {"Name": "EvaluateModel", "Type": "Processing", "Arguments": {
        "ProcessingInputs": [{"S3Input": {"S3Uri": get("Steps.TrainModel.ModelArtifacts.S3ModelArtifacts")}},
                             {"S3Input": {"S3Uri": get("Steps.PrepareData.ProcessingOutputConfig.Outputs['test']."
                                                       "S3Output.S3Uri")}}],
        "ProcessingOutputConfig": EVALUATION_OUTPUTS},
     "PropertyFiles": [{"PropertyFileName": "EvaluationReport", "OutputName": "evaluation",
                        "FilePath": "evaluation.json"}]},
    {"Name": "ExplainModel", "Type": "Processing", "Arguments": {"ProcessingOutputConfig": EXPLAIN_OUTPUTS}},
    {"Name": "CheckAccuracy", "Type": "Condition", "Arguments": {
        "Conditions": [{"Type": "GreaterThanOrEqualTo", "LeftValue": {"Std:JsonGet": {
            "PropertyFile": get("Steps.EvaluateModel.PropertyFiles.EvaluationReport"),
            "Path": "multiclass_classification_metrics.accuracy.value"}},
            "RightValue": get("Parameters.AccuracyThreshold")}],
        "IfSteps": [
            {"Name": "ImageClassifier-RegisterModel", "Type": "RegisterModel", "Arguments": {"InferenceSpecification": {
                "Containers": [{"ModelDataUrl": get("Steps.TrainModel.ModelArtifacts.S3ModelArtifacts")}]}}},
            {"Name": "ServingModel-CreateModel", "Type": "Model", "DependsOn": ["ImageClassifier-RegisterModel"],
             "Arguments": {"PrimaryContainer": {"ModelDataUrl": get("Steps.TrainModel.ModelArtifacts."
                                                                    "S3ModelArtifacts")}}},
            {"Name": "EndpointConfig", "Type": "EndpointConfig", "Arguments": {"ProductionVariants": [
                {"ModelName": get("Steps.ServingModel-CreateModel.ModelName")}]}},
            {"Name": "Endpoint", "Type": "Endpoint", "Arguments": {
                "EndpointConfigName": get("Steps.EndpointConfig.EndpointConfigName")}},
            {"Name": "BatchTransform", "Type": "Transform", "Arguments": {
                "ModelName": get("Steps.ServingModel-CreateModel.ModelName"),
                "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": get(
                    "Steps.PrepareData.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri")}}}}}],
        "ElseSteps": [{"Name": "AccuracyTooLow", "Type": "Fail", "DependsOn": ["ExplainModel"],
                       "Arguments": {"ErrorMessage": "too low"}}]}},
]}
STEP_ORDER = ["PrepareData", "TuneHyperparameters", "TrainModel", "EvaluateModel", "ExplainModel", "CheckAccuracy",
              "ImageClassifier-RegisterModel", "ServingModel-CreateModel", "EndpointConfig", "Endpoint",
              "BatchTransform"]
STEP_TYPES = {"PrepareData": "Processing", "TuneHyperparameters": "Tuning", "TrainModel": "Training",
              "EvaluateModel": "Processing", "ExplainModel": "Processing", "CheckAccuracy": "Condition",
              "ImageClassifier-RegisterModel": "RegisterModel", "ServingModel-CreateModel": "Model",
              "EndpointConfig": "EndpointConfig", "Endpoint": "Endpoint", "BatchTransform": "Transform",
              "AccuracyTooLow": "Fail"}


def history(epochs: int = 3) -> list[dict[str, float]]:
    return [{"epoch": e, "train_loss": 1.5 / e, "train_accuracy": 0.6 + 0.1 * e, "validation_loss": 1.6 / e,
             "validation_accuracy": 0.55 + 0.12 * e, "lr": 0.001, "epoch_seconds": 9.5} for e in range(1, epochs + 1)]


def system_metric_lines(samples: int = 40) -> str:
    """Debugger's system metrics: JSON lines, two cores, memory, one GPU."""
    lines = []
    for i in range(samples):
        t = T0 + 0.5 * i
        for name, dimension, value in (("cpu0", "CPUUtilization", 20 + i), ("cpu1", "CPUUtilization", 90 - i),
                                       ("MemoryUsedPercent", "Memory", 30 + i / 4),
                                       ("gpu0", "GPUUtilization", 5.0), ("gpu0", "GPUMemoryUtilization", 12.0)):
            lines.append(json.dumps({"Type": "gpu" if name.startswith("gpu") else "cpu", "Name": name,
                                     "Dimension": dimension, "Value": value, "NodeId": "algo-1", "Timestamp": t}))
    return "\n".join(lines) + "\n"


def timeline_document(samples: int = 40) -> dict[str, Any]:
    """The local engine's system_metrics.json (pipelines/local/profiling/timeline.py): two cores, one GPU."""
    return {"Version": 1, "NodeId": "algo-1", "JobPid": 4242, "IntervalMillis": 500, "Cores": [0, 1], "CpuCount": 2,
            "GpuCount": 1, "MemoryTotalBytes": 8e9, "StartTime": T0, "EndTime": T0 + samples / 2, "Error": None,
            "Samples": [{"Timestamp": T0 + 0.5 * i, "CPUUtilization": {"cpu0": 20.0 + i, "cpu1": 90.0 - i},
                         "I/OWaitPercentage": {"cpu0": 1.0, "cpu1": 0.0}, "MemoryUsedPercent": 30 + i / 4,
                         "JobCPUPercent": 104.0, "JobRSSBytes": 5e8, "JobProcesses": 1, "JobThreads": 12,
                         "GPUUtilization": {"gpu0": 5.0}, "GPUMemoryUtilization": {"gpu0": 12.0}}
                        for i in range(samples)]}


ADVICE = ["2 cores, 0 dataloader workers: set num_workers to 2",
          "the job kept about one of its 2 cores busy (p95 104% of a core) while the others idled"]


def evaluation_document(accuracy: float) -> dict[str, Any]:
    per_class = [{"class_name": c, "precision": 0.9, "recall": accuracy, "f1": 0.88, "support": 10} for c in CLASSES]
    return {"multiclass_classification_metrics": {
        "accuracy": {"value": accuracy, "standard_deviation": "NaN"},
        "weighted_f1": {"value": 0.88, "standard_deviation": "NaN"},
        "confusion_matrix": {a: {p: (9 if a == p else 0) for p in CLASSES} for a in CLASSES}},
        "extended_metrics": {"class_names": CLASSES, "num_test_images": 30, "macro_f1": 0.87, "top_5_accuracy": 1.0,
                             "per_class": per_class}}


class LocalRuns:
    """A workspace holding the `image-classifier` pipeline; `add_*` write executions as the engine leaves them."""

    def __init__(self, root: Path) -> None:
        self.workspace = Workspace.open(root)
        self.store = StateStore(self.workspace.state_db)
        self.store.upsert_pipeline(PIPELINE, PIPELINE_ARN, json.dumps(DEFINITION), None)
        self.config = load_config(overrides={"project.target": "local", "local.workspace": str(root)})

    def target(self) -> LocalTarget:
        return LocalTarget(self.config, self.workspace)

    def write(self, uri: str, data: bytes | str) -> Path:
        path = self.workspace.path_for(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def add_execution(self, execution_id: str, status: str, started: str, failure_reason: str | None = None,
                      parameters: dict | None = None) -> None:
        with self.store.transaction() as db:
            db.execute("INSERT INTO executions (id, arn, pipeline, pipeline_arn, definition, status, failure_reason, "
                       "parameters, started, ended, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                       (execution_id, f"{PIPELINE_ARN}/execution/{execution_id}", PIPELINE, PIPELINE_ARN,
                        json.dumps(DEFINITION), status, failure_reason,
                        json.dumps(parameters or {"AccuracyThreshold": 0.9, "EndpointName": "image-classifier"}),
                        f"{started}T08:00:00.000+00:00", f"{started}T08:05:00.000+00:00"))

    def add_step(self, execution_id: str, name: str, status: str, minute: int, properties: dict | None = None,
                 failure_reason: str | None = None, property_files: dict | None = None) -> None:
        with self.store.transaction() as db:
            db.execute("INSERT INTO steps (execution_id, name, type, attempt, status, failure_reason, started, ended, "
                       "properties, property_files) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
                       (execution_id, name, STEP_TYPES[name], status, failure_reason,
                        f"2026-11-20T08:0{minute}:00.000+00:00", f"2026-11-20T08:0{minute}:30.500+00:00",
                        json.dumps(properties) if properties else None,
                        json.dumps(property_files) if property_files else None))

    def add_succeeded(self, execution_id: str = "goodrun00001", accuracy: float = 0.95,
                      with_rule_results: bool = True, explained: bool = True,
                      lost_overlay: str | None = None) -> None:
        """A whole run: tuning (2 trials), training with files, evaluation, explanation, registration, deployment."""
        self.add_execution(execution_id, "Succeeded", "2026-11-20")
        job, tuning = f"trainmodel-{execution_id}", f"tunehyperparameters-{execution_id}"
        self.add_step(execution_id, "PrepareData", "Succeeded", 0, {"ProcessingJobName": f"preparedata-{execution_id}"})
        self.add_step(execution_id, "TuneHyperparameters", "Succeeded", 1, tuning_properties(tuning))
        self.add_step(execution_id, "TrainModel", "Succeeded", 2,
                      training_properties(job, with_rule_results))
        self._training_files(execution_id, job)
        self._evaluation_files(execution_id, accuracy)
        outputs = json.loads(json.dumps(EVALUATION_OUTPUTS).replace("EXECUTION", execution_id))
        self.add_step(execution_id, "EvaluateModel", "Succeeded", 3,
                      {"ProcessingJobName": f"evaluatemodel-{execution_id}", "ProcessingOutputConfig": outputs},
                      property_files={"EvaluationReport": evaluation_document(accuracy)})
        if explained:
            self._explain_files(execution_id, lost_overlay)
            self.add_step(execution_id, "ExplainModel", "Succeeded", 4, {
                "ProcessingJobName": f"explainmodel-{execution_id}",
                "ProcessingOutputConfig": json.loads(json.dumps(EXPLAIN_OUTPUTS).replace("EXECUTION", execution_id))})
        self.add_step(execution_id, "CheckAccuracy", "Succeeded", 4, {"Outcome": accuracy >= 0.9})
        if accuracy >= 0.9:
            self._deployment(execution_id, job)

    def _training_files(self, execution_id: str, job: str) -> None:
        job_dir = self.workspace.jobs_root / execution_id / "TrainModel" / job
        (job_dir / "opt_ml/output/data").mkdir(parents=True)
        (job_dir / "opt_ml/output/data/history.json").write_text(json.dumps(history()))
        (job_dir / "system_metrics.json").write_text(json.dumps(timeline_document()))
        # ProfilerReport's outputs, where the local engine (and SageMaker's rule container) put them
        output = f"{BUCKET}/models/{job}/rule-output/ProfilerReport/profiler-output"
        self.write(f"{output}/profiler-reports/CPUBottleneck.json", json.dumps({
            "RuleTriggered": 1, "Violations": 3, "Datapoints": 40, "RuleParameters": "threshold:50", "Details": {},
            "Recommendation": "consider a larger instance"}))
        self.write(f"{output}/profiler-reports/GPUMemoryIncrease.json", json.dumps({
            "RuleTriggered": 0, "Recommendation": "quiet"}))
        self.write(f"{output}/profiler-report.json", json.dumps({
            "RuleConfigurationName": "ProfilerReport", "RuleName": "ProfilerReport",
            "RuleEvaluationStatus": "IssuesFound", "Report": {"RuleTriggered": 1, "Details": {
                "Rules": {"CPUBottleneck": {"Status": "IssuesFound"}}, "Recommendations": ADVICE}}}))

    def _evaluation_files(self, execution_id: str, accuracy: float) -> None:
        folder = f"{BUCKET}/{execution_id}/EvaluateModel/output/evaluation"
        self.write(f"{folder}/evaluation.json", json.dumps(evaluation_document(accuracy)))
        self.write(f"{folder}/confusion_matrix.json", json.dumps(
            {"class_names": CLASSES, "matrix": [[9, 1, 0], [0, 10, 0], [2, 0, 8]]}))
        self.write(f"{folder}/confusion_matrix.png", png_bytes())

    def _explain_files(self, execution_id: str, lost_overlay: str | None) -> None:
        """explainability.json with an overlay for each image (but `lost_overlay`) and bias.json naming 2-two."""
        folder = f"{BUCKET}/{execution_id}/ExplainModel/output"
        document = explainability_document()
        for index, entry in enumerate([*document["samples"], *document["top_loss"]]):
            if entry["image"] != lost_overlay:
                self.write(f"{folder}/explainability/{entry['overlay']}", png_bytes((20 * index, 90, 200)))
        self.write(f"{folder}/explainability/explainability.json", json.dumps(document))
        self.write(f"{folder}/bias/bias.json", json.dumps(bias_document()))

    def _deployment(self, execution_id: str, job: str) -> None:
        model_data = f"{BUCKET}/models/{job}/output/model.tar.gz"
        registered = ModelRegistry(self.store).create_package({
            "ModelPackageGroupName": PIPELINE, "ModelApprovalStatus": "PendingManualApproval",
            "InferenceSpecification": {"Containers": [{"Image": "image", "ModelDataUrl": model_data}]}})
        self.add_step(execution_id, "ImageClassifier-RegisterModel", "Succeeded", 5, registered)
        self.add_step(execution_id, "ServingModel-CreateModel", "Succeeded", 5, {"ModelName": f"model-{execution_id}"})
        self.add_step(execution_id, "EndpointConfig", "Succeeded", 5, {
            "EndpointConfigName": f"image-classifier-{execution_id}",
            "ProductionVariants": [{"VariantName": "AllTraffic", "InstanceType": "ml.m5.large"}]})
        self.add_step(execution_id, "Endpoint", "Succeeded", 6, {
            "EndpointName": "image-classifier", "EndpointStatus": "InService",
            "EndpointConfigName": f"image-classifier-{execution_id}",
            "EndpointArn": "arn:aws:sagemaker:us-east-1:000000000000:endpoint/image-classifier"})
        self._batch(execution_id)

    def _batch(self, execution_id: str) -> None:
        """Five test images scored: four as their folder's class, one not; and a file that is no answer."""
        output = f"{BUCKET}/{execution_id}/batch-output"
        for key, label in (("0-zero/a.png", "0-zero"), ("0-zero/b.png", "0-zero"), ("1-one/c.png", "1-one"),
                           ("2-two/d.png", "2-two"), ("2-two/e.png", "0-zero")):
            self.write(f"{output}/{key}.out", json.dumps({"predictions": [{"top_k": [
                {"label": label, "probability": 0.9}]}]}))
        self.write(f"{output}/2-two/f.png.out", "<html>a gateway error</html>")
        self.add_step(execution_id, "BatchTransform", "Succeeded", 7, {
            "TransformJobName": f"batchtransform-{execution_id}", "TransformJobStatus": "Completed",
            "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                               "S3Uri": f"{BUCKET}/{execution_id}/test"}}},
            "TransformOutput": {"S3OutputPath": output}})

    def add_failed_at_prepare(self, execution_id: str = "badrun000001") -> None:
        reason = 'ClientError: No S3 objects found under S3 URL "s3://x/<input>"'
        self.add_execution(execution_id, "Failed", "2026-11-21", failure_reason=f"Step PrepareData failed: {reason}")
        self.add_step(execution_id, "PrepareData", "Failed", 0, failure_reason=reason)


BIAS_VERDICT = "class 2-two has 4.8% of the training images (an even split gives 33.3%); its test recall is 0.41"


def explained_image(class_name: str, image: str, predicted: str, probability: float) -> dict[str, Any]:
    return {"image": image, "class_name": class_name, "predicted": predicted, "probability": probability,
            "loss": 0.1, "overlay": f"overlays/{image}", "object_share": 0.6, "focus_area": 0.2}


def explainability_document() -> dict[str, Any]:
    """explain.py's explainability.json, trimmed: 2 images a class explained, one mistake as top loss and pair."""
    explained = [explained_image(c, f"{c}/{n}.png", c, 0.9) for c in CLASSES for n in ("a", "b")]
    wrong = explained_image("2-two", "2-two/e.png", "0-zero", 0.7)
    return {"version": "1.0", "method": "gradcam", "samples": explained, "top_loss": [wrong],
            "most_confused_pairs": [{"actual": "2-two", "predicted": "0-zero", "count": 2, "examples": [wrong]}],
            "per_class": [{"class_name": c, "images": 2, "judged": 2, "mean_object_share": 0.6,
                           "mean_focus_area": 0.2} for c in CLASSES]}


def bias_document() -> dict[str, Any]:
    """explain.py's bias.json, trimmed: 2-two is a tenth of the others in training, and recognised worst."""
    return {"version": "1.0", "class_counts": {"train": {"0-zero": 40, "1-one": 40, "2-two": 4},
                                               "test": {"0-zero": 10, "1-one": 10, "2-two": 10}},
            "recall": {"0-zero": 0.9, "1-one": 1.0, "2-two": 0.41}, "summary": BIAS_VERDICT + " (+1 more)",
            "findings": [{"kind": "under_represented", "text": BIAS_VERDICT},
                         {"kind": "split_mismatch", "text": "class 2-two is 4.8% of training but 33.3% of test"}]}


def tuning_properties(name: str) -> dict[str, Any]:
    def summary(number: int, lr: str, objective: float | None, status: str = "Completed") -> dict[str, Any]:
        row = {"TrainingJobName": f"{name}-00{number}-abc", "TrainingJobStatus": status,
               "TunedHyperParameters": {"lr": lr, "batch_size": '"64"', "epochs": "3"}}
        if objective is not None:
            row["FinalHyperParameterTuningJobObjectiveMetric"] = {"MetricName": "validation:accuracy",
                                                                  "Value": objective}
        else:
            row["FailureReason"] = "AlgorithmError: loss is nan"
        return row

    trials = [summary(1, "0.0011555", 0.98), summary(2, "0.00053", 0.95), summary(3, "0.009", None, "Failed")]
    return {"HyperParameterTuningJobName": name, "HyperParameterTuningJobStatus": "Completed",
            "HyperParameterTuningJobConfig": {"Strategy": "Random", "HyperParameterTuningJobObjective": {
                "Type": "Maximize", "MetricName": "validation:accuracy"}, "ParameterRanges": {
                "ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0.0001", "MaxValue": "0.01",
                                               "ScalingType": "Logarithmic"}]}},
            "BestTrainingJob": trials[0], "TrainingJobSummaries": trials}


def training_properties(job: str, with_rule_results: bool) -> dict[str, Any]:
    properties = {**TRAINING_ARGUMENTS, "TrainingJobName": job, "TrainingJobStatus": "Completed",
                  "HyperParameters": {"arch": "resnet18", "lr": "0.0011555", "batch_size": '"64"',
                                      "sagemaker_program": '"train.py"'},
                  "TrainingTimeInSeconds": 48, "ModelArtifacts": {"S3ModelArtifacts": f"{BUCKET}/models/{job}/"
                                                                                       "output/model.tar.gz"},
                  "FinalMetricDataList": [{"MetricName": "validation:accuracy", "Value": 0.91},
                                          {"MetricName": "train:loss", "Value": 0.5}]}
    if with_rule_results:
        properties["DebugRuleEvaluationStatuses"] = [
            {"RuleConfigurationName": "LossNotDecreasing", "RuleEvaluationStatus": "IssuesFound",
             "StatusDetails": "loss did not decrease for 3 steps (step 120: 2.31 -> 2.35)"},
            {"RuleConfigurationName": "ExplodingTensor", "RuleEvaluationStatus": "NoIssuesFound",
             "StatusDetails": "no NaN or infinite tensor in 240 steps"}]
        properties["ProfilerRuleEvaluationStatuses"] = [
            {"RuleConfigurationName": "ProfilerReport", "RuleEvaluationStatus": "IssuesFound",
             "StatusDetails": "CPUBottleneck: CPU above 90% in 60% of samples. Recommendations: " + "; ".join(ADVICE)},
            {"RuleConfigurationName": "CPUBottleneck", "RuleEvaluationStatus": "NoIssuesFound",
             "StatusDetails": "CPU above 90% in 2% of samples"}]
    return properties
