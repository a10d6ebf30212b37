"""Pipeline expressions, evaluated the way SageMaker Pipelines does at run time: pure functions over a context.

- `Get`: `Parameters.X`, `Execution.X` (PipelineExecutionId, PipelineExecutionArn, PipelineName, PipelineArn,
  CurrentDateTime, StartDateTime) and `Steps.X.<property path>` against the step's Describe*-shaped properties.
  In a path, `Outputs['train']` on a list picks the item whose `*Name` field (`OutputName`, `ChannelName`, ...) is
  `train`; on a map (`TunedHyperParameters['lr']`) it is the key.
- `Std:Join`: the values, resolved and written as the service writes them (0.9, 3, true), joined with `On`.
- `Std:JsonGet`: a value from a step's PropertyFile (or a JSON file at `S3Uri`) at a JSON path.
- Conditions: Equals, GreaterThan(OrEqualTo), LessThan(OrEqualTo), In, Not, Or. Ordering comparisons treat strings
  that are numbers as numbers, since JsonGet returns whatever JSON holds.

A reference that cannot be resolved raises `ExpressionError`, whose message is the step's failure reason.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipelines.parameters import coerce_parameters
from pipelines.validation import is_expression, property_path_tokens, resolve_json_path

STEP_REFERENCE = re.compile(r"^Steps\.([A-Za-z0-9\-_]+)(.*)$")
ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanOrEqualTo": lambda a, b: a >= b,
    "LessThan": lambda a, b: a < b,
    "LessThanOrEqualTo": lambda a, b: a <= b,
}


class ExpressionError(Exception):
    """An expression cannot be evaluated; the message says which and why."""


# ---------------------------------------------------------------------------------------------- the context
@dataclass
class ExecutionContext:
    """What expressions of one execution can see. The executor adds each step's properties as it succeeds."""

    parameters: dict[str, Any]
    variables: dict[str, str]
    step_properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    # step name -> {PropertyFileName: the file's parsed JSON}
    property_files: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Reads the JSON file behind an S3 URI, for `Std:JsonGet` with `S3Uri`; None: such a JsonGet fails.
    read_uri: Callable[[str], Any] | None = None

    @classmethod
    def for_execution(cls, definition: Mapping[str, Any], parameters: Mapping[str, Any], *, execution_id: str,
                      execution_arn: str, pipeline_name: str, pipeline_arn: str, started: str,
                      read_uri: Callable[[str], Any] | None = None) -> ExecutionContext:
        variables = {
            "PipelineExecutionId": execution_id,
            "PipelineExecutionArn": execution_arn,
            "PipelineName": pipeline_name,
            "PipelineArn": pipeline_arn,
            "StartDateTime": started,
        }
        declared = definition.get("Parameters") or []
        return cls(coerce_parameters(declared, parameters), variables, read_uri=read_uri)

    def variable(self, name: str) -> str:
        if name == "CurrentDateTime":
            return datetime.now(UTC).isoformat(timespec="milliseconds")
        if name not in self.variables:
            raise ExpressionError(f"Get Execution.{name}: no such execution variable; known: "
                                  f"{', '.join([*self.variables, 'CurrentDateTime'])}")
        return self.variables[name]


# ---------------------------------------------------------------------------------------------- resolving values
def resolve(value: Any, context: ExecutionContext) -> Any:
    """`value` (step arguments, a condition operand...) with every expression replaced by its value."""
    if is_expression(value):
        kind, body = next(iter(value.items()))
        if kind == "Get":
            return _get(body, context)
        if kind == "Std:Join":
            return _join(body, context)
        return _json_get(body, context)
    if isinstance(value, dict):
        return {key: resolve(inner, context) for key, inner in value.items()}
    if isinstance(value, list):
        return [resolve(inner, context) for inner in value]
    return value


