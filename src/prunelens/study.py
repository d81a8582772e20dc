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
    "ARCHS",
    "FIGURE_COLUMNS",
    "FIGURE_SCHEDULES",
    "GMP_SECTION",
    "GROUP_LABELS",
    "HEAD_GMP_SECTION",
    "IMP_LOOP",
    "METHODS",
    "METHOD_LABELS",
    "METHOD_SCHEDULES",
    "PAPER_GROUPS",
    "POST_TRAINING_SCHEDULES",
    "PRETRAIN_OBJECTIVE",
    "PRUNED_SCHEDULES",
    "SCHEDULES",
    "SCHEDULE_LABELS",
    "SPARSITY_TOLERANCE_PP",
    "SPLIT_SIZES",
    "UNSUPPORTED_SCHEDULES",
    "Grid",
    "arch_params",
    "arch_spec",
    "group_label",
    "imp_schedule",
]

# A pruned tensor further than this (percentage points) from its own target
# sparsity is flagged in the sparsity table and the claims (issue 15).
SPARSITY_TOLERANCE_PP = 0.5

# CIFAR-10's images per split (both sources); a null data.subset_* is all of them.
SPLIT_SIZES = {"train": 50_000, "test": 10_000}

# Encoder architectures (config model.arch) and the size keys each takes.
ARCHS = {"wrn": ("depth", "width"), "resnet18": ()}

METHODS = ("sup", "scl", "simclr")  # cross-entropy; SupCon; SimCLR (no labels)
# Every schedule; "dense" (s0) is implied for every method and never listed.
SCHEDULES = ("dense", "gmp", "delayed_gmp", "oneshot", "random", "imp")
PRUNED_SCHEDULES = SCHEDULES[1:]
# Prune a trained dense model, then the One-Shot fine-tune: every method has
# them (prunelens.methods.PRUNERS; rule prune_oneshot).
POST_TRAINING_SCHEDULES = ("oneshot", "random")
# The schedules that prune during a method's own training.
TRAINING_SCHEDULES = {
    "sup": ("gmp", "imp"),
    # IMP of a contrastive method: over its pre-training (rule pretrain_imp)
    "scl": ("gmp", "delayed_gmp", "imp"),
    # SimCLR runs SCL's stages (pre-training, linear head), so SCL's schedules.
    "simclr": ("gmp", "delayed_gmp", "imp"),
}
# The schedules each method can run, in vocabulary order.
METHOD_SCHEDULES = {
    m: tuple(
        sc for sc in PRUNED_SCHEDULES if sc in own or sc in POST_TRAINING_SCHEDULES
    )
    for m, own in TRAINING_SCHEDULES.items()
}
# Why a (method, schedule) outside METHOD_SCHEDULES is refused (config checks).
UNSUPPORTED_SCHEDULES = {
    ("sup", "delayed_gmp"): "delayed GMP is for SCL only (paper §3)",
}
# The contrastive methods: pre-training (this loss) then a linear head.
PRETRAIN_OBJECTIVE = {"scl": "supcon", "simclr": "simclr"}

METHOD_LABELS = {"sup": "Sup", "scl": "SCL", "simclr": "SimCLR"}
SCHEDULE_LABELS = {
    "dense": "dense",
    "gmp": "GMP",
    "delayed_gmp": "ΔGMP",
    "oneshot": "One-Shot",
    "random": "Random",
    "imp": "IMP",
}
GROUP_LABELS = {
    (m, sc): f"{METHOD_LABELS[m]} / {SCHEDULE_LABELS[sc]}"
    for m in METHODS
    for sc in METHOD_SCHEDULES[m]
}

# The paper's (method, schedule) groups (Table 1's columns): a table notes
# those a grid lacks (prunelens.tables.absent_note).
PAPER_GROUPS = (
    ("sup", "gmp"),
    ("sup", "oneshot"),
    ("scl", "gmp"),
    ("scl", "delayed_gmp"),
    ("scl", "oneshot"),
)

