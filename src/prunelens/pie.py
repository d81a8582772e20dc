"""Pruning Identified Exemplars (Hooker et al. 2019; study-reference §6).

An example is a PIE when the modal predicted label of the pruned population
differs from the dense population's. The true label plays no part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from prunelens.files import load_predictions, same_examples

TieBreak = Literal["smallest", "largest"]

__all__ = [
    "Population",
    "load_population",
    "load_populations",
    "half_pie_count",
    "modal_labels",
    "noise_floor",
    "overlap_iou",
    "pie_class_counts",
    "vote_pies",
]


@dataclass(frozen=True)
class Population:
    index: np.ndarray  # (N,) example ids, identical for every member
    labels: np.ndarray  # (N,)
    preds: np.ndarray  # (M, N) predicted class per model
    reps: list[np.ndarray] | None = None  # (N, D) per model, when asked for


def load_populations(
    groups: Sequence[Sequence[str | Path]],
    *,
    reps: bool | Sequence[bool] = False,
    index: np.ndarray | None = None,
) -> list[Population]:
    """One :class:`Population` per group of predictions files, every file
    checked and all of them of the same examples with the same labels
    (``index`` when the caller knows the split; else the odd file out is
    named). ``reps`` (per group, or for all) keeps each model's
    representations too."""
    wants = [reps] * len(groups) if isinstance(reps, bool) else list(reps)
    if any(not g for g in groups):
        raise ValueError("a population needs at least one predictions file")
    arrays = [("rep",) if want else () for want in wants]
    loaded = [
        [load_predictions(p, index=index, arrays=a) for p in g]
        for g, a in zip(groups, arrays, strict=True)
    ]
    flat = [
        (p, f)
        for g, fs in zip(groups, loaded, strict=True)
        for p, f in zip(g, fs, strict=True)
    ]
    shared = same_examples([(p, f.index) for p, f in flat], rule="predict")
    labels = same_examples(
        [(p, f.label) for p, f in flat], what="labels", rule="predict"
    )
    return [
        Population(
            shared,
            labels,
            np.stack([f.pred for f in fs]),
            [f.rep for f in fs if f.rep is not None] if want else None,
        )
        for fs, want in zip(loaded, wants, strict=True)
    ]


def load_population(
    paths: Sequence[str | Path],
    *,
    reps: bool = False,
    index: np.ndarray | None = None,
) -> Population:
    """One population's predictions files (see :func:`load_populations`)."""
    return load_populations([paths], reps=reps, index=index)[0]


def modal_labels(
    preds: np.ndarray, n_classes: int | None = None, tie_break: TieBreak = "smallest"
) -> tuple[np.ndarray, np.ndarray]:
    """Modal class per column of ``preds`` (M, N) and whether the vote tied.

    ``smallest``: the lowest tied class wins (the authors' bincount argmax);
    ``largest``: the highest (Hooker et al.'s ``mode().max()``). Any
    ``n_classes`` above the largest prediction gives the same result; None
    takes that one.
    """
    m, n = preds.shape
    if n_classes is None:
        n_classes = int(preds.max()) + 1 if preds.size else 1
    counts = np.zeros((n, n_classes), dtype=np.int64)
    np.add.at(counts, (np.broadcast_to(np.arange(n), (m, n)), preds), 1)
    top = counts.max(axis=1, keepdims=True)
    is_top = counts == top
    tie = is_top.sum(axis=1) > 1
    if tie_break == "smallest":
        mode = is_top.argmax(axis=1)
    else:
        mode = n_classes - 1 - is_top[:, ::-1].argmax(axis=1)
    return mode.astype(np.int64), tie


def vote_pies(
    dense: Population,
    pruned: Population,
    *,
    n_classes: int | None = None,
    tie_break: TieBreak = "smallest",
) -> pd.DataFrame:
    """Columns ``index,label,dense_mode,pruned_mode,pie,tie`` (one row per example)."""
    if not np.array_equal(dense.index, pruned.index):
        raise ValueError("dense and pruned populations cover different examples")
    d_mode, d_tie = modal_labels(dense.preds, n_classes, tie_break)
    p_mode, p_tie = modal_labels(pruned.preds, n_classes, tie_break)
    return pd.DataFrame(
        {
            "index": dense.index,
            "label": dense.labels,
            "dense_mode": d_mode,
            "pruned_mode": p_mode,
            "pie": d_mode != p_mode,
            "tie": d_tie | p_tie,
        }
    )


def _halves(n_models: int) -> int:
    if n_models < 4:
        raise ValueError(f"the noise floor needs >= 4 dense models, got {n_models}")
    return n_models // 2


def noise_floor(
    dense: np.ndarray, *, n_classes: int | None = None, tie_break: TieBreak = "smallest"
) -> int:
    """PIEs between the two halves of a dense population (M, N), by seed
    order: models [0, h) against [h, 2h), h = M // 2 (an odd last model is
    left out). What seed noise alone gives at that population size."""
    h = _halves(len(dense))
    a, _ = modal_labels(dense[:h], n_classes, tie_break)
    b, _ = modal_labels(dense[h : 2 * h], n_classes, tie_break)
    return int((a != b).sum())


def half_pie_count(
    dense: np.ndarray,
    pruned: np.ndarray,
    *,
    n_classes: int | None = None,
    tie_break: TieBreak = "smallest",
) -> int:
    """PIEs between the first dense half [0, h) and the pruned models of the
    second half's seeds [h, 2h): the same population sizes, and the same
    disjoint seeds, as :func:`noise_floor`, so the two compare directly."""
    h = _halves(len(dense))
    if len(pruned) < 2 * h:
        raise ValueError(
            f"the pruned population has {len(pruned)} models, needs {2 * h}"
        )
    a, _ = modal_labels(dense[:h], n_classes, tie_break)
    b, _ = modal_labels(pruned[h : 2 * h], n_classes, tie_break)
    return int((a != b).sum())


def _pie_ids(pie: pd.DataFrame) -> set[int]:
    return set(pie.loc[pie["pie"].astype(bool), "index"].astype(int))


def overlap_iou(pie_a: pd.DataFrame, pie_b: pd.DataFrame) -> float:
    """|A∩B| / |A∪B| of the two tables' PIE indices; 0.0 when both are empty."""
    a, b = _pie_ids(pie_a), _pie_ids(pie_b)
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def pie_class_counts(
    pie_a: pd.DataFrame, pie_b: pd.DataFrame, n_classes: int = 10
) -> pd.DataFrame:
    """PIEs per true class: ``shared`` by both tables, ``unique_a``, ``unique_b``.

    Indexed by class id ``0..n_classes-1`` (zero rows included).
    """
    labels = pd.concat([pie_a[["index", "label"]], pie_b[["index", "label"]]])
    labels = labels.drop_duplicates()
    if labels["index"].duplicated().any():
        raise ValueError("the two tables disagree on some examples' labels")
    label_of = labels.set_index("index")["label"]
    a, b = _pie_ids(pie_a), _pie_ids(pie_b)
    out = pd.DataFrame(
        {
            name: label_of.loc[sorted(ids)].value_counts()
            for name, ids in (
                ("shared", a & b),
                ("unique_a", a - b),
                ("unique_b", b - a),
            )
        }
    )
    out = out.reindex(range(n_classes)).fillna(0).astype(int)
    out.index.name = "class"
    return out
