"""Validation of YAML configs against JSON schemas, with defaults filled in.

Error messages name the file, the key path and the problem, and suggest the
closest allowed key for a misspelt one.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    """A configuration file or mapping that does not satisfy its schema."""


def _extend_with_default(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


DefaultFillingValidator = _extend_with_default(jsonschema.Draft202012Validator)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; raises ConfigError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    msg = error.message
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        hints = []
        for k in extra:
            close = difflib.get_close_matches(k, allowed, n=1)
            hints.append(f"unknown key {k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        msg = "; ".join(hints) + f"; allowed keys: {', '.join(allowed)}"
    return f"at {where}: {msg}"


def validate(data: dict, schema_file: str | Path, source: str = "config") -> dict:
    """Validate ``data`` against a YAML JSON-schema; return a copy with defaults filled.

    Raises :class:`ConfigError` listing every problem, each with its key path.
    """
    schema = yaml.safe_load(Path(schema_file).read_text())
    out = copy.deepcopy(data)
    validator = DefaultFillingValidator(schema)
    errors = sorted(validator.iter_errors(out), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n  ".join(_describe(e) for e in errors)
        raise ConfigError(f"{source} is invalid:\n  {lines}")
    return out


def workflow_defaults(overrides: dict | None = None) -> dict:
    """The workflow config with every default filled from ``workflow/schemas/config.schema.yaml``
    (plus ``overrides``): what a run with an empty config/config.yaml would use."""
    from .paths import schema_path

    return validate(dict(overrides or {}), schema_path("config.schema.yaml"), "workflow defaults")