# The `gmp.<section>` that schedules the pruning of a (method, schedule) during
# training; the linear head of every pruned contrastive model (GMP, ΔGMP or
# IMP encoder) has its own, so the whole classifier reaches the target.
GMP_SECTION = {
    ("sup", "gmp"): "sup",
    ("scl", "gmp"): "scl",
    ("scl", "delayed_gmp"): "scl_delayed",
    ("simclr", "gmp"): "simclr",
    ("simclr", "delayed_gmp"): "simclr_delayed",
}
HEAD_GMP_SECTION = {
    (m, sc): f"{m}_head" for m in PRETRAIN_OBJECTIVE for sc in TRAINING_SCHEDULES[m]
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

# The training loop (config path) IMP runs over, per method: Sup's training,
# a contrastive method's pre-training (its linear head is fit afterwards).
IMP_LOOP = {
    "sup": ("sup",),
    "scl": ("scl", "pretrain"),
    "simclr": ("simclr", "pretrain"),
}

# The four method/schedule columns of Figures 2, 3, 5 and 7 in the paper.
FIGURE_COLUMNS = (
    ("sup", "gmp"),
    ("sup", "oneshot"),
    ("scl", "gmp"),
    ("scl", "oneshot"),
)
# The schedules the figures show (ΔGMP is in Table 1 only, as in the paper);
# a grid's figure columns are those it trains (Grid.figure_columns).
FIGURE_SCHEDULES = ("gmp", "oneshot", "random", "imp")


def arch_spec(
    name: str, sizes: Mapping[str, Any], *, exact: bool = False
) -> dict[str, Any]:
    """The canonical ``arch`` mapping that builds an encoder and that
    ``model.pt`` / ``encoder.pt`` store: ``{"depth": d, "width": w}`` for
    WRN (no ``name``, as every file before ``model.arch``, so WRN jobs keep
    their params and resume files) and ``{"name": name, **sizes}`` otherwise.

    ``sizes`` may hold other keys (config ``model`` does) unless ``exact``.
    ValueError for an unknown name or a missing (or, if exact, extra) key.
    """
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r} (known: {', '.join(ARCHS)})")
    keys = ARCHS[name]
    missing = [k for k in keys if k not in sizes]
    extra = sorted(set(sizes) - set(keys)) if exact else []
    if missing or extra:
        what = f"needs {list(keys)}" if keys else "takes no size keys"
        raise ValueError(f"architecture {name!r} {what}, got {sorted(sizes)}")
    spec = {k: sizes[k] for k in keys}
    return spec if name == "wrn" else {"name": name, **spec}


def arch_params(model: Mapping[str, Any]) -> dict[str, Any]:
    """The ``arch`` param of the training jobs from config ``model``: only the
    chosen architecture's keys (a ResNet-18 job does not depend on
    ``model.depth``)."""
    return arch_spec(model["arch"], model)


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

    def figure_columns(
        self, schedules: Sequence[str] = FIGURE_SCHEDULES
    ) -> list[tuple[str, str]]:
        """(method, schedule) columns of the figures: those of ``schedules``
        the grid trains, method by method in vocabulary order (the paper's
        grid: exactly FIGURE_COLUMNS)."""
        return [
            (m, sc)
            for m in self.methods
            for sc in self.pruned_schedules(m)
            if sc in schedules
        ]

    def absent(self, columns: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Those of ``columns`` the grid does not train."""
        return [(m, sc) for m, sc in columns if not self.has(m, sc)]

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


# A step that lands this close below a target is that target (float noise).
_EPS = 1e-9


def imp_schedule(targets: Sequence[float], fraction: float) -> list[float]:
    """Cumulative sparsity after each round.

    Each round removes ``fraction`` of the remaining weights, except that a
    round that would pass a requested target stops exactly at it; the last
    round ends at ``max(targets)``. E.g. fraction 0.2, targets [0.5, 0.9]:
    0.2, 0.36, 0.488, 0.5, 0.6, 0.68, ..., 0.8951424, 0.9.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"imp.fraction must be in (0, 1), got {fraction}")
    if not targets or not all(0 < t < 1 for t in targets):
        raise ValueError(f"IMP targets must be in (0, 1), got {list(targets)}")
    out: list[float] = []
    s = 0.0
    for t in sorted(set(targets)):
        while True:
            s = 1 - (1 - s) * (1 - fraction)
            if s >= t - _EPS:
                out.append(t)
                s = t
                break
            out.append(s)
    return out
