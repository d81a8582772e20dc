"""Configuration checks that fail with one line naming the key or file.

Pure Python (no torch): ``workflow/rules/common.smk`` imports it at parse
time, before any job runs. Snakemake's own ``validate`` then runs on a config
already known to be good, so users never see its schema dump.

``python -m prunelens.config FILE ...`` checks config files alone: for a file
given with ``--configfile`` or by a profile, Snakemake reports bad YAML
before the workflow starts and without the file's name.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from prunelens.datasets import DATASETS
from prunelens.runtime import atomic_path
from prunelens.study import (
    GMP_LOOP,
    GMP_SECTION,
    HEAD_GMP_SECTION,
    IMP_LOOP,
    METHOD_SCHEDULES,
    PRETRAIN_OBJECTIVE,
    SPLIT_SIZES,
    UNSUPPORTED_SCHEDULES,
    Grid,
)

__all__ = [
    "SCALE_MARKER",
    "ConfigError",
    "check",
    "check_config_files",
    "key_path",
    "load_schema",
    "load_yaml",
    "record_scale",
    "scale_conflict",
]

# Which scale's results the working directory's results/ holds.
SCALE_MARKER = "results/scale.txt"


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the key."""


def _duplicate_key(node: yaml.Node, where: str = "") -> str | None:
    """The first key given twice in one mapping of ``node``, as a message."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            path = f"{where}.{name}" if where else str(name)
            line = key.start_mark.line + 1
            if name is not None and name != "<<":  # "<<" merges, not a key
                if name in seen:
                    return (
                        f"key '{path}' given twice (lines {seen[name]} and {line}; "
                        "YAML keeps only the last)"
                    )
                seen[name] = line
            if found := _duplicate_key(value, path):
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            if found := _duplicate_key(item, f"{where}[{i}]"):
                return found
    return None


def load_yaml(path: str | Path, what: str = "file") -> Any:
    """A YAML file's content; ConfigError naming the file if it is not valid
    YAML or gives a key twice (YAML loaders keep the last one silently)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{what} '{path}': cannot read it ({exc.strerror})") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        found = None if node is None else _duplicate_key(node)
        if found:
            raise ConfigError(f"{what} '{path}': {found}")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"{what} '{path}': not valid YAML ({at}{problem})".replace("\n", " ")
        ) from exc


def check_config_files(paths: Iterable[str | Path]) -> None:
    """Each config file is valid YAML, a mapping and gives no key twice."""
    for path in paths:
        content = load_yaml(path, what="config file")
        if not isinstance(content, dict):
            got = "nothing" if content is None else f"a {type(content).__name__}"
            raise ConfigError(
                f"config file '{path}': must be a mapping of keys to values "
                f"('key: value' lines), got {got}"
            )


