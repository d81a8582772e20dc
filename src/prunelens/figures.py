"""The paper's figures (Corti et al. 2022, Figures 1-7) from per-example tables.

Every figure is written twice, as PDF and PNG, through :func:`save`. Inputs are
plain DataFrames / arrays; reading them from disk is the caller's job.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from prunelens.runtime import atomic_path
from prunelens.study import GROUP_LABELS, METHOD_LABELS

# Headless workflow jobs: never pick an interactive backend. pyplot resolves
# its backend lazily, so switching after the import above is safe.
matplotlib.use("Agg")

__all__ = [
    "METHOD_LABELS",
    "Cell",
    "fig_curves",
    "fig_dense_vs_sparse",
    "fig_gallery",
    "fig_pie_classes",
    "fig_umap",
    "gallery_group",
    "save",
    "select_gallery",
]

PathLike = str | Path
# Okabe-Ito-like "colorblind" palette: ten distinguishable hues, one per class.
PALETTE = sns.color_palette("colorblind", 10)
PNG_DPI = 150
_RC = {
    **sns.axes_style("whitegrid"),
    **sns.plotting_context("paper", font_scale=1.3),
    "pdf.fonttype": 42,  # embed TrueType so text stays selectable/editable
}


@dataclass(frozen=True)
class Cell:
    """One population of models: training method, pruning schedule, sparsity %."""

    method: str
    schedule: str
    sparsity: int

    def __post_init__(self) -> None:
        if self.method not in METHOD_LABELS:
            raise ValueError(f"unknown method {self.method!r}")
        if (
            self.schedule != "dense"
            and (self.method, self.schedule) not in GROUP_LABELS
        ):
            raise ValueError(f"no {self.method!r} population for {self.schedule!r}")

    @property
    def label(self) -> str:
        if self.schedule == "dense":
            return f"{METHOD_LABELS[self.method]} dense"
        return f"{GROUP_LABELS[(self.method, self.schedule)]} {self.sparsity}%"


@contextmanager
def _style() -> Iterator[None]:
    """Seaborn look, scoped so importing this module restyles nothing else.

    Figures opened inside are closed if building one fails, so a long-lived
    caller (tests, notebooks) does not accumulate half-drawn figures.
    """
    before = set(plt.get_fignums())
    with plt.rc_context(_RC):
        try:
            yield
        except BaseException:
            for num in set(plt.get_fignums()) - before:
                plt.close(num)
            raise


def save(fig: Figure, pdf_path: PathLike, png_path: PathLike) -> None:
    """Write ``fig`` as PDF and PNG, each atomically, then close it."""
    try:
        with atomic_path(pdf_path) as tmp:
            # No CreationDate: reruns give byte-identical PDFs.
            fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})
        with atomic_path(png_path) as tmp:
            fig.savefig(tmp, format="png", dpi=PNG_DPI)
    finally:
        plt.close(fig)


def _light(
    color: tuple[float, float, float], amount: float = 0.55
) -> tuple[float, ...]:
    """``color`` blended towards white."""
    return tuple(c + (1.0 - c) * amount for c in color)


def _note(ax: Axes, text: str) -> None:
    """Boxed text in the upper-left corner (empty there for near-identity data)."""
    ax.text(
        0.03,
        0.97,
        text,
        transform=ax.transAxes,
        ha="left",
        va="top",
        fontsize="small",
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "lw": 0},
    )


def _placeholder(ax: Axes, text: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", color="0.4", style="italic")


def fig_absent(pdf: PathLike, png: PathLike, *, title: str, text: str) -> None:
    """A figure whose populations the grid does not train: one panel saying
    which are absent, so the rule (and ``all``) still has its files."""
    with _style():
        fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
        _placeholder(ax, text)
        fig.suptitle(title, fontsize="x-large")
        save(fig, pdf, png)


def _name(label: str) -> str:
    return label.replace("_", " ")


def class_colours(
    classes: Sequence[str],
    superclasses: Sequence[str] = (),
    superclass_of: Sequence[int] = (),
) -> tuple[np.ndarray, list[tuple[str, Any]], str]:
    """Per class an RGB colour, the legend's (name, colour) entries and its
    title. Up to 10 classes get a colour each; more (CIFAR-100) share their
    superclass's (20 colours), or a colour map without legend entries."""
    if len(classes) <= len(PALETTE):
        colours = np.asarray(PALETTE)[: len(classes)]
        return (
            colours,
            list(zip(classes, colours, strict=True)),
            "modal predicted class",
        )
    if superclasses:
        groups = np.asarray(sns.color_palette("tab20", len(superclasses)))
        entries = [(_name(n), groups[i]) for i, n in enumerate(superclasses)]
        return (
            groups[np.asarray(superclass_of)],
            entries,
            "superclass of the modal predicted class",
        )
    colours = np.asarray(
        plt.get_cmap("hsv")(np.linspace(0, 1, len(classes), endpoint=False))
    )[:, :3]
    return colours, [], "modal predicted class (hue)"


