"""Configuration checks that fail with one line naming the key.

Pure Python (no torch): ``workflow/rules/common.smk`` imports it at parse
time, before any job runs. Snakemake's own ``validate`` then runs on a config
already known to be good, so users never see its schema dump.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from prunelens.study import GMP_LOOP, GMP_SECTION, HEAD_GMP_SECTION, Grid

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
    if "sparsities" in config:  # the grid's shape before per-schedule lists
        return (
            "config key 'sparsities': replaced by per-schedule lists, "
            "schedules.<method>.<schedule>: [30, 50, ...] (README, Configuration)"
        )
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


_TRAIN_SIZE = 50_000  # CIFAR-10's training split, both sources


def _gmp_users() -> dict[str, list[tuple[str, str]]]:
    """The (method, schedule) cells each ``gmp.<section>`` prunes."""
    users: dict[str, list[tuple[str, str]]] = {}
    for table in (GMP_SECTION, HEAD_GMP_SECTION):
        for cell, section in table.items():
            users.setdefault(section, []).append(cell)
    return users


def _gmp_checks(config: Mapping[str, Any]) -> str | None:
    """A GMP schedule must start and end within its training loop."""
    n_train = config["data"]["subset_train"] or _TRAIN_SIZE
    grid = Grid.from_config(config)
    for section, cells in _gmp_users().items():
        loop_key = GMP_LOOP[section]
        gmp = config["gmp"][section]
        if gmp["begin"] > gmp["end"]:
            return (
                f"config key 'gmp.{section}.begin': {gmp['begin']} is after "
                f"gmp.{section}.end = {gmp['end']}"
            )
        if not any(grid.has(m, sc) for m, sc in cells):
            continue
        loop = config
        for k in loop_key:
            loop = loop[k]
        per_epoch = -(-n_train // loop["batch_size"])
        total = loop["epochs"] * per_epoch
        for end in ("begin", "end"):
            if gmp[end] > total:
                return (
                    f"config key 'gmp.{section}.{end}': step {gmp[end]} is after the "
                    f"last training step {total} ({'.'.join(loop_key)}.epochs = "
                    f"{loop['epochs']} x {per_epoch} steps), so the target sparsity "
                    "is never reached"
                )
    return None


def _cross_checks(config: Mapping[str, Any]) -> str | None:
    for method in config["methods"]:
        if method not in config["schedules"]:
            return f"config key 'schedules': no schedules listed for method '{method}'"
    data = config["data"]
    if data["source"] == "images" and not Path(data["images_archive"]).is_file():
        return (
            f"config key 'data.images_archive': no such file "
            f"'{data['images_archive']}' (from {Path.cwd()})"
        )
    for key in ("sup.milestones", "scl.head.milestones"):
        section, name = key.rsplit(".", 1)
        value = config
        for k in section.split("."):
            value = value[k]
        if value[name] != sorted(value[name]):
            return f"config key '{key}': must be increasing, got {value[name]}"
    return _gmp_checks(config) or _analysis_checks(config)


def _analysis_checks(config: Mapping[str, Any]) -> str | None:
    """Populations must hold the models an analysis asks for."""
    n_seeds = len(config["seeds"])
    for key in ("depth", "umap"):
        models = config["analysis"][key]["models"]
        if models > n_seeds:
            return (
                f"config key 'analysis.{key}.models': {models} models asked for, "
                f"but a population has only {n_seeds} (the seeds list)"
            )
    n_train = config["data"]["subset_train"] or _TRAIN_SIZE
    k = config["analysis"]["depth"]["k"]
    if k > n_train:
        return (
            f"config key 'analysis.depth.k': k = {k} exceeds the {n_train} "
            "training images the probes are fitted on"
        )
    return None


def check(config: Mapping[str, Any], schema_path: str | Path) -> None:
    """Raise ConfigError with one line if ``config`` is not usable."""
    message = _schema_error(config, load_schema(schema_path)) or _cross_checks(config)
    if message:
        raise ConfigError(message.replace("\n", " "))


def seed_blocks(seeds: Sequence[int], per_job: int) -> list[list[int]]:
    """The seeds cut in order into blocks of ``per_job`` (the last may be short).

    Each block of two or more seeds is one stacked training job; a block of
    one is an ordinary per-seed job.
    """
    if per_job < 1:
        raise ValueError(f"seeds per job must be >= 1, got {per_job}")
    seeds = list(seeds)
    return [seeds[i : i + per_job] for i in range(0, len(seeds), per_job)]


def seed_pattern_excluding(seeds: Sequence[int]) -> str:
    """A wildcard regex for any seed number except ``seeds``.

    For the per-seed rule when stacked block rules own ``seeds``: the word
    boundary keeps 2 from excluding 20 (what follows a seed in every path is
    ``/`` or ``.``).
    """
    if not seeds:
        return r"\d+"
    return rf"(?!(?:{'|'.join(str(int(s)) for s in seeds)})\b)\d+"
