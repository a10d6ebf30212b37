"""Checks a pipeline definition before it reaches a service: what SageMaker would refuse, refused here first.

Each step's `Arguments` are the request of one SageMaker API call, so they are checked against botocore's
current service model (the official definition JSON schema is years behind the SDK). Pipeline expressions are
replaced first: parameters by their defaults, other expressions by a value of the type the shape expects. References
(`Get`, `Std:JsonGet`) must point at things that exist, and names stay within the service's limits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, Shape, StructureShape
from botocore.validate import ParamValidator

# Step type -> (API the service calls, fields the service fills in itself).
STEP_REQUESTS: dict[str, tuple[str, dict[str, str]]] = {
    "Processing": ("CreateProcessingJob", {"ProcessingJobName": "pipelines-processing-job"}),
    "Training": ("CreateTrainingJob", {"TrainingJobName": "pipelines-training-job"}),
    "Tuning": ("CreateHyperParameterTuningJob", {"HyperParameterTuningJobName": "pipelines-tuning"}),
    "Transform": ("CreateTransformJob", {"TransformJobName": "pipelines-transform-job"}),
    "RegisterModel": ("CreateModelPackage", {}),
    "Model": ("CreateModel", {"ModelName": "pipelines-model"}),
    "EndpointConfig": ("CreateEndpointConfig", {}),
    "Endpoint": ("CreateEndpoint", {}),
}
# What a step's properties look like: the Describe* response of what it created.
STEP_PROPERTY_SHAPES: dict[str, tuple[str, ...]] = {
    "Processing": ("DescribeProcessingJobResponse",),
    "Training": ("DescribeTrainingJobResponse",),
    "Tuning": ("DescribeHyperParameterTuningJobResponse", "ListTrainingJobsForHyperParameterTuningJobResponse"),
    "Transform": ("DescribeTransformJobResponse",),
    "RegisterModel": ("DescribeModelPackageOutput",),
    "Model": ("DescribeModelOutput",),
    "EndpointConfig": ("DescribeEndpointConfigOutput",),
    "Endpoint": ("DescribeEndpointOutput",),
}
CONTROL_STEP_TYPES = ("Condition", "Fail")
EXECUTION_VARIABLES = (
    "PipelineExecutionId",
    "PipelineExecutionArn",
    "PipelineName",
    "PipelineArn",
    "CurrentDateTime",
    "StartDateTime",
)
CONDITION_TYPES = (
    "Equals", "GreaterThan", "GreaterThanOrEqualTo", "LessThan", "LessThanOrEqualTo", "In", "Not", "Or",
)
STEP_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,64}$")
PIPELINE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$")
RESOURCE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MAX_DEFINITION_BYTES = 1024 * 1024
EXECUTION_ID_LENGTH = 12
PLACEHOLDER_ARN = "arn:aws:iam::000000000000:role/placeholder"
PLACEHOLDER_S3 = "s3://placeholder-bucket/placeholder-key"


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@cache
def _service_model() -> Any:
    return botocore.session.get_session().get_service_model("sagemaker")


def iter_steps(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every step, those inside condition branches included."""
    for step in steps:
        yield step
        if step.get("Type") == "Condition":
            yield from iter_steps(step["Arguments"].get("IfSteps", []))
            yield from iter_steps(step["Arguments"].get("ElseSteps", []))


