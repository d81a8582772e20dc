"""The paper's figures from the workflow's files (Figures 1-7 of Corti et al.).

Each ``figN`` reads the files a rule names and draws with
:mod:`prunelens.figures`; nothing here computes a score.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from prunelens.curves import read_curves
from prunelens.data import load_prepared
from prunelens.datasets import DATASETS
from prunelens.figures import (
    Cell,
    fig_absent,
    fig_curves,
    fig_dense_vs_sparse,
    fig_gallery,
    fig_pie_classes,
    fig_umap,
    gallery_group,
    save,
    select_gallery,
)
from prunelens.files import (
    SCORE_COLUMNS,
    load_embeddings,
    load_pie,
    load_scores,
    same_examples,
)
from prunelens.pie import overlap_iou, pie_class_counts
from prunelens.study import (
    FIGURE_COLUMNS,
    METHOD_LABELS,
    SCHEDULE_LABELS,
    group_label,
)

log = logging.getLogger("prunelens.paper")

PathLike = str | Path

__all__ = ["fig1", "fig5", "fig_gallery_pies", "fig_pies_by_class", "fig_scatter"]


def note_substitution(what: str, requested: int, used: int) -> None:
    if requested != used:
        log.warning(
            "%s: %d%% sparsity is not in the grid; showing %d%% instead",
            what,
            requested,
            used,
        )


def absent_text(what: str, cells: Sequence[tuple[str, str]]) -> str:
    """``what``'s panels need ``cells``, which this grid does not train."""
    names = ", ".join(group_label(m, sc) for m, sc in cells) or "none"
    return f"{what}: not in this grid (needs {names})"


def _umap_panel(emb: pd.DataFrame, method: str, schedule: str, sparsity: int):
    sel = emb[
        (emb["method"] == method)
        & (emb["schedule"] == schedule)
        & (emb["sparsity"] == sparsity)
    ]
    return Cell(method, schedule, sparsity), (sel if len(sel) else None)


def _per_method(
    methods: Sequence[str], columns: Sequence[tuple[str, str]]
) -> dict[str, list[str]]:
    return {m: [sc for m2, sc in columns if m2 == m] for m in methods}


def fig1(
    embeddings: PathLike,
    *,
    methods: Sequence[str],
    sparsity: int,
    requested: int,
    pdf: PathLike,
    png: PathLike,
    columns: Sequence[tuple[str, str]] = FIGURE_COLUMNS,
    dataset: str = "cifar10",
) -> None:
    """UMAP of each method (one row each): dense, then each of its
    ``columns`` schedules at ``sparsity`` (the paper: GMP and One-Shot)."""
    note_substitution("Figure 1", requested, sparsity)
    ds = DATASETS[dataset]
    emb = load_embeddings(embeddings, n_classes=ds.n_classes)
    rows = _per_method(methods, columns)
    ncols = 1 + max((len(v) for v in rows.values()), default=0)
    panels: list[Any] = []
    for method, schedules in rows.items():
        panels.append(_umap_panel(emb, method, "dense", 0))
        panels += [_umap_panel(emb, method, sc, sparsity) for sc in schedules]
        panels += [None] * (ncols - 1 - len(schedules))
    fig_umap(
        panels,
        ds.classes,
        pdf,
        png,
        ncols=ncols,
        superclasses=ds.superclasses,
        superclass_of=ds.superclass_of,
        title=f"Figure 1: representations of dense and {sparsity}%-sparse models "
        "(UMAP)",
    )


def fig5(
    embeddings: PathLike,
    *,
    sparsities: Sequence[int],
    pdf: PathLike,
    png: PathLike,
    methods: Sequence[str] = ("sup", "scl"),
    columns: Sequence[tuple[str, str]] = FIGURE_COLUMNS,
    dataset: str = "cifar10",
) -> None:
    """UMAP grid: the dense row (each method's dense model above its first
    column), then one row per sparsity, one column per (method, schedule)."""
    ds = DATASETS[dataset]
    emb = load_embeddings(embeddings, n_classes=ds.n_classes)
    panels: list[Any] = []
    for method, schedules in _per_method(methods, columns).items():
        panels.append(_umap_panel(emb, method, "dense", 0))
        panels += [None] * (len(schedules) - 1)
    ncols = max(len(panels), len(columns), 1)
    panels += [None] * (ncols - len(panels))
    for s in sparsities:
        row = [_umap_panel(emb, m, sc, s) for m, sc in columns]
        panels += row + [None] * (ncols - len(row))
    fig_umap(
        panels,
        ds.classes,
        pdf,
        png,
        ncols=ncols,
        superclasses=ds.superclasses,
        superclass_of=ds.superclass_of,
        title="Figure 5: UMAP of representations across pruning methods and sparsities",
    )