def class_order(
    classes: Sequence[str],
    superclasses: Sequence[str] = (),
    superclass_of: Sequence[int] = (),
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """Classes in plotting order and the (label, first, last) position span
    of each superclass: superclass by superclass when there are any."""
    if not superclasses:
        return np.arange(len(classes)), []
    of = np.asarray(superclass_of)
    order = np.lexsort((np.arange(len(classes)), of))
    spans = []
    for g, name in enumerate(superclasses):
        pos = np.flatnonzero(of[order] == g)
        if len(pos):
            spans.append((_name(name), float(pos[0]), float(pos[-1])))
    return order, spans


# ---------------------------------------------------------------- UMAP (1, 5)


def fig_umap(
    panels: Sequence[tuple[Cell, pd.DataFrame | None] | None],
    classes: Sequence[str],
    pdf: PathLike,
    png: PathLike,
    *,
    ncols: int,
    title: str,
    mark_pies: bool = True,
    point_size: float = 1.5,
    superclasses: Sequence[str] = (),
    superclass_of: Sequence[int] = (),
) -> None:
    """Grid of UMAP scatters coloured by modal prediction, filled row by row.

    A ``(cell, None)`` panel reads "not in grid"; a bare ``None`` leaves its
    slot blank (Figure 5's dense row has only one panel per method). With
    more than 10 classes, colours are the ``superclasses``' (see
    :func:`class_colours`).
    """
    palette, entries, legend_title = class_colours(classes, superclasses, superclass_of)
    nrows = max(1, math.ceil(len(panels) / ncols))
    with _style():
        fig, axes = plt.subplots(
            nrows,
            ncols,
            # at least 3 panels wide, so the title and the legend fit
            figsize=(3.3 * max(ncols, 3), 3.1 * nrows + 0.9),
            layout="constrained",
            squeeze=False,
        )
        any_pie = False
        for ax, panel in zip(axes.flat, [*panels, *[None] * axes.size], strict=False):
            if panel is None:
                ax.set_axis_off()
                continue
            cell, df = panel
            if df is None:
                _placeholder(ax, "not in grid")
                ax.set_title(cell.label)
                continue
            colors = palette[df["mode"].to_numpy(dtype=int)]
            pie = (
                df["pie"].to_numpy(dtype=bool) if mark_pies else np.zeros(len(df), bool)
            )
            # PIEs last so their outlines are not buried under the crowd.
            ax.scatter(
                df["x"][~pie],
                df["y"][~pie],
                c=colors[~pie],
                s=point_size,
                linewidths=0,
                rasterized=True,
            )
            if pie.any():
                any_pie = True
                ax.scatter(
                    df["x"][pie],
                    df["y"][pie],
                    c=colors[pie],
                    s=point_size * 5,
                    edgecolors="black",
                    linewidths=0.4,
                    rasterized=True,
                )
            n_pie = int(df["pie"].sum())
            sub = "" if cell.schedule == "dense" else f"\n{n_pie} PIEs"
            ax.set_title(cell.label + sub)
            # UMAP coordinates carry no units; ticks would only add clutter.
            ax.set_xticks([])
            ax.set_yticks([])
        handles = [
            Line2D([], [], ls="", marker="o", ms=7, color=colour, label=name)
            for name, colour in entries
        ]
        if any_pie:
            handles.append(
                Line2D(
                    [],
                    [],
                    ls="",
                    marker="o",
                    ms=7,
                    mfc="white",
                    mec="black",
                    label="PIE",
                )
            )
        # Long superclass names: as many columns as fit the figure's width.
        longest = max((len(h.get_label()) for h in handles), default=1)
        fit = int(fig.get_figwidth() * 72 / (longest * 6 + 30))
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncol=max(1, min(6, len(handles), fit)),
            title=legend_title,
            frameon=False,
            fontsize="small" if len(handles) > 11 else None,
        )
        fig.suptitle(title, fontsize="x-large")
        save(fig, pdf, png)


# ------------------------------------------------------ dense vs sparse (2, 3)


