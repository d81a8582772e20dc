"""Configuration checks that fail with one line naming the key.

Pure Python (no torch): ``workflow/rules/common.smk`` imports it at parse
time, before any job runs. Snakemake's own ``validate`` then runs on a config
already known to be good, so users never see its schema dump.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = ["ConfigError", "check", "key_path", "load_schema"]


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the key."""


def load_schema(path: str | Path) -> dict[str, Any]:
    with open(path) as fh:
        return yaml.safe_load(fh)


def key_path(parts: Any) -> str:
    """Render a jsonschema path deque as ``sup.milestones[2]``."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _schema_error(config: Mapping[str, Any], schema: dict[str, Any]) -> str | None:
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(config))
    if not errors:
        return None
    # Report the first error in document order, its deepest cause first.
    err = jsonschema.exceptions.best_match(errors)
    while err.context:
        err = jsonschema.exceptions.best_match(err.context)
    if err.validator in ("additionalProperties", "unevaluatedProperties"):
        known = set(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - known)
        where = key_path(err.absolute_path)
        return f"config key '{where}': unknown key(s) {', '.join(map(repr, extra))}"
    return f"config key '{key_path(err.absolute_path)}': {err.message}"


def _cross_checks(config: Mapping[str, Any]) -> str | None:
    for method in config["methods"]:
        if method not in config["schedules"]:
            return f"config key 'schedules': no schedules listed for method '{method}'"
    for method, gmp in config["gmp"].items():
        if gmp["begin"] > gmp["end"]:
            return (
                f"config key 'gmp.{method}.begin': {gmp['begin']} is after "
                f"gmp.{method}.end = {gmp['end']}"
            )
    data = config["data"]
    if data["source"] == "images" and not Path(data["images_archive"]).is_file():
        return (
            f"config key 'data.images_archive': no such file "
            f"'{data['images_archive']}' (from {Path.cwd()})"
        )
    milestones = config["sup"]["milestones"]
    if milestones != sorted(milestones):
        return f"config key 'sup.milestones': must be increasing, got {milestones}"
    return None


def check(config: Mapping[str, Any], schema_path: str | Path) -> None:
    """Raise ConfigError with one line if ``config`` is not usable."""
    message = _schema_error(config, load_schema(schema_path)) or _cross_checks(config)
    if message:
        raise ConfigError(message.replace("\n", " "))
