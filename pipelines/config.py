"""The pipeline's configuration: `pipeline.toml` < `--config FILE` < `PIPELINE_*` env vars < command-line flags.

`pipeline.toml` at the repo root holds every default; nothing here repeats a default value. Each value remembers
where it came from, so a bad one is reported with its origin ("PIPELINE_TUNING_MAX_JOBS", "my.toml", "--bucket").
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from pipelines.config_checks import check_config
from pipelines.config_schema import (
    APPROVAL_STATUSES,
    DEFAULTS_FILE,
    DEPLOYMENT_MODES,
    ENV_PREFIX,
    EXPLAIN_METHODS,
    LOCAL_BUCKET,
    LOCAL_ROLE_ARN,
    RANGE_SCALINGS,
    RANGE_TYPES,
    REPO_ROOT,
    SECTIONS,
    TARGETS,
    TRAINING_DISTRIBUTIONS,
    TUNING_STRATEGIES,
    BatchConfig,
    ConfigError,
    DataConfig,
    DebuggerConfig,
    DeploymentConfig,
    EvaluationConfig,
    ExplainConfig,
    HyperparameterRange,
    InstancesConfig,
    LocalConfig,
    PipelineConfig,
    ProjectConfig,
    RegistryConfig,
    RetryConfig,
    RulesConfig,
    TrainingConfig,
    TuningConfig,
    bucket_and_role,
    env_var_name,
)

# The schema's names are this module's too: callers import the configuration from one place.
__all__ = [
    "load_config", "REPO_ROOT", "DEFAULTS_FILE", "ENV_PREFIX", "TARGETS", "TUNING_STRATEGIES", "RANGE_TYPES",
    "RANGE_SCALINGS", "APPROVAL_STATUSES", "LOCAL_ROLE_ARN", "LOCAL_BUCKET", "bucket_and_role", "ConfigError",
    "ProjectConfig", "DataConfig", "InstancesConfig", "TrainingConfig", "HyperparameterRange", "TuningConfig",
    "EvaluationConfig", "RegistryConfig", "RulesConfig", "DebuggerConfig", "BatchConfig", "ExplainConfig",
    "DeploymentConfig", "RetryConfig", "LocalConfig", "DEPLOYMENT_MODES", "TRAINING_DISTRIBUTIONS", "EXPLAIN_METHODS",
    "PipelineConfig",
    "SECTIONS", "env_var_name",
]


def load_config(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Reads the defaults, the optional user file, the environment and `overrides` ({"project.bucket": ...})."""
    environ = os.environ if environ is None else environ
    defaults = _read_toml(DEFAULTS_FILE)
    layers = [(DEFAULTS_FILE.name, defaults)]
    if config_file is not None and Path(config_file).resolve() != DEFAULTS_FILE:
        user = _read_toml(Path(config_file))
        _check_known_keys(user, defaults, str(config_file))
        layers.append((str(config_file), user))
    top_levels: dict[str, Any] = {}
    for _, layer in layers:
        top_levels = _deep_merge(top_levels, {k: v for k, v in layer.items() if k != "local"})
    target = _resolve_target(top_levels, overrides or {}, environ)
    raw, origins = _layered(layers, target == "local")
    _apply_env(raw, origins, environ)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            section, key = dotted.split(".", 1)
            raw.setdefault(section, {})[key] = value
            origins[dotted] = f"--{key.replace('_', '-')}"
    config = _build(raw, origins)
    check_config(config, origins)
    return dataclasses.replace(config, source=str(config_file or DEFAULTS_FILE))


