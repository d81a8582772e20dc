"""The study's vocabulary and its grid: methods, schedules, their GMP config
sections, display labels and the (method, schedule, sparsity) cells a config
trains.

Pure Python (no torch, no numpy): the Snakefile imports it at parse time.
Everything that names a method or schedule (rules, config checks, tables,
figures) takes it from here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FIGURE_COLUMNS",
    "FIGURE_SCHEDULES",
    "GMP_SECTION",
    "GROUP_LABELS",
    "HEAD_GMP_SECTION",
    "METHODS",
    "METHOD_LABELS",
    "METHOD_SCHEDULES",
    "PRETRAIN_OBJECTIVE",
    "PRUNED_SCHEDULES",
    "SCHEDULES",
    "SCHEDULE_LABELS",
    "SPLIT_SIZES",
    "Grid",
    "figure_columns",
    "group_label",
]

# CIFAR-10's images per split (both sources); a null data.subset_* is all of them.
SPLIT_SIZES = {"train": 50_000, "test": 10_000}

METHODS = ("sup", "scl", "simclr")  # cross-entropy; SupCon; SimCLR (no labels)
# Every schedule; "dense" (s0) is implied for every method and never listed.
SCHEDULES = ("dense", "gmp", "delayed_gmp", "oneshot")
PRUNED_SCHEDULES = SCHEDULES[1:]
# The schedules each method can run (delayed GMP is SCL only: paper §3).
METHOD_SCHEDULES = {"sup": ("gmp", "oneshot"), "scl": ("gmp", "delayed_gmp", "oneshot")}
# SimCLR runs SCL's stages (pre-training, linear head), so SCL's schedules.
METHOD_SCHEDULES["simclr"] = METHOD_SCHEDULES["scl"]
# The contrastive methods: pre-training (this loss) then a linear head.
PRETRAIN_OBJECTIVE = {"scl": "supcon", "simclr": "simclr"}

METHOD_LABELS = {"sup": "Sup", "scl": "SCL", "simclr": "SimCLR"}
SCHEDULE_LABELS = {
    "dense": "dense",
    "gmp": "GMP",
    "delayed_gmp": "ΔGMP",
    "oneshot": "One-Shot",
}
GROUP_LABELS = {
    (m, sc): f"{METHOD_LABELS[m]} / {SCHEDULE_LABELS[sc]}"
    for m in METHODS
    for sc in METHOD_SCHEDULES[m]
}

# The `gmp.<section>` that schedules the pruning of a (method, schedule) during
# training; the SCL linear head of every GMP-pruned SCL model has its own.
GMP_SECTION = {
    ("sup", "gmp"): "sup",
    ("scl", "gmp"): "scl",
    ("scl", "delayed_gmp"): "scl_delayed",
    ("simclr", "gmp"): "simclr",
    ("simclr", "delayed_gmp"): "simclr_delayed",
}
HEAD_GMP_SECTION = {("scl", "gmp"): "scl_head", ("scl", "delayed_gmp"): "scl_head"}
HEAD_GMP_SECTION |= {
    ("simclr", "gmp"): "simclr_head",
    ("simclr", "delayed_gmp"): "simclr_head",
}
# The training loop (config path) each GMP section counts its steps in.
GMP_LOOP = {
    "sup": ("sup",),
    "scl": ("scl", "pretrain"),
    "scl_delayed": ("scl", "pretrain"),
    "scl_head": ("scl", "head"),
    "simclr": ("simclr", "pretrain"),
    "simclr_delayed": ("simclr", "pretrain"),
    "simclr_head": ("simclr", "head"),
}

# The method/schedule columns of Figures 2, 3, 5 and 7 (the paper's four):
# per method present, its GMP then its One-Shot column.
FIGURE_SCHEDULES = ("gmp", "oneshot")


def figure_columns(methods: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The figure columns of ``methods`` (in vocabulary order)."""
    return tuple(
        (m, sc)
        for m in METHODS
        if m in methods
        for sc in FIGURE_SCHEDULES
        if sc in METHOD_SCHEDULES[m]
    )


FIGURE_COLUMNS = figure_columns(("sup", "scl"))  # the paper's


def group_label(method: str, schedule: str) -> str:
    """``Sup / GMP``; ``SCL dense`` for a dense population."""
    if schedule == "dense":
        return f"{METHOD_LABELS[method]} dense"
    return GROUP_LABELS[(method, schedule)]


@dataclass(frozen=True)
class Grid:
    """The populations a config trains: per method, per schedule, sparsities.

    ``schedules`` maps method -> schedule -> sparsities (percent); an empty
    list (or a method not in ``methods``) means the schedule is not run.
    """

    methods: tuple[str, ...]
    schedules: Mapping[str, Mapping[str, tuple[int, ...]]]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Grid:
        methods = tuple(config["methods"])
        schedules = {
            m: {
                sc: tuple(sorted(config["schedules"].get(m, {}).get(sc) or ()))
                for sc in METHOD_SCHEDULES[m]
            }
            for m in methods
        }
        return cls(methods, schedules)

    def sparsities(self, method: str, schedule: str) -> tuple[int, ...]:
        """Sorted sparsities of one (method, schedule); (0,) for dense."""
        if method not in self.methods:
            return ()
        if schedule == "dense":
            return (0,)
        return tuple(self.schedules[method].get(schedule, ()))

    def has(self, method: str, schedule: str, sparsity: int | None = None) -> bool:
        got = self.sparsities(method, schedule)
        return bool(got) if sparsity is None else sparsity in got

    def pruned_schedules(self, method: str) -> list[str]:
        """The pruned schedules run for ``method``, in vocabulary order."""
        return [sc for sc in PRUNED_SCHEDULES if self.has(method, sc)]

    def cells(self, method: str) -> list[tuple[str, int]]:
        """(schedule, sparsity) pairs trained for a method, the dense s0 first."""
        if method not in self.methods:
            return []
        return [("dense", 0)] + [
            (sc, s)
            for sc in self.pruned_schedules(method)
            for s in self.sparsities(method, sc)
        ]

    def all_cells(self) -> Iterator[tuple[str, str, int]]:
        for m in self.methods:
            for sc, s in self.cells(m):
                yield m, sc, s

    def all_sparsities(
        self, columns: Sequence[tuple[str, str]] | None = None
    ) -> list[int]:
        """Sorted union of the pruned sparsities of ``columns`` (default: all)."""
        if columns is None:
            columns = [(m, sc) for m in self.methods for sc in self.pruned_schedules(m)]
        return sorted({s for m, sc in columns for s in self.sparsities(m, sc)})

    def shared_sparsities(self, schedule: str) -> list[int]:
        """Sparsities at which both methods run ``schedule`` (Sup-vs-SCL overlap)."""
        return sorted(
            set(self.sparsities("sup", schedule))
            & set(self.sparsities("scl", schedule))
        )

    def nearest(
        self, requested: int, columns: Sequence[tuple[str, str]], common: bool = False
    ) -> int:
        """The sparsity a figure of ``columns`` shows: ``requested`` if trained,
        else the largest trained one below it (else the smallest); 0 if none.
        ``common``: only sparsities every column has (else any column's)."""
        if common:
            sets = [set(self.sparsities(m, sc)) for m, sc in columns]
            trained = sorted(set.intersection(*sets)) if sets else []
        else:
            trained = self.all_sparsities(columns)
        if not trained:
            return 0
        below = [s for s in trained if s <= requested]
        return below[-1] if below else trained[0]