def to_text(value: Any) -> str:
    """A value as Std:Join writes it: 0.9, 3, true/false, text as is, structures as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return {math.inf: "Infinity", -math.inf: "-Infinity"}.get(value, "NaN")
    if isinstance(value, int | float | str):
        return str(value)
    if value is None:
        raise ExpressionError("Std:Join cannot join an undefined value")
    return json.dumps(value, separators=(",", ":"))


def _join(body: Any, context: ExecutionContext) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("Values"), list):
        raise ExpressionError(f"Std:Join needs On and a list of Values, got {body!r}")
    return str(body.get("On", "")).join(to_text(resolve(item, context)) for item in body["Values"])


def _get(reference: Any, context: ExecutionContext) -> Any:
    if not isinstance(reference, str):
        raise ExpressionError(f"Get needs a reference string, got {reference!r}")
    root, _, rest = reference.partition(".")
    if root == "Parameters":
        if rest not in context.parameters:
            raise ExpressionError(f"Get {reference}: no parameter {rest!r}; known: {', '.join(context.parameters)}")
        return context.parameters[rest]
    if root == "Execution":
        return context.variable(rest)
    step_name, path = split_step_reference(reference)
    if path.startswith("PropertyFiles."):
        raise ExpressionError(f"Get {reference}: a PropertyFile is read with Std:JsonGet, not Get")
    if step_name not in context.step_properties:
        raise ExpressionError(f"Get {reference}: step {step_name} has no properties (it has not succeeded)")
    return lookup_property(context.step_properties[step_name], path, reference)


def split_step_reference(reference: str) -> tuple[str, str]:
    """`Steps.Train.ModelArtifacts.S3ModelArtifacts` -> ("Train", "ModelArtifacts.S3ModelArtifacts")."""
    match = STEP_REFERENCE.match(reference)
    if match is None:
        raise ExpressionError(f"Get {reference}: must start with Parameters., Execution. or Steps.<step name>")
    return match.group(1), match.group(2).lstrip(".")


def lookup_property(properties: Any, path: str, reference: str) -> Any:
    """The value at a property path; a list indexed by a name picks the item whose `*Name` field equals it."""
    try:
        tokens = property_path_tokens(path)
    except ValueError as err:
        raise ExpressionError(f"Get {reference}: {err}") from None
    value, walked = properties, list[str]()
    for token in tokens:
        found, inner = _step_into(value, token)
        if not found:
            where = f"under {'.'.join(walked)}" if walked else "at the top"
            raise ExpressionError(f"Get {reference}: the step's properties have no {token!r} {where} "
                                  f"(there: {_available(value)})")
        value = inner
        walked.append(str(token))
    return value


def _available(value: Any) -> str:
    if isinstance(value, dict):
        names = list(value)
    elif isinstance(value, list):
        names = [next((v for k, v in item.items() if k.endswith("Name")), "?") if isinstance(item, dict) else "?"
                 for item in value]
        names = [f"[{i}] {name}" for i, name in enumerate(names)]
    else:
        names = [repr(value)]
    return ", ".join(map(str, names[:12])) or "nothing"


def _step_into(value: Any, token: str | int) -> tuple[bool, Any]:
    if isinstance(token, int):
        ok = isinstance(value, list) and -len(value) <= token < len(value)
        return ok, value[token] if ok else None
    if isinstance(value, dict):
        return token in value, value.get(token)
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and any(k.endswith("Name") and v == token for k, v in item.items()):
                return True, item
    return False, None


def _json_get(body: Any, context: ExecutionContext) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get("Path"), str):
        raise ExpressionError(f"Std:JsonGet needs a PropertyFile (or S3Uri) and a Path, got {body!r}")
    path = body["Path"]
    if "PropertyFile" in body:
        document, where = _property_file(body["PropertyFile"], context)
    elif "S3Uri" in body:
        uri = resolve(body["S3Uri"], context)
        if context.read_uri is None:
            raise ExpressionError(f"Std:JsonGet of {uri}: no file reader in this context")
        document, where = context.read_uri(uri), f"file {uri}"
    else:
        raise ExpressionError(f"Std:JsonGet needs a PropertyFile or an S3Uri, got {body!r}")
    try:
        return resolve_json_path(document, path)
    except (KeyError, ValueError) as err:
        detail = err.args[0] if err.args else str(err)
        raise ExpressionError(f"Std:JsonGet: path {path!r} is not in {where}: {detail}") from None


def _property_file(reference: Any, context: ExecutionContext) -> tuple[Any, str]:
    text = reference.get("Get") if isinstance(reference, dict) else reference
    if not isinstance(text, str) or ".PropertyFiles." not in text:
        raise ExpressionError(f"Std:JsonGet: PropertyFile must be {{'Get': 'Steps.<step>.PropertyFiles.<name>'}}, "
                              f"got {reference!r}")
    step_name, path = split_step_reference(text)
    name = path.removeprefix("PropertyFiles.")
    files = context.property_files.get(step_name, {})
    if name not in files:
        raise ExpressionError(f"Std:JsonGet: property file {name} of step {step_name} has not been read "
                              f"(the step has not succeeded, or declares no such PropertyFile)")
    return files[name], f"property file {name} (step {step_name})"


def referenced_steps(value: Any) -> set[str]:
    """The steps whose properties or property files `value` reads (the data dependencies it creates)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Get" and isinstance(inner, str):
                match = STEP_REFERENCE.match(inner)
                if match:
                    found.add(match.group(1))
            elif key not in ("IfSteps", "ElseSteps"):  # a branch's steps carry their own dependencies
                found |= referenced_steps(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= referenced_steps(inner)
    return found


# ---------------------------------------------------------------------------------------------- conditions
def evaluate_conditions(conditions: list[Mapping[str, Any]], context: ExecutionContext) -> bool:
    """A Condition step's outcome: all of its conditions hold."""
    return all(evaluate_condition(condition, context) for condition in conditions)


def evaluate_condition(condition: Mapping[str, Any], context: ExecutionContext) -> bool:
    kind = condition.get("Type")
    if kind in ORDERINGS:
        left, right = resolve(condition.get("LeftValue"), context), resolve(condition.get("RightValue"), context)
        return _ordered(kind, left, right)
    if kind == "Equals":
        return values_equal(resolve(condition.get("LeftValue"), context), resolve(condition.get("RightValue"),
                                                                                   context))
    if kind == "In":
        query = resolve(condition.get("QueryValue"), context)
        return any(values_equal(query, resolve(v, context)) for v in condition.get("Values", []))
    if kind == "Not":
        # The SDK writes the negated condition under "Condition"; the service's schema calls it "Expression".
        inner = condition.get("Condition", condition.get("Expression"))
        if not isinstance(inner, Mapping):
            raise ExpressionError("a Not condition needs the condition it negates (Condition or Expression)")
        return not evaluate_condition(inner, context)
    if kind == "Or":
        return any(evaluate_condition(inner, context) for inner in condition.get("Conditions", []))
    raise ExpressionError(f"unknown condition type {kind!r}; known: Equals, {', '.join(ORDERINGS)}, In, Not, Or")


def as_number(value: Any) -> int | float | None:
    """A number, or a string holding one; None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value.strip())
            except ValueError:
                continue
    return None


def values_equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return to_text(left) == to_text(right) if left is not None and right is not None else False
    if isinstance(left, int | float) or isinstance(right, int | float):
        a, b = as_number(left), as_number(right)
        return a is not None and b is not None and a == b
    return left == right


def _ordered(kind: str, left: Any, right: Any) -> bool:
    a, b = as_number(left), as_number(right)
    if a is not None and b is not None:
        return ORDERINGS[kind](a, b)
    if not (isinstance(left, str) and isinstance(right, str)):
        raise ExpressionError(f"{kind} cannot compare {left!r} ({type(left).__name__}) with {right!r} "
                              f"({type(right).__name__})")
    return ORDERINGS[kind](left, right)