def _layered(layers: list[tuple[str, dict[str, Any]]], local: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """Each file in turn, its [local.*] tables right after its own sections when the target is local.

    So a user's `--config` file beats everything in pipeline.toml, the bundled local defaults included.
    """
    raw: dict[str, Any] = {}
    origins: dict[str, str] = {}
    local_settings: dict[str, Any] = {}
    for where, layer in layers:
        layer = dict(layer)
        local_tables = layer.pop("local", {})
        raw = _deep_merge(raw, layer)
        origins.update(_origins(layer, where))
        for key, value in local_tables.items():
            if not isinstance(value, dict):
                local_settings[key] = value
                origins[f"local.{key}"] = where
            elif local and key in raw:
                raw[key] = _deep_merge(raw[key], value)
                origins.update(_origins({key: value}, f"{where} [local.{key}]"))
    raw["local"] = local_settings
    return raw, origins


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (pass --config with an existing TOML file)")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None


def _origins(raw: Mapping[str, Any], where: str, prefix: str = "") -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        found[dotted] = where
        if isinstance(value, dict):  # every level: a range's origin is "tuning.ranges.<name>"
            found.update(_origins(value, where, f"{dotted}."))
    return found


def _check_known_keys(user: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> None:
    for section, table in user.items():
        if section not in defaults:
            raise ConfigError(f"{where}: unknown section [{section}]; known sections: {', '.join(defaults)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        if section == "local":
            _check_known_keys({k: v for k, v in table.items() if isinstance(v, dict)}, defaults, f"{where} [local]")
            own_keys = [k for k, v in defaults["local"].items() if not isinstance(v, dict)]
            for key, value in table.items():
                if not isinstance(value, dict) and key not in own_keys:
                    raise ConfigError(f"{where}: unknown key '{key}' in [local]; known keys: {', '.join(own_keys)}")
            continue
        for key in table:
            if key not in defaults[section] and key not in ("ranges", "rule_parameters"):
                known = ", ".join(defaults[section])
                raise ConfigError(f"{where}: unknown key '{key}' in [{section}]; known keys: {known}")


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in ("ranges", "rule_parameters"):
            merged[key] = _deep_merge(merged[key], value)
        elif isinstance(value, dict) and key in ("ranges", "rule_parameters") and isinstance(merged.get(key), dict):
            # A range named again replaces the whole range: mixing a categorical over a continuous is nonsense.
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _resolve_target(raw: Mapping[str, Any], overrides: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    target = overrides.get("project.target") or environ.get(env_var_name("project", "target"))
    target = target or raw.get("project", {}).get("target", "")
    if target not in TARGETS:
        raise ConfigError(f"unknown target '{target}'; choose one of: {', '.join(TARGETS)}")
    return target


def _apply_env(raw: dict[str, Any], origins: dict[str, str], environ: Mapping[str, str]) -> None:
    for section, cls in SECTIONS.items():
        for field in fields(cls):
            name = env_var_name(section, field.name)
            if name in environ and field.name not in ("ranges", "rule_parameters"):
                raw.setdefault(section, {})[field.name] = environ[name]
                origins[f"{section}.{field.name}"] = name


def _build(raw: Mapping[str, Any], origins: Mapping[str, str]) -> PipelineConfig:
    sections = {}
    for section, cls in SECTIONS.items():
        table = dict(raw.get(section, {}))
        if section == "tuning":
            table["ranges"] = _build_ranges(table.get("ranges", {}), origins)
        sections[section] = _build_section(cls, section, table, origins)
    return PipelineConfig(**sections)


def _build_section(cls: type, section: str, table: Mapping[str, Any], origins: Mapping[str, str]) -> Any:
    hints = get_type_hints(cls)
    values = {}
    for field in fields(cls):
        if field.name not in table:
            raise ConfigError(f"[{section}] {field.name} is missing (add it to your config file)")
        where = origins.get(f"{section}.{field.name}", "config")
        values[field.name] = _coerce(table[field.name], hints[field.name], f"[{section}] {field.name}", where)
    return cls(**values)


def _build_ranges(table: Mapping[str, Any], origins: Mapping[str, str]) -> tuple[HyperparameterRange, ...]:
    ranges = []
    for name, spec in table.items():
        where = origins.get(f"tuning.ranges.{name}", "config")
        label = f"[tuning.ranges.{name}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: {label} must be a table with a type")
        unknown = set(spec) - {"type", "min", "max", "scaling", "values"}
        if unknown:
            known = "type, min, max, scaling, values"
            raise ConfigError(f"{where}: {label} has unknown keys {sorted(unknown)}; use {known}")
        kind = spec.get("type")
        if kind not in RANGE_TYPES:
            raise ConfigError(f"{where}: {label} type must be one of {', '.join(RANGE_TYPES)}, got {kind!r}")
        if kind == "categorical":
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}: {label} categorical needs a non-empty list `values`")
            ranges.append(HyperparameterRange(name, kind, values=tuple(str(v) for v in values)))
            continue
        numbers = {}
        for bound in ("min", "max"):
            value = spec.get(bound)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where}: {label} {bound} must be a number, got {value!r}")
            if kind == "integer" and value != int(value):
                raise ConfigError(f"{where}: {label} {bound} must be a whole number for an integer range")
            numbers[bound] = value
        scaling = spec.get("scaling", "Auto")
        if scaling not in RANGE_SCALINGS:
            raise ConfigError(f"{where}: {label} scaling must be one of {', '.join(RANGE_SCALINGS)}, got {scaling!r}")
        if numbers["min"] >= numbers["max"]:
            raise ConfigError(f"{where}: {label} min ({numbers['min']}) must be below max ({numbers['max']})")
        if scaling == "Logarithmic" and numbers["min"] <= 0:
            raise ConfigError(f"{where}: {label} Logarithmic scaling needs min > 0, got {numbers['min']}")
        ranges.append(HyperparameterRange(name, kind, numbers["min"], numbers["max"], scaling))
    return tuple(ranges)


def _coerce(value: Any, hint: Any, label: str, where: str) -> Any:
    if hint is HyperparameterRange or get_args(hint) and get_args(hint)[0] is HyperparameterRange:
        return value
    if get_origin(hint) is dict:
        return _coerce_rule_parameters(value, label, where)
    bad = ConfigError(f"{where}: {label} must be {_describe(hint)}, got {value!r}")
    if get_origin(hint) is tuple:
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
            raise bad
        return tuple(items)
    if hint is bool:
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise bad
    if hint in (int, float):
        if isinstance(value, bool):
            raise bad
        try:
            number = hint(value) if isinstance(value, str) else value
        except ValueError:
            raise bad from None
        if hint is int and isinstance(number, float) or not isinstance(number, int | float):
            raise bad
        return hint(number)
    if not isinstance(value, str):
        raise bad
    return value


def _coerce_rule_parameters(value: Any, label: str, where: str) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigError(f"{where}: {label} must be tables, one per rule: [section.rule_parameters.RULE] KEY = VALUE")
    result = {}
    for rule, parameters in value.items():
        for key, item in parameters.items():
            if isinstance(item, dict | list):
                raise ConfigError(f"{where}: {label}.{rule}.{key} must be a single value, got {item!r}")
        result[rule] = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in parameters.items()}
    return result


def _describe(hint: Any) -> str:
    if get_origin(hint) is tuple:
        return "a list of strings (comma-separated in an environment variable)"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(hint, str(hint))