def load_schema(path: str | Path) -> dict[str, Any]:
    return load_yaml(path, what="schema")


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
    if found := _head_section_error(config):
        return found
    data = config.get("data")
    for key in ("official_url", "official_md5", "mean", "std"):
        # one value for CIFAR-10 only, before data.dataset
        value = data.get(key) if isinstance(data, Mapping) else None
        if value is not None and not isinstance(value, Mapping):
            return (
                f"config key 'data.{key}': one value per data set, "
                f"data.{key}.<{'|'.join(DATASETS)}> (README, Configuration)"
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
        known = _known_keys(err.schema, schema)
        extra = sorted(set(err.instance) - known)
        where = key_path(err.absolute_path)
        return f"config key '{where}': unknown key(s) {', '.join(map(repr, extra))}"
    return f"config key '{key_path(err.absolute_path)}': {err.message}"


def _head_section_error(config: Mapping[str, Any]) -> str | None:
    """``gmp.<method>_head`` for a method whose models have no linear head
    (the schema would only call it an unknown key)."""
    gmp = config.get("gmp")
    if not isinstance(gmp, Mapping):
        return None
    with_head = sorted({m for m, _ in HEAD_GMP_SECTION})
    known = set(_gmp_users())
    for key in gmp:
        method = str(key).removesuffix("_head")
        if (
            key not in known
            and str(key).endswith("_head")
            and method in METHOD_SCHEDULES
        ):
            heads = ", ".join(f"gmp.{m}_head" for m in with_head)
            return (
                f"config key 'gmp.{key}': method '{method}' trains no separate "
                f"linear head to prune (head GMP sections: {heads})"
            )
    return None


def _known_keys(sub: Mapping[str, Any], root: Mapping[str, Any]) -> set[str]:
    """The keys a (sub)schema declares, with those of the definitions it
    pulls in by ``$ref`` or ``allOf`` (``unevaluatedProperties`` sees them)."""
    known = set(sub.get("properties", {}))
    ref = sub.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        known |= _known_keys(target, root)
    for part in sub.get("allOf", []):
        known |= _known_keys(part, root)
    return known


_TRAIN_SIZE = SPLIT_SIZES["train"]


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


def _schedule_checks(config: Mapping[str, Any]) -> str | None:
    """Each listed schedule is one its method can run; IMP can rewind."""
    for method, listed in config["schedules"].items():
        for schedule in listed:
            if schedule in METHOD_SCHEDULES[method]:
                continue
            why = UNSUPPORTED_SCHEDULES.get(
                (method, schedule),
                f"its schedules are {', '.join(METHOD_SCHEDULES[method])}",
            )
            return (
                f"config key 'schedules.{method}.{schedule}': not a schedule of "
                f"method '{method}': {why}"
            )
    grid = Grid.from_config(config)
    rewind = config["imp"]["rewind_epoch"]
    for method, loop_key in IMP_LOOP.items():
        loop = config
        for k in loop_key:
            loop = loop[k]
        epochs = loop["epochs"]
        if grid.has(method, "imp") and rewind >= epochs:
            return (
                f"config key 'imp.rewind_epoch': {rewind} is not before the end of "
                f"training ({'.'.join(loop_key)}.epochs = {epochs}), so IMP has "
                "nothing to retrain"
            )
    imp_lists = {
        m: grid.sparsities(m, "imp") for m in PRETRAIN_OBJECTIVE if grid.has(m, "imp")
    }
    if len(set(imp_lists.values())) > 1:
        (m0, s0), (m1, s1) = imp_lists.items()
        return (
            f"config key 'schedules.{m1}.imp': {list(s1)} differs from "
            f"schedules.{m0}.imp = {list(s0)}; rule pretrain_imp writes the IMP "
            "encoders of every contrastive method with one output list, so both "
            "must list the same sparsities"
        )
    return None


def _cross_checks(config: Mapping[str, Any]) -> str | None:
    for method in config["methods"]:
        if method not in config["schedules"]:
            return f"config key 'schedules': no schedules listed for method '{method}'"
    if found := _schedule_checks(config):
        return found
    data = config["data"]
    dataset = DATASETS[data["dataset"]]
    if data["source"] == "images" and dataset.name != "cifar10":
        return (
            f"config key 'data.source': 'images' (the JPEG archive) holds CIFAR-10 "
            f"only; data.dataset {dataset.name} needs source: official"
        )
    for split, size in SPLIT_SIZES.items():
        n = data[f"subset_{split}"]
        if n is not None and n > size:
            return (
                f"config key 'data.subset_{split}': {n} exceeds the {size} images "
                f"of {dataset.label}'s {split} split (null: all of them)"
            )
        if n is not None and n % dataset.n_classes:
            return (
                f"config key 'data.subset_{split}': {n} is not a multiple of "
                f"{dataset.label}'s {dataset.n_classes} classes (class-balanced)"
            )
    if data["source"] == "images" and not Path(data["images_archive"]).is_file():
        return (
            f"config key 'data.images_archive': no such file "
            f"'{data['images_archive']}' (from {Path.cwd()})"
        )
    for key in ("sup.milestones", "scl.head.milestones", "simclr.head.milestones"):
        section, name = key.rsplit(".", 1)
        value = config
        for k in section.split("."):
            value = value[k]
        if value[name] != sorted(value[name]):
            return f"config key '{key}': must be increasing, got {value[name]}"
    return _gmp_checks(config) or _analysis_checks(config) or _model_checks(config)


def _model_checks(config: Mapping[str, Any]) -> str | None:
    """A WRN depth the network can be built with (6n + 4)."""
    model = config["model"]
    if model["arch"] == "wrn" and (model["depth"] - 4) % 6:
        return (
            f"config key 'model.depth': WideResNet depth must be 6n+4 "
            f"(10, 16, 22, 28, ...), got {model['depth']}"
        )
    return None


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


def scale_conflict(marker: str | Path, scale: str) -> str | None:
    """Why a run of ``scale`` must not write into the results ``marker``
    describes (another scale's), or None."""
    marker = Path(marker)
    try:
        held = marker.read_text().strip()
    except FileNotFoundError:
        return None
    if held == scale:
        return None
    return (
        f"{marker}: {marker.parent}/ holds the {held!r} scale's results and this "
        f"run is the {scale!r} scale, whose jobs would overwrite them; add "
        "--config replace_scale=True to replace them, or keep both by running "
        "in another folder (--directory DIR)"
    )


def record_scale(marker: str | Path, scale: str) -> None:
    with atomic_path(marker) as tmp:
        tmp.write_text(f"{scale}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m prunelens.config FILE ...``: one line per bad file."""
    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        print("usage: python -m prunelens.config CONFIG.yaml ...", file=sys.stderr)
        return 2
    bad = 0
    for path in paths:
        try:
            check_config_files([path])
        except ConfigError as err:
            print(err, file=sys.stderr)
            bad += 1
    return 1 if bad else 0


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


if __name__ == "__main__":
    sys.exit(main())