def is_expression(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("Get", "Std:Join", "Std:JsonGet")


def check_request(step_type: str, arguments: Mapping[str, Any]) -> list[str]:
    """botocore's own words for what is wrong with `arguments` as the request `step_type` makes; [] when fine.

    `arguments` must hold no pipeline expressions: the local engine passes resolved ones, `validate` placeholders.
    """
    operation, service_filled = STEP_REQUESTS[step_type]
    shape = _service_model().operation_model(operation).input_shape
    request = {**service_filled, **arguments}
    report = ParamValidator().validate(request, shape)
    if not report.has_errors():
        return []
    return [line for line in report.generate_report().splitlines() if line.strip()]


def placeholder_request(value: Any, shape: Shape | None, parameters: Mapping[str, Any]) -> Any:
    """`value` with every pipeline expression replaced by a value botocore can type-check against `shape`."""
    if is_expression(value):
        return _placeholder(value, shape, parameters)
    if isinstance(value, dict):
        members = shape.members if isinstance(shape, StructureShape) else {}
        inner = shape.value if isinstance(shape, MapShape) else None
        key_shape = shape.key if isinstance(shape, MapShape) else None
        return {
            placeholder_request(k, key_shape, parameters): placeholder_request(v, members.get(k, inner), parameters)
            for k, v in value.items()
        }
    if isinstance(value, list):
        member = shape.member if isinstance(shape, ListShape) else None
        return [placeholder_request(v, member, parameters) for v in value]
    return value


def _placeholder(expression: dict[str, Any], shape: Shape | None, parameters: Mapping[str, Any]) -> Any:
    kind, body = next(iter(expression.items()))
    if kind == "Get" and isinstance(body, str) and body.startswith("Parameters."):
        name = body.split(".", 1)[1]
        if name in parameters:
            return parameters[name]  # the real default: a String parameter in an integer field is caught
    type_name = shape.type_name if shape is not None else "string"
    metadata = shape.metadata if shape is not None else {}
    if type_name in ("integer", "long"):
        return max(1, int(metadata.get("min", 1)))
    if type_name in ("float", "double"):
        return float(metadata.get("min", 1.0))
    if type_name == "boolean":
        return True
    if type_name == "string":
        name = shape.name if shape is not None else ""
        if "Arn" in name:
            return PLACEHOLDER_ARN
        if "S3" in name or "Url" in name or "Uri" in name:
            return PLACEHOLDER_S3
        return "x" * max(1, int(shape.metadata.get("min", 1)) if shape is not None else 1)
    return expression  # a structure or list from an expression: leave it for botocore to refuse


def parameter_defaults(definition: Mapping[str, Any]) -> dict[str, Any]:
    return {p["Name"]: p.get("DefaultValue") for p in definition.get("Parameters", [])}


def check_requests(definition: Mapping[str, Any]) -> list[Problem]:
    problems = []
    defaults = parameter_defaults(definition)
    for step in iter_steps(definition.get("Steps", [])):
        step_type = step.get("Type")
        if step_type in CONTROL_STEP_TYPES:
            continue
        if step_type not in STEP_REQUESTS:
            problems.append(Problem(f"step {step.get('Name')}", f"step type {step_type!r} is not checked or run here"))
            continue
        operation, _ = STEP_REQUESTS[step_type]
        shape = _service_model().operation_model(operation).input_shape
        request = placeholder_request(step.get("Arguments", {}), shape, defaults)
        where = f"step {step['Name']} ({operation})"
        problems.extend(Problem(where, line) for line in check_request(step_type, request))
    return problems


def _iter_expressions(value: Any, where: str) -> Iterator[tuple[str, str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in ("Get", "Std:JsonGet"):
                yield key, where, inner
            if key not in ("IfSteps", "ElseSteps"):
                yield from _iter_expressions(inner, where)
    elif isinstance(value, list):
        for inner in value:
            yield from _iter_expressions(inner, where)


PROPERTY_TOKEN = re.compile(r"\.([A-Za-z0-9_]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def property_path_tokens(path: str) -> list[str | int]:
    """`Outputs['train'].S3Output.S3Uri` -> ["Outputs", "train", "S3Output", "S3Uri"]; indexes as ints."""
    tokens: list[str | int] = []
    position = 0
    text = "." + path
    while position < len(text):
        match = PROPERTY_TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"cannot parse property path {path!r} at {text[position:]!r}")
        name, index, key1, key2 = match.groups()
        tokens.append(int(index) if index is not None else (name or key1 or key2))
        position = match.end()
    return tokens


def _path_exists(shape: Shape, tokens: list[str | int]) -> bool:
    for token in tokens:
        if isinstance(shape, StructureShape):
            if not isinstance(token, str) or token not in shape.members:
                return False
            shape = shape.members[token]
        elif isinstance(shape, ListShape):
            shape = shape.member  # by index, or by the item's name (Outputs['train'])
        elif isinstance(shape, MapShape):
            shape = shape.value
        else:
            return False
    return True


def check_references(definition: Mapping[str, Any]) -> list[Problem]:
    steps = {s["Name"]: s for s in iter_steps(definition.get("Steps", []))}
    parameters = parameter_defaults(definition)
    problems = []
    for step in steps.values():
        where = f"step {step['Name']}"
        for dependency in step.get("DependsOn", []):
            if dependency not in steps:
                problems.append(Problem(where, f"DependsOn names a step that does not exist: {dependency}"))
        for kind, _, body in _iter_expressions(step.get("Arguments", {}), where):
            if kind == "Get" and isinstance(body, str):
                problem = _check_get(body, steps, parameters)
            elif kind == "Std:JsonGet":
                problem = _check_json_get(body, steps)
            else:
                problem = None
            if problem:
                problems.append(Problem(where, problem))
    return problems


def _check_get(reference: str, steps: Mapping[str, Any], parameters: Mapping[str, Any]) -> str | None:
    root, _, rest = reference.partition(".")
    if root == "Parameters":
        return None if rest in parameters else f"Get {reference}: no parameter named {rest!r}"
    if root == "Execution":
        return None if rest in EXECUTION_VARIABLES else f"Get {reference}: no execution variable {rest!r}"
    if root != "Steps":
        return f"Get {reference}: must start with Parameters., Execution. or Steps."
    names = sorted(steps, key=len, reverse=True)  # step names may contain dots' neighbours: longest match wins
    step_name = next((n for n in names if rest == n or rest.startswith(n + ".") or rest.startswith(n + "[")), None)
    if step_name is None:
        return f"Get {reference}: no step named {rest.split('.')[0]!r}"
    path = rest[len(step_name) :].lstrip(".")
    step = steps[step_name]
    if path.startswith("PropertyFiles."):
        files = {f["PropertyFileName"] for f in step.get("PropertyFiles", [])}
        name = path.split(".", 1)[1]
        return None if name in files else f"Get {reference}: step {step_name} has no PropertyFile {name!r}"
    shapes = STEP_PROPERTY_SHAPES.get(step["Type"])
    if shapes is None:
        return f"Get {reference}: a {step['Type']} step has no properties"
    try:
        tokens = property_path_tokens(path)
    except ValueError as err:
        return f"Get {reference}: {err}"
    model = _service_model()
    if any(_path_exists(model.shape_for(shape), tokens) for shape in shapes):
        return None
    return f"Get {reference}: {shapes[0]} has no property {path!r}"


def _check_json_get(body: Any, steps: Mapping[str, Any]) -> str | None:
    # The SDK's JsonGet reads a step's PropertyFile, or a file at an S3Uri (@step functions' output).
    if not isinstance(body, dict) or "Path" not in body or not ("PropertyFile" in body or "S3Uri" in body):
        return "Std:JsonGet needs a PropertyFile (or an S3Uri) and a Path"
    # The PropertyFile's own `Get` is one of the expressions check_references visits: checking it here as well
    # reported a dangling property file twice.
    return None


def json_get_paths(definition: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(step using it, property file reference, JSON path) for every Std:JsonGet."""
    found = []
    for step in iter_steps(definition.get("Steps", [])):
        for kind, _, body in _iter_expressions(step.get("Arguments", {}), step["Name"]):
            if kind == "Std:JsonGet" and isinstance(body, dict):
                reference = body.get("PropertyFile", {})
                found.append((step["Name"], reference.get("Get", "") if isinstance(reference, dict) else "",
                              body.get("Path", "")))
    return found


def resolve_json_path(document: Any, path: str) -> Any:
    """The value at a JsonGet path (`a.b[0].c`), as the service resolves it; KeyError when absent."""
    value = document
    for token in property_path_tokens(path):
        if isinstance(token, int) and isinstance(value, list) and token < len(value):
            value = value[token]
        elif isinstance(token, str) and isinstance(value, dict) and token in value:
            value = value[token]
        else:
            raise KeyError(f"{path!r} is not in the document (stopped at {token!r})")
    return value


def check_json_paths(definition: Mapping[str, Any], reports: Mapping[str, Any]) -> list[Problem]:
    """Each JsonGet path must exist in a sample of the file its PropertyFile names (`reports` by file name)."""
    steps = {s["Name"]: s for s in iter_steps(definition.get("Steps", []))}
    problems = []
    for user, reference, path in json_get_paths(definition):
        _, _, rest = reference.partition(".")
        step_name, _, file_part = rest.partition(".PropertyFiles.")
        files = {f["PropertyFileName"]: f["FilePath"] for f in steps.get(step_name, {}).get("PropertyFiles", [])}
        file_path = files.get(file_part)
        if file_path is None or file_path not in reports:
            continue
        try:
            resolve_json_path(reports[file_path], path)
        except KeyError as err:
            problems.append(Problem(f"step {user}", f"JsonGet path not in what writes {file_path}: {err.args[0]}"))
    return problems


def check_limits(definition: Mapping[str, Any], pipeline_name: str, definition_bytes: int) -> list[Problem]:
    problems = []
    if not PIPELINE_NAME.match(pipeline_name):
        problems.append(Problem("pipeline", f"name {pipeline_name!r} must be 1-256 letters, digits and hyphens"))
    if definition_bytes > MAX_DEFINITION_BYTES:
        problems.append(Problem("pipeline", f"definition is {definition_bytes} bytes; the limit is 1 MiB"))
    for step in iter_steps(definition.get("Steps", [])):
        if not STEP_NAME.match(step["Name"]):
            problems.append(Problem(f"step {step['Name']}", "step names are 1-64 letters, digits, - and _"))
    for name, default in parameter_defaults(definition).items():
        if name == "EndpointName" and isinstance(default, str):
            # The endpoint config is named EndpointName-<execution id>, which must stay within 63 characters.
            if not RESOURCE_NAME.match(default) or len(default) + 1 + EXECUTION_ID_LENGTH > 63:
                problems.append(Problem("parameter EndpointName", f"{default!r} must be letters, digits and "
                                        f"hyphens, at most {62 - EXECUTION_ID_LENGTH} characters"))
    return problems


def validate_definition(
    definition: Mapping[str, Any], pipeline_name: str, definition_bytes: int, reports: Mapping[str, Any]
) -> list[Problem]:
    """Every problem found, in the order a reader fixes them: requests, references, JsonGet paths, limits."""
    return [
        *check_requests(definition),
        *check_references(definition),
        *check_json_paths(definition, reports),
        *check_limits(definition, pipeline_name, definition_bytes),
    ]