def _paired(
    dense: pd.DataFrame, sparse: pd.DataFrame, pie: pd.DataFrame, column: str
) -> pd.DataFrame:
    """Per example: dense and sparse ``column`` plus the PIE flag."""
    both = dense[["index", column]].merge(
        sparse[["index", column]],
        on="index",
        suffixes=("_dense", "_sparse"),
        validate="one_to_one",
    )
    if not len(both) == len(dense) == len(sparse):
        raise ValueError("dense and sparse tables cover different examples")
    out = both.merge(pie[["index", "pie"]], on="index", how="left", validate="1:1")
    if out["pie"].isna().any():
        raise ValueError("the PIE table lacks some examples")
    return out.astype({"pie": bool})


def fig_dense_vs_sparse(
    panels: Sequence[tuple[Cell, pd.DataFrame, pd.DataFrame, pd.DataFrame]],
    column: str,
    pdf: PathLike,
    png: PathLike,
    *,
    axis_label: str,
    title: str,
) -> None:
    """Per-example dense (x) vs sparse (y) ``column``, one panel per cell."""
    other, pie_color = PALETTE[0], PALETTE[1]
    with _style():
        fig, axes = plt.subplots(
            1,
            len(panels),
            figsize=(3.6 * len(panels), 4.3),
            layout="constrained",
            squeeze=False,
        )
        for ax, (cell, dense, sparse, pie) in zip(axes.flat, panels, strict=True):
            df = _paired(dense, sparse, pie, column)
            xcol, ycol = f"{column}_dense", f"{column}_sparse"
            finite = df[[xcol, ycol]].notna().all(axis=1)
            n_nan = int((~finite).sum())
            df = df[finite]
            ax.set_title(cell.label)
            ax.set_xlabel(f"{axis_label} (dense)")
            ax.set_ylabel(f"{axis_label} ({cell.sparsity}% sparse)")
            if df.empty:
                _note(ax, f"no finite values\n{n_nan} NaN dropped")
                continue
            for is_pie, color, size, alpha in (
                (False, other, 4, 0.35),
                (True, pie_color, 7, 0.8),
            ):
                part = df[df["pie"] == is_pie]
                ax.scatter(
                    part[xcol],
                    part[ycol],
                    s=size,
                    color=color,
                    alpha=alpha,
                    linewidths=0,
                    rasterized=True,
                )
            lo = float(min(df[xcol].min(), df[ycol].min()))
            hi = float(max(df[xcol].max(), df[ycol].max()))
            pad = 0.05 * (hi - lo) or 0.5
            lim = (lo - pad, hi + pad)
            ax.plot(lim, lim, ls="--", color="0.25", lw=1)
            ax.set_xlim(lim)
            ax.set_ylim(lim)
            ax.set_aspect("equal")
            # Same ticks on both axes, so the square reads as a square.
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
            text = f"n = {len(df)}"
            if len(df) > 2 and df[xcol].std() > 0 and df[ycol].std() > 0:
                text += f"\nPearson r = {df[xcol].corr(df[ycol]):.2f}"
            if n_nan:
                text += f"\n{n_nan} NaN dropped"
            _note(ax, text)
        fig.legend(
            handles=[
                Line2D([], [], ls="", marker="o", color=other, label="non-PIE"),
                Line2D([], [], ls="", marker="o", color=pie_color, label="PIE"),
                Line2D([], [], ls="--", color="0.25", label="identity"),
            ],
            loc="outside lower center",
            ncol=3,
            frameon=False,
        )
        fig.suptitle(title, fontsize="x-large")
        save(fig, pdf, png)


# ------------------------------------------------------- PIE classes (4, 7)