def fig_scatter(
    cells: Sequence[Mapping[str, Any]],
    *,
    column: str,
    axis_label: str,
    title: str,
    sparsity: int,
    requested: int,
    pdf: PathLike,
    png: PathLike,
) -> None:
    """Figures 2 and 3: dense versus sparse per-example score, PIEs coloured.

    ``cells``: mappings with ``method, schedule, dense, sparse, pie`` paths.
    """
    note_substitution(title.split(":")[0], requested, sparsity)
    if not cells:
        text = absent_text(title.split(":")[0], FIGURE_COLUMNS)
        fig_absent(pdf, png, title=title, text=text)
        return
    kind = "q" if column in SCORE_COLUMNS["q"] else "pd"
    frames: dict[Any, pd.DataFrame] = {}
    for c in cells:
        for path in (c["dense"], c["sparse"]):
            frames.setdefault(path, load_scores(path, kind))
        frames.setdefault(c["pie"], load_pie(c["pie"]))
    same_examples([(p, f["index"].to_numpy()) for p, f in frames.items()])
    panels = [
        (
            Cell(c["method"], c["schedule"], sparsity),
            frames[c["dense"]],
            frames[c["sparse"]],
            frames[c["pie"]],
        )
        for c in cells
    ]
    fig_dense_vs_sparse(panels, column, pdf, png, axis_label=axis_label, title=title)


def fig_pies_by_class(
    pies: Mapping[str, PathLike],
    *,
    rows: Sequence[tuple[str, Sequence[tuple[str, str, int]]]],
    title: str,
    pdf: PathLike,
    png: PathLike,
    sharey: bool | str = False,
    dataset: str = "cifar10",
) -> None:
    """Figures 4 and 7: PIEs per class, shared by Sup and SCL versus unique.

    ``pies`` maps ``<method>_<schedule>_s<sparsity>`` to PIE tables; each row
    of ``rows`` is (row label, [(method, schedule, sparsity), ...]). Shared
    means a PIE of both methods under the same schedule and sparsity.
    CIFAR-100's classes are grouped by superclass.
    """
    if not any(panels for _, panels in rows):
        text = "no schedule and sparsity trained for both Sup and SCL"
        fig_absent(pdf, png, title=title, text=f"{title.split(':')[0]}: {text}")
        return
    ds = DATASETS[dataset]
    tables = {key: load_pie(path, n_classes=ds.n_classes) for key, path in pies.items()}
    same_examples(
        [(pies[k], t["index"].to_numpy()) for k, t in tables.items()], rule="vote_pies"
    )
    grid = []
    for row_label, panels in rows:
        drawn = []
        for method, schedule, s in panels:
            if method not in ("sup", "scl"):
                # its panel would show the Sup-versus-SCL counts under its name
                raise ValueError(
                    f"{title.split(':')[0]} compares Sup and SCL; got a "
                    f"{METHOD_LABELS[method]} panel"
                )
            sup = tables[f"sup_{schedule}_s{s}"]
            scl = tables[f"scl_{schedule}_s{s}"]
            iou = overlap_iou(sup, scl)
            name, label = METHOD_LABELS[method], SCHEDULE_LABELS[schedule]
            drawn.append(
                (
                    f"{name} / {label} {s}% (IoU {iou:.2f})",
                    pie_class_counts(sup, scl, n_classes=ds.n_classes),
                    "a" if method == "sup" else "b",
                )
            )
        if drawn:
            grid.append((row_label, drawn))
    fig_pie_classes(
        grid,  # type: ignore[arg-type]
        ds.classes,
        pdf,
        png,
        title=title,
        sharey=sharey,  # type: ignore[arg-type]
        superclasses=ds.superclasses,
        superclass_of=ds.superclass_of,
    )


def fig_gallery_pies(
    pies: Mapping[str, PathLike],
    *,
    data: PathLike,
    method: str,
    sparsity: int,
    requested: int,
    per_group: int,
    pdf: PathLike,
    png: PathLike,
) -> None:
    """Figure 6: test images the dense population gets wrong and the sparse one
    right (and the reverse), under each schedule of ``pies`` (the paper: GMP
    and One-Shot), with both modal labels."""
    title = f"Figure 6: {METHOD_LABELS[method]} images whose modal label flips"
    if not pies:
        cells = [(method, "gmp"), (method, "oneshot")]
        fig_absent(pdf, png, title=title, text=absent_text("Figure 6", cells))
        return
    note_substitution("Figure 6", requested, sparsity)
    test = load_prepared(data, "test")
    groups = []
    for schedule, path in pies.items():
        name = SCHEDULE_LABELS[schedule]
        pie = load_pie(path, index=test.index, n_classes=test.n_classes)
        for wrong_dense, text in (
            (True, "dense wrong, sparse right"),
            (False, "dense right, sparse wrong"),
        ):
            rows = select_gallery(
                pie, dense_wrong_sparse_right=wrong_dense, k=per_group
            )
            images, captions = gallery_group(
                rows, test.images, test.index, test.classes
            )
            groups.append((f"{name} {sparsity}%: {text}", images, captions))
    fig_gallery(
        groups,
        pdf,
        png,
        title=f"{title}\n(U: dense population, S: sparse population)",
        max_per_group=per_group,
    )


def fig_training_curves(
    panels: Sequence[Mapping[str, Any]],
    *,
    method: str,
    schedule: str,
    pdf: str | Path,
    png: str | Path,
) -> None:
    """The training curves of one (method, schedule) from its models' curves
    CSVs: ``panels`` are {stage, sparsity, files (one per seed)}, in order."""
    stages: dict[str, dict[int, list[pd.DataFrame]]] = {}
    for p in panels:
        by = stages.setdefault(p["stage"], {})
        by[int(p["sparsity"])] = [read_curves(f) for f in p["files"]]
    n_seeds = max(len(p["files"]) for p in panels)
    fig = fig_curves(
        list(stages.items()),
        title=f"Training curves: {group_label(method, schedule)}",
        n_seeds=n_seeds,
    )
    save(fig, pdf, png)