def fig_pie_classes(
    rows: Sequence[tuple[str, Sequence[tuple[str, pd.DataFrame, Literal["a", "b"]]]]],
    classes: Sequence[str],
    pdf: PathLike,
    png: PathLike,
    *,
    title: str,
    names: tuple[str, str] = ("Sup", "SCL"),
    sharey: bool | Literal["row", "col"] = False,
    superclasses: Sequence[str] = (),
    superclass_of: Sequence[int] = (),
) -> None:
    """Grid of per-class stacked bars: shared PIEs (strong) + unique (light).

    Each panel is ``(title, counts, which)`` with ``counts`` from
    :func:`pie_class_counts`; ``which`` picks ``unique_a``/``unique_b`` and the
    colour; ``names`` are the methods behind ``a`` and ``b`` (for the legend).
    With ``superclasses`` (CIFAR-100) the bars go superclass by superclass,
    labelled by superclass and separated by thin lines.
    """
    nrows = len(rows)
    ncols = max(len(panels) for _, panels in rows)
    base = {"a": PALETTE[0], "b": PALETTE[1]}
    order, spans = class_order(classes, superclasses, superclass_of)
    x = np.arange(len(classes))
    wide = 1 + (len(classes) > 20)  # many bars: wider panels
    with _style():
        fig, axes = plt.subplots(
            nrows,
            ncols,
            # at least 4 columns wide, so the title and the legend always fit
            figsize=(3.4 * wide * max(ncols, 4 // wide), 2.5 * nrows + 1.6 + wide),
            layout="constrained",
            squeeze=False,
            sharey=sharey,
        )
        used: set[str] = set()
        for r, (row_label, panels) in enumerate(rows):
            for c in range(ncols):
                ax = axes[r, c]
                if c >= len(panels):
                    ax.set_axis_off()
                    continue
                panel_title, counts, which = panels[c]
                if which not in base:
                    raise ValueError(f"which must be 'a' or 'b', not {which!r}")
                used.add(which)
                shared = counts["shared"].to_numpy()[order]
                ax.bar(x, shared, color=base[which], width=0.8)
                ax.bar(
                    x,
                    counts[f"unique_{which}"].to_numpy()[order],
                    bottom=shared,
                    color=_light(base[which]),
                    width=0.8,
                )
                ax.set_title(panel_title, fontsize="medium")
                # Class names only where no panel sits below (sharex-like).
                below = r + 1 < nrows and c < len(rows[r + 1][1])
                if spans:
                    for _, first, _last in spans[1:]:
                        ax.axvline(first - 0.5, color="0.8", lw=0.6, zorder=0)
                    ax.set_xticks([(a + b) / 2 for _, a, b in spans])
                    ax.set_xlim(-0.6, len(classes) - 0.4)
                    labels = [name for name, _, _ in spans]
                    ax.set_xticklabels(
                        [] if below else labels,
                        rotation=60,
                        ha="right",
                        fontsize="x-small",
                    )
                else:
                    ax.set_xticks(x)
                    names_ = [classes[i] for i in order]
                    ax.set_xticklabels([] if below else names_, rotation=55, ha="right")
                ax.grid(axis="x", visible=False)
                ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
                if c == 0:
                    ax.set_ylabel(f"{row_label}\n# PIEs")
        handles = []
        for which in sorted(used):
            name, other = (names[0], names[1]) if which == "a" else (names[1], names[0])
            handles += [
                Patch(color=base[which], label=f"{name} PIEs shared with {other}"),
                Patch(color=_light(base[which]), label=f"{name}-only PIEs"),
            ]
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncol=len(handles),
            frameon=False,
        )
        fig.suptitle(title, fontsize="x-large")
        save(fig, pdf, png)


# ------------------------------------------------------------- gallery (6)


def select_gallery(
    pie: pd.DataFrame, *, dense_wrong_sparse_right: bool, k: int
) -> pd.DataFrame:
    """Up to ``k`` examples whose correctness flips between dense and sparse.

    Classes take turns (each class's lowest index first, then its second, ...)
    so a small gallery shows several classes; deterministic.
    """
    dense_ok = pie["dense_mode"] == pie["label"]
    sparse_ok = pie["pruned_mode"] == pie["label"]
    mask = ~dense_ok & sparse_ok if dense_wrong_sparse_right else dense_ok & ~sparse_ok
    rows = pie[mask].sort_values("index")
    turn = rows.groupby("label").cumcount()
    order = rows.assign(_turn=turn).sort_values(["_turn", "index"])
    return order.drop(columns="_turn").head(k).reset_index(drop=True)


def gallery_group(
    rows: pd.DataFrame,
    images: np.ndarray,
    image_index: np.ndarray,
    classes: Sequence[str],
) -> tuple[np.ndarray, list[str]]:
    """Images and "U: … S: …" captions for ``rows`` from :func:`select_gallery`."""
    pos = pd.Series(np.arange(len(image_index)), index=image_index)
    missing = ~rows["index"].isin(pos.index)
    if missing.any():
        raise KeyError(f"no image for examples {rows['index'][missing].tolist()}")
    picked = images[pos.loc[rows["index"]].to_numpy()]
    captions = [
        f"U: {classes[u]}  S: {classes[s]}"
        for u, s in zip(rows["dense_mode"], rows["pruned_mode"], strict=True)
    ]
    return picked, captions


def fig_gallery(
    groups: Sequence[tuple[str, np.ndarray, Sequence[str]]],
    pdf: PathLike,
    png: PathLike,
    *,
    title: str,
    max_per_group: int = 8,
    ncols: int = 4,
    upscale: int = 4,
) -> None:
    """Rows of captioned thumbnails, one titled block per group."""
    shown = []
    for group_title, images, captions in groups:
        if len(images) != len(captions):
            raise ValueError(
                f"{group_title}: {len(images)} images, {len(captions)} captions"
            )
        shown.append((group_title, images[:max_per_group], captions[:max_per_group]))
    grid_rows = [math.ceil(len(imgs) / ncols) for _, imgs, _ in shown]
    # Inches per block: an empty group needs one line of text, not a row.
    heights = [0.45 + (2.7 * n if n else 0.6) for n in grid_rows]
    with _style():
        fig = plt.figure(
            figsize=(2.6 * ncols, sum(heights) + 0.5), layout="constrained"
        )
        subfigs = fig.subfigures(len(shown), 1, height_ratios=heights, squeeze=False)
        for sub, n_rows, (group_title, images, captions) in zip(
            subfigs.flat, grid_rows, shown, strict=True
        ):
            sub.suptitle(group_title, fontsize="large", fontweight="bold")
            if len(images) == 0:
                _placeholder(sub.subplots(), "none at this scale")
                continue
            axes = sub.subplots(n_rows, ncols, squeeze=False)
            for i, ax in enumerate(axes.flat):
                ax.set_axis_off()
                if i >= len(images):
                    continue
                # Upscale in pixels: PDF viewers would otherwise blur 32x32 images.
                big = images[i].repeat(upscale, axis=0).repeat(upscale, axis=1)
                ax.imshow(big, interpolation="nearest")
                ax.set_title(captions[i], fontsize="small")
        fig.suptitle(title, fontsize="x-large")
        save(fig, pdf, png)


# The panels of a training-curves figure: (curves column, y label).
CURVE_PANELS = (
    ("loss", "training loss"),
    ("acc", "training accuracy"),
    ("sparsity", "sparsity"),
)


def seed_band(frames: Sequence[pd.DataFrame], column: str) -> pd.DataFrame:
    """Mean, min and max over seeds of ``column`` at each step.

    Step rows where the curves have them, else the epoch rows; a step only
    some seeds logged counts the seeds that did.
    """
    rows = []
    for f in frames:
        level = "step" if (f["level"] == "step").any() else "epoch"
        rows.append(f.loc[f["level"] == level, ["step", column]])
    both = pd.concat(rows).dropna()
    return both.groupby("step")[column].agg(["mean", "min", "max"]).reset_index()


def fig_curves(
    stages: Sequence[tuple[str, Mapping[int, Sequence[pd.DataFrame]]]],
    *,
    title: str,
    n_seeds: int,
) -> Figure:
    """Training curves of one (method, schedule): a row per training stage
    (label, per sparsity the seeds' curves), a column per :data:`CURVE_PANELS`
    scalar; a line per sparsity, the mean over seeds in a min-max band."""
    with _style():
        fig, axes = plt.subplots(
            len(stages),
            len(CURVE_PANELS),
            figsize=(4.2 * len(CURVE_PANELS), 3.2 * len(stages)),
            layout="constrained",
            squeeze=False,
        )
        sparsities = sorted({s for _, by in stages for s in by})
        colours = dict(
            zip(sparsities, sns.color_palette("viridis", len(sparsities)), strict=True)
        )
        for row, (label, by_sparsity) in zip(axes, stages, strict=True):
            for ax, (column, ylabel) in zip(row, CURVE_PANELS, strict=True):
                drawn = False
                for s in sorted(by_sparsity):
                    band = seed_band(by_sparsity[s], column)
                    if band.empty:
                        continue
                    c = colours[s]
                    ax.plot(band["step"], band["mean"], color=c, label=f"{s}%")
                    ax.fill_between(
                        band["step"], band["min"], band["max"], color=c, alpha=0.25
                    )
                    drawn = True
                if not drawn:
                    _placeholder(ax, f"no {ylabel} in {label}")
                    continue
                # a one-stage figure needs no stage name in its titles
                name = ylabel if len(stages) == 1 else f"{label}: {ylabel}"
                ax.set_title(name, fontsize="medium")
                ax.set_xlabel("optimiser step")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                if column in ("acc", "sparsity"):
                    # fractions on their whole range: a head's 0.4994 -> 0.5
                    # must not look like a climb
                    ax.set_ylim(-0.02, 1.02)
        handles = [Line2D([], [], color=colours[s], label=f"{s}%") for s in sparsities]
        fig.legend(
            handles=handles,
            title="sparsity",
            loc="outside right center",
            frameon=False,
        )
        fig.suptitle(
            f"{title} (mean over {n_seeds} seeds, band: min-max)", fontsize="large"
        )
    return fig
