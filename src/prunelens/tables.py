"""The paper's tables: long-form CSV (ours beside the paper's) + Markdown + LaTeX."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from prunelens.files import (
    contract_error,
    load_layers,
    load_pie,
    load_scores,
    same_examples,
)
from prunelens.pie import TieBreak, overlap_iou, pie_class_counts
from prunelens.runtime import atomic_path
from prunelens.study import (
    GROUP_LABELS,
    METHOD_LABELS,
    METHODS,
    PAPER_GROUPS,
    PRUNED_SCHEDULES,
    SCHEDULE_LABELS,
    SPARSITY_TOLERANCE_PP,
)

__all__ = [
    "GROUP_LABELS",
    "absent_note",
    "render_latex",
    "read_sparsity",
    "render_markdown",
    "sparsity_flag_note",
    "sparsity_html",
    "sparsity_markdown",
    "sparsity_table",
    "table1",
    "write_table",
]

TABLE1_COLUMNS = [
    "method",
    "schedule",
    "sparsity",
    "n_models",
    "pie",
    "ties",
    "acc_mean",
    "acc_std",
    "paper_pie",
    "paper_acc_mean",
    "paper_acc_std",
    "pie_ci_low",
    "pie_ci_high",
    "pie_half",
    "pie_noise_floor",
]


def absent_note(
    df: pd.DataFrame,
    expected: Sequence[tuple[str, str]] = PAPER_GROUPS,
    *,
    schedule_column: str = "schedule",
) -> str:
    """A note naming the ``expected`` (method, schedule) groups that have no
    row in ``df`` ("Not in this grid (no rows): Sup / GMP, ..."); "" if none."""
    present = set()
    if len(df):
        present = set(zip(df["method"], df[schedule_column], strict=True))
    absent = [g for g in expected if g not in present]
    if not absent:
        return ""
    names = ", ".join(GROUP_LABELS[g] for g in absent)
    return f"Not in this grid (no rows): {names}."


def load_paper(path: str | Path) -> dict[str, Any]:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _models_of(cells: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per population, its models' predictions and accuracies from files."""
    from prunelens.claims import load_models, pop_key

    return load_models(
        [
            {
                "key": pop_key(c["method"], c["schedule"], c["sparsity"]),
                "predictions": c["predictions"],
                "metrics": c["metrics"],
            }
            for c in cells
        ]
    )


def _pie_noise(
    cells: Sequence[Mapping[str, Any]],
    data: Mapping[str, Any],
    tie_break: TieBreak,
    bootstrap_kw: Mapping[str, Any],
) -> dict[tuple[str, str, int], dict[str, float]]:
    """Per cell: bootstrap CI of its PIE count, its half-population count and
    its method's noise floor (NaN where the dense population has < 4 models)."""
    from prunelens.bootstrap import bootstrap
    from prunelens.claims import pop_key
    from prunelens.pie import half_pie_count, noise_floor

    stats = {}
    for c in cells:
        if c["schedule"] != "dense":
            dense, key = (
                pop_key(c["method"], "dense", 0),
                pop_key(c["method"], c["schedule"], c["sparsity"]),
            )
            stats[key] = (lambda v, d=dense, k=key: v.pie_count(d, k), [dense, key])
    intervals = (
        bootstrap(stats, data, tie_break=tie_break, **bootstrap_kw) if stats else {}
    )
    out = {}
    for c in cells:
        key = pop_key(c["method"], c["schedule"], c["sparsity"])
        dense = data[pop_key(c["method"], "dense", 0)]
        row = dict.fromkeys(
            ("pie_ci_low", "pie_ci_high", "pie_half", "pie_noise_floor"), np.nan
        )
        if key in intervals:
            iv = intervals[key]
            row["pie_ci_low"], row["pie_ci_high"] = iv.low, iv.high
            row["_pie_point"] = iv.estimate
        if dense.n_models >= 4:
            row["pie_noise_floor"] = noise_floor(dense.preds, tie_break=tie_break)
            if c["schedule"] != "dense":
                row["pie_half"] = half_pie_count(
                    dense.preds, data[key].preds, tie_break=tie_break
                )
        out[(c["method"], c["schedule"], c["sparsity"])] = row
    return out


def table1(
    cells: Sequence[Mapping[str, Any]],
    paper: Mapping[str, Any],
    *,
    data: Mapping[str, Any] | None = None,
    tie_break: TieBreak = "smallest",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    random_state: int = 0,
) -> pd.DataFrame:
    """Long-form Table 1.

    ``cells``: one mapping per (method, schedule, sparsity) with ``metrics``
    (metrics.json paths of its models), ``predictions`` (their predictions
    files) and ``pie`` (its PIE csv, None for the dense row); or, with
    ``data`` (per population key, :class:`prunelens.bootstrap.Models` with
    predictions and accuracies, as :mod:`prunelens.reference` stores them),
    just the cell names, PIEs then counted from the predictions. Accuracy in
    percent, std over models with ddof=1. PIE columns: the count, its
    bootstrap CI over models, the count between a dense half and the
    same-size pruned population (``pie_half``) and the dense half-vs-half
    count of its method (``pie_noise_floor``; README "Claims").
    """
    from prunelens.claims import pop_key
    from prunelens.pie import Population, vote_pies

    data = _models_of(cells) if data is None else data
    # checked before the bootstrap, so a bad file fails at once
    pies = {
        i: load_pie(
            c["pie"],
            n_examples=data[
                pop_key(c["method"], c["schedule"], c["sparsity"])
            ].preds.shape[1],
        )
        for i, c in enumerate(cells)
        if c.get("pie")
    }
    noise = _pie_noise(
        cells,
        data,
        tie_break,
        {
            "n_resamples": n_resamples,
            "confidence": confidence,
            "random_state": random_state,
        },
    )
    rows = []
    for i, cell in enumerate(cells):
        method, schedule, sparsity = cell["method"], cell["schedule"], cell["sparsity"]
        models = data[pop_key(method, schedule, sparsity)]
        acc = np.asarray(models.acc)
        n, mean = len(acc), float(acc.mean()) * 100
        std = float(acc.std(ddof=1)) * 100 if n > 1 else float("nan")
        pie = ties = np.nan
        extra = noise[(method, schedule, sparsity)]
        recount = extra.pop("_pie_point", None)
        if cell.get("pie"):
            votes = pies[i]
            pie, ties = int(votes["pie"].sum()), int(votes["tie"].sum())
            if recount != pie:  # the PIE file and the predictions disagree
                raise contract_error(
                    cell["pie"],
                    f"{pie} PIEs, but its populations' predictions give {recount:.0f}",
                    "vote_pies",
                )
        elif schedule != "dense":
            n_ex = models.preds.shape[1]
            dense = data[pop_key(method, "dense", 0)]
            votes = vote_pies(
                Population(np.arange(n_ex), np.zeros(n_ex), dense.preds),
                Population(np.arange(n_ex), np.zeros(n_ex), models.preds),
                # each population infers C from its own predictions: the vote
                # needs one that covers both
                n_classes=max(dense.n_classes, models.n_classes),
                tie_break=tie_break,
            )
            pie, ties = int(votes["pie"].sum()), int(votes["tie"].sum())
        group = "gmp" if schedule == "dense" else schedule
        ref = paper["table1"].get(f"{method}_{group}", {}).get(sparsity, {})
        rows.append(
            {
                "method": method,
                "schedule": schedule,
                "sparsity": sparsity,
                "n_models": n,
                "pie": pie,
                "ties": ties,
                "acc_mean": mean,
                "acc_std": std,
                "paper_pie": ref.get("pie"),
                "paper_acc_mean": ref.get("acc"),
                "paper_acc_std": ref.get("acc_std"),
                **extra,
            }
        )
    df = pd.DataFrame(rows, columns=TABLE1_COLUMNS)
    return df.astype(
        {
            "pie": "Int64",
            "ties": "Int64",
            "paper_pie": "Int64",
            "pie_half": "Int64",
            "pie_noise_floor": "Int64",
        }
    )


def noise_floor_note(df: pd.DataFrame) -> str:
    """One sentence: each method's noise floor and what ``half`` means."""
    floors = []
    for method in dict.fromkeys(df["method"]):
        value = df.loc[df["method"] == method, "pie_noise_floor"].iloc[0]
        floors.append(f"{METHOD_LABELS[method]} {_fmt(value)}")
    return (
        "half: PIEs between one dense half of the seeds and the pruned models of "
        "the other half; noise floor (the two dense halves): "
        + ", ".join(floors)
        + " (– : fewer than 4 dense models)."
    )


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA:
        return "–"
    if isinstance(x, int | np.integer):
        return str(int(x))
    return f"{x:.{digits}f}"


def table1_wide(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's layout: one row per sparsity, PIE and accuracy per group.

    Each cell reads ``ours (paper)``; the dense row is repeated in each group
    of its method, as in the paper.
    """
    # the groups with rows: a method's schedule, not another method's
    trained = set(zip(df["method"], df["schedule"], strict=True))
    groups = [g for g in GROUP_LABELS if g in trained]
    sparsities = sorted(set(df["sparsity"]))
    out = pd.DataFrame({"Sparsity %": sparsities})
    for method, schedule in groups:
        label = GROUP_LABELS[(method, schedule)]
        pies, halves, accs = [], [], []
        for s in sparsities:
            sel = df[
                (df["method"] == method)
                & (df["schedule"] == (schedule if s else "dense"))
                & (df["sparsity"] == s)
            ]
            if sel.empty:
                pies.append("")
                halves.append("")
                accs.append("")
                continue
            r = sel.iloc[0]
            ci = ""
            if _fmt(r["pie_ci_low"]) != "–":
                ci = f" [{_fmt(r['pie_ci_low'], 0)}, {_fmt(r['pie_ci_high'], 0)}]"
            pies.append(f"{_fmt(r['pie'])}{ci} ({_fmt(r['paper_pie'])})")
            halves.append(_fmt(r["pie_half"]))
            accs.append(
                f"{_fmt(r['acc_mean'])} ± {_fmt(r['acc_std'])} "
                f"({_fmt(r['paper_acc_mean'])} ± {_fmt(r['paper_acc_std'])})"
            )
        out[f"{label} PIE"] = pies
        out[f"{label} half"] = halves
        out[f"{label} Acc %"] = accs
    return out


def _md_cell(v: Any) -> str:
    """One pipe-table cell on one line, pipes escaped (an unescaped one ends
    the cell) and backslashes doubled (so none can unescape a pipe)."""
    text = " ".join(str(v).splitlines())
    return text.replace("\\", "\\\\").replace("|", "\\|")


def render_markdown(df: pd.DataFrame, title: str, note: str = "") -> str:
    head = "| " + " | ".join(_md_cell(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.to_numpy()]
    text = [f"**{title}**", "", head, rule, *body]
    if note:
        text += ["", note]
    return "\n".join(text) + "\n"


# LaTeX's special characters, and the non-ASCII ones the tables use that
# pdflatex's utf8 input does not know (math in \ensuremath, so two in a row
# never make a ``$$``); newlines would end a tabular row's paragraph.
_TEX = {
    "\\": r"\textbackslash{}",
    "%": r"\%",
    "&": r"\&",
    "_": r"\_",
    "#": r"\#",
    "$": r"\$",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    # OT1, LaTeX's default font encoding, prints these three as other glyphs
    "|": r"\textbar{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "\n": " ",
    "\r": " ",
    "±": r"\ensuremath{\pm}",
    "Δ": r"\ensuremath{\Delta}",
    "×": r"\ensuremath{\times}",
    "−": r"\ensuremath{-}",
    "∩": r"\ensuremath{\cap}",
    "‖": r"\textbardbl{}",
    "₁": r"\textsubscript{1}",
    "§": r"\S{}",
    "·": r"\textperiodcentered{}",
}
_TEX_SPECIAL = re.compile("|".join(map(re.escape, _TEX)))


def _tex_escape(s: str) -> str:
    """``s`` as LaTeX text, in one pass (an escape is never escaped again)."""
    return _TEX_SPECIAL.sub(lambda m: _TEX[m.group()], s)


def render_latex(df: pd.DataFrame, caption: str, label: str) -> str:
    cols = "l" * len(df.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\hline",
        " & ".join(_tex_escape(str(c)) for c in df.columns) + r" \\",
        r"\hline",
        *(
            " & ".join(_tex_escape(str(v)) for v in row) + r" \\"
            for row in df.to_numpy()
        ),
        r"\hline",
        r"\end{tabular}",
        rf"\caption{{{_tex_escape(caption)}}}",
        rf"\label{{{label}}}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def write_table(
    long: pd.DataFrame,
    wide: pd.DataFrame,
    *,
    csv: str | Path,
    md: str | Path,
    tex: str | Path,
    title: str,
    label: str,
    note: str = "",
) -> None:
    with atomic_path(csv) as tmp:
        long.to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(render_markdown(wide, title, note))
    with atomic_path(tex) as tmp:
        tmp.write_text(render_latex(wide, f"{title}. {note}".strip(), label))


# ---------------------------------------------------------------- Table 3


def _same_examples(frames: Mapping[Any, pd.DataFrame], rule: str | None = None) -> None:
    """All the per-example tables a table reads cover the same examples
    (none: a table of absent cells)."""
    if not frames:
        return
    same_examples([(p, f["index"].to_numpy()) for p, f in frames.items()], rule=rule)


def _cell_frames(
    cells: Sequence[Mapping[str, Any]], kind: Literal["q", "pd"]
) -> dict[Any, pd.DataFrame]:
    """The scores (``kind``) and PIE tables of ``cells``, each read once and
    checked, all of the same examples."""
    frames: dict[Any, pd.DataFrame] = {}
    for cell in cells:
        if cell["scores"] not in frames:
            frames[cell["scores"]] = load_scores(cell["scores"], kind)
        if cell.get("pie") and cell["pie"] not in frames:
            frames[cell["pie"]] = load_pie(cell["pie"])
    _same_examples(frames)
    return frames


def table3(
    pies: Mapping[int, str | Path],
    paper: Mapping[str, Any],
    *,
    data: str | Path | None = None,
) -> pd.DataFrame:
    """Sup / GMP PIE counts: ours, Hooker et al. (2019) and the paper.

    Every PIE table must cover the test split of the prepared file ``data``
    (when given) and all must cover the same examples.
    """
    from prunelens.data import load_prepared

    hooker = paper["table3"]["hooker2019_sup_gmp_pie"]
    ours_paper = paper["table1"]["sup_gmp"]
    test = None if data is None else load_prepared(data, "test")
    index, n_classes = (None, None) if test is None else (test.index, test.n_classes)
    tables = {
        s: load_pie(p, index=index, n_classes=n_classes)
        for s, p in sorted(pies.items())
    }
    _same_examples({pies[s]: t for s, t in tables.items()}, "vote_pies")
    rows = []
    for sparsity, votes in tables.items():
        rows.append(
            {
                "sparsity": sparsity,
                "pie": int(votes["pie"].sum()),
                "ties": int(votes["tie"].sum()),
                "n_examples": len(votes),
                "hooker2019_pie": hooker.get(sparsity),
                "paper_pie": ours_paper.get(sparsity, {}).get("pie"),
            }
        )
    columns = ["sparsity", "pie", "ties", "n_examples", "hooker2019_pie", "paper_pie"]
    return pd.DataFrame(rows, columns=columns).astype(
        {"hooker2019_pie": "Int64", "paper_pie": "Int64"}
    )


def table3_note(df: pd.DataFrame) -> str:
    """Table 3's caption note; says so when the grid trains no Sup / GMP."""
    note = "Hooker et al. (2019) used a different architecture."
    if df.empty:
        note += (
            " Not in this grid: Sup / GMP (schedules.sup.gmp), so the table has "
            "no rows."
        )
    return note


def table3_wide(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Sparsity %": df["sparsity"],
            "Hooker et al. (2019)": [_fmt(v) for v in df["hooker2019_pie"]],
            "Corti et al. (2022)": [_fmt(v) for v in df["paper_pie"]],
            "ours": [_fmt(v) for v in df["pie"]],
        }
    )


# ---------------------------------------------------------------- Tables 4, 5

QSCORE_COLUMNS = ("q", "z", "l1")


def qscore_table(
    cells: Sequence[Mapping[str, Any]], paper: Mapping[str, Any], paper_table: str
) -> pd.DataFrame:
    """Q, Z and L1 (mean and std over test examples of the model-averaged
    scores) per cell, over all examples, PIEs and non-PIEs.

    ``cells``: mappings with ``method, schedule, sparsity, scores`` (its Q
    csv) and ``pie`` (its PIE csv; None for the dense population, which then
    only gets the ``all`` row).
    """
    from prunelens.analysis import split_summary

    frames = _cell_frames(cells, "q")
    rows = []
    for cell in cells:
        scores = frames[cell["scores"]]
        if cell.get("pie"):
            pie = frames[cell["pie"]]
        else:
            pie = pd.DataFrame({"index": scores["index"], "pie": False})
        summaries = split_summary(scores, pie, QSCORE_COLUMNS)
        if not cell.get("pie"):
            summaries = summaries[:1]
        group = "gmp" if cell["schedule"] == "dense" else cell["schedule"]
        ref = paper[paper_table].get(f"{cell['method']}_{group}", {})
        ref = ref.get(cell["sparsity"], {})
        for summary in summaries:
            row = {k: cell[k] for k in ("method", "schedule", "sparsity")}
            row |= summary
            row["n_degenerate"] = int(scores["n_degenerate"].sum())
            for col in QSCORE_COLUMNS:
                on_all = summary["subset"] == "all"
                row[f"paper_{col}"] = ref.get(col) if on_all else None
                row[f"paper_{col}_std"] = ref.get(f"{col}_std") if on_all else None
            rows.append(row)
    if not rows:  # no population of this method in the grid
        return pd.DataFrame(columns=["method", "schedule", "sparsity", "subset"])
    return pd.DataFrame(rows)


def _pm(mean: Any, std: Any) -> str:
    if _fmt(mean) == "–":
        return "–"
    return f"{_fmt(mean)} ± {_fmt(std)}"


def qscore_wide(df: pd.DataFrame) -> pd.DataFrame:
    """Paper layout: rows = sparsity, per method and schedule Q, Z, L1 as
    ``ours (paper)``."""
    sel = df[df["subset"] == "all"]
    out = pd.DataFrame({"Sparsity %": sorted(set(sel["sparsity"]))})
    if sel.empty:
        return out
    methods = [m for m in METHODS if m in set(sel["method"])]
    for method, schedule in [
        (m, sc)
        for m in methods
        for sc in PRUNED_SCHEDULES
        if sc in set(sel[sel["method"] == m]["schedule"])
    ]:
        label = GROUP_LABELS[(method, schedule)]
        mine = sel[sel["method"] == method]
        for col, name in zip(QSCORE_COLUMNS, ("Q", "Z", "‖h‖₁"), strict=True):
            cells = []
            for s in out["Sparsity %"]:
                r = mine[
                    (mine["sparsity"] == s)
                    & (mine["schedule"] == (schedule if s else "dense"))
                ]
                if r.empty:
                    cells.append("")
                    continue
                r = r.iloc[0]
                cells.append(
                    f"{_pm(r[f'{col}_mean'], r[f'{col}_std'])} "
                    f"({_pm(r[f'paper_{col}'], r[f'paper_{col}_std'])})"
                )
            out[f"{label} {name}"] = cells
    return out


# ---------------------------------------------------------------- Table 6


def depth_table(
    cells: Sequence[Mapping[str, Any]], paper: Mapping[str, Any]
) -> pd.DataFrame:
    """Prediction depth of PIEs and non-PIEs (mean, std over examples).

    ``cells``: mappings with ``method, schedule, sparsity, scores`` (its PD
    csv) and ``pie``. For a dense row, ``pie`` is the PIE table of its
    schedule at the largest sparsity (the examples pruning will lose).
    Both PD definitions are reported, one row each.
    """
    from prunelens.analysis import split_summary

    frames = _cell_frames(cells, "pd")
    rows = []
    for cell in cells:
        scores, pie = frames[cell["scores"]], frames[cell["pie"]]
        ref = paper["table6"].get(f"{cell['method']}_{cell['group']}", {})
        ref = ref.get(cell["sparsity"], {})
        for definition, col in (("corti", "pd"), ("baldock", "pd_baldock")):
            stats = {s["subset"]: s for s in split_summary(scores, pie, [col])}
            parity = definition == "corti"
            rows.append(
                {
                    "method": cell["method"],
                    "schedule": cell["schedule"],
                    "group": cell["group"],
                    "sparsity": cell["sparsity"],
                    "definition": definition,
                    "n_models": cell["n_models"],
                    "pie_mean": stats["pie"][f"{col}_mean"],
                    "pie_std": stats["pie"][f"{col}_std"],
                    "n_pie": stats["pie"]["n"],
                    "non_pie_mean": stats["non_pie"][f"{col}_mean"],
                    "non_pie_std": stats["non_pie"][f"{col}_std"],
                    "n_non_pie": stats["non_pie"]["n"],
                    "paper_pie": ref.get("pie") if parity else None,
                    "paper_pie_std": ref.get("pie_std") if parity else None,
                    "paper_non_pie": ref.get("non_pie") if parity else None,
                    "paper_non_pie_std": ref.get("non_pie_std") if parity else None,
                }
            )
    columns = ["method", "schedule", "group", "sparsity", "definition"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)


def depth_wide(df: pd.DataFrame, definition: str) -> pd.DataFrame:
    sel = df[df["definition"] == definition]
    out = pd.DataFrame({"Sparsity %": sorted(set(sel["sparsity"]))})
    # the groups with rows: a method's schedule, not another method's
    trained = set(zip(sel["method"], sel["group"], strict=True))
    groups = [g for g in GROUP_LABELS if g in trained]
    for method, group in groups:
        label = GROUP_LABELS[(method, group)]
        for part, name in (("pie", "PIE"), ("non_pie", "non-PIE")):
            cells = []
            for s in out["Sparsity %"]:
                r = sel[
                    (sel["method"] == method)
                    & (sel["group"] == group)
                    & (sel["sparsity"] == s)
                ]
                if r.empty:
                    cells.append("")
                    continue
                r = r.iloc[0]
                cells.append(
                    f"{_pm(r[f'{part}_mean'], r[f'{part}_std'])} "
                    f"({_pm(r[f'paper_{part}'], r[f'paper_{part}_std'])})"
                )
            out[f"{label} {name}"] = cells
    return out


# ---------------------------------------------------------------- PIE overlap


def pie_overlap(cells: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Sup versus SCL PIEs per (schedule, sparsity): sizes, shared, IoU."""
    frames = {p: load_pie(p) for c in cells for p in (c["sup"], c["scl"])}
    _same_examples(frames, "vote_pies")
    rows = []
    for cell in cells:
        sup, scl = frames[cell["sup"]], frames[cell["scl"]]
        counts = pie_class_counts(sup, scl)
        rows.append(
            {
                "schedule": cell["schedule"],
                "sparsity": cell["sparsity"],
                "sup_pie": int(sup["pie"].sum()),
                "scl_pie": int(scl["pie"].sum()),
                "shared": int(counts["shared"].sum()),
                "iou": overlap_iou(sup, scl),
            }
        )
    columns = ["schedule", "sparsity", "sup_pie", "scl_pie", "shared", "iou"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- per-tensor sparsity

OFF_TARGET_PP = SPARSITY_TOLERANCE_PP

SPARSITY_COLUMNS = [
    "method",
    "schedule",
    "sparsity",
    "tensor",
    "numel",
    "target",
    "measured",
    "measured_min",
    "measured_max",
    "n_models",
    "off_target_pp",
    "flagged",
]


def sparsity_table(
    cells: Sequence[Mapping[str, Any]], *, tolerance_pp: float = OFF_TARGET_PP
) -> pd.DataFrame:
    """Per cell and prunable tensor, its target and measured sparsity.

    ``cells``: mappings with ``method, schedule, sparsity`` and ``metrics``
    (its models' metrics.json paths, whose ``layers`` must name the same
    tensors, sizes and targets). ``measured`` is the mean over the models,
    ``measured_min``/``measured_max`` the extremes; ``off_target_pp`` the
    largest |measured - target| over the models in percentage points (NaN
    where the tensor has no per-tensor target) and ``flagged`` whether it
    exceeds ``tolerance_pp``.
    """
    rows = []
    for cell in cells:
        per_model = [(p, load_layers(p)) for p in cell["metrics"]]
        first_path, first = per_model[0]
        key = [(r["tensor"], r["numel"], r["target"]) for r in first]
        for path, layers in per_model[1:]:
            if [(r["tensor"], r["numel"], r["target"]) for r in layers] != key:
                raise contract_error(
                    path,
                    f"its layers' tensors, sizes or targets differ from "
                    f"{first_path}'s, a model of the same cell",
                )
        for i, (tensor, numel, target) in enumerate(key):
            measured = np.array([layers[i]["measured"] for _, layers in per_model])
            off = np.nan
            if target is not None:
                off = float(np.abs(measured - target).max()) * 100
            rows.append(
                {
                    "method": cell["method"],
                    "schedule": cell["schedule"],
                    "sparsity": cell["sparsity"],
                    "tensor": tensor,
                    "numel": numel,
                    "target": np.nan if target is None else target,
                    "measured": float(measured.mean()),
                    "measured_min": float(measured.min()),
                    "measured_max": float(measured.max()),
                    "n_models": len(measured),
                    "off_target_pp": off,
                    # a hair of slack: 0.905 - 0.9 is 0.5000000000000004 pp
                    "flagged": bool(off > tolerance_pp + 1e-9),
                }
            )
    return pd.DataFrame(rows, columns=SPARSITY_COLUMNS)


def read_sparsity(path: str | Path) -> pd.DataFrame:
    """``results/tables/sparsity.csv`` back as :func:`sparsity_table` made it."""
    df = pd.read_csv(path)
    missing = [c for c in SPARSITY_COLUMNS if c not in df.columns]
    if missing:
        raise contract_error(path, f"missing columns {missing}", "sparsity_table")
    return df.astype({"flagged": bool})


def _cell_label(method: str, schedule: str, sparsity: int) -> str:
    m = METHOD_LABELS.get(method, method)
    return f"{m} / {SCHEDULE_LABELS.get(schedule, schedule)} / {sparsity} %"


def _pct(x: Any) -> str:
    return "–" if pd.isna(x) else f"{100 * x:.2f}"


def sparsity_flag_note(df: pd.DataFrame, *, tolerance_pp: float = OFF_TARGET_PP) -> str:
    """One sentence: which tensors are more than ``tolerance_pp`` off their
    target (per cell), or that none is."""
    flagged = df[df["flagged"]]
    if flagged.empty:
        return f"No tensor is more than {tolerance_pp:g} pp off its target."
    parts = []
    for (m, sc, sp), group in flagged.groupby(
        ["method", "schedule", "sparsity"], sort=False
    ):
        tensors = ", ".join(
            f"{r.tensor} ({r.off_target_pp:.2f} pp)" for r in group.itertuples()
        )
        parts.append(f"{_cell_label(m, sc, sp)}: {tensors}")
    return (
        f"{len(flagged)} tensor{'s' * (len(flagged) != 1)} more than "
        f"{tolerance_pp:g} pp off {'their' if len(flagged) != 1 else 'its'} "
        f"target (worst model): " + "; ".join(parts) + "."
    )


def _distribution(group: pd.DataFrame) -> str:
    m = group["measured"]
    return (
        f"no per-tensor target (global pruning, or none): measured sparsity "
        f"of its {len(group)} tensors min {_pct(m.min())} %, median "
        f"{_pct(m.median())} %, max {_pct(m.max())} %"
    )


def sparsity_markdown(df: pd.DataFrame, *, tolerance_pp: float = OFF_TARGET_PP) -> str:
    """The readable table: the flag sentence, then per cell its tensors as
    rows (percentages; mean, min and max over the models); a cell without
    per-tensor targets gets the distribution of its measured sparsities."""
    out = [
        "**Per-tensor sparsity of every cell (mean over seeds)**",
        "",
        sparsity_flag_note(df, tolerance_pp=tolerance_pp),
        "",
    ]
    for (m, sc, sp), group in df.groupby(
        ["method", "schedule", "sparsity"], sort=False
    ):
        has_target = group["target"].notna()
        if has_target.all():
            summary = "every tensor has a per-tensor target"
        elif not has_target.any():
            summary = _distribution(group)
        else:
            summary = (
                f"{int(has_target.sum())} of {len(group)} tensors have a per-tensor "
                f"target; the others: {_distribution(group[~has_target])}"
            )
        n = int(group["n_models"].iloc[0])
        wide = pd.DataFrame(
            {
                "Tensor": group["tensor"],
                "Entries": group["numel"],
                "Target %": [_pct(v) for v in group["target"]],
                "Measured %": [_pct(v) for v in group["measured"]],
                "Min %": [_pct(v) for v in group["measured_min"]],
                "Max %": [_pct(v) for v in group["measured_max"]],
                "Off target (pp)": [
                    "–" if pd.isna(v) else f"{v:.2f}" + (" **flagged**" if f else "")
                    for v, f in zip(
                        group["off_target_pp"], group["flagged"], strict=True
                    )
                ],
            }
        )
        title = f"{_cell_label(m, sc, sp)} ({n} model{'s' * (n != 1)})"
        out.append(render_markdown(wide, title, f"{summary[0].upper()}{summary[1:]}."))
    if df.empty:
        out.append("No cells in this grid.\n")
    return "\n".join(out)


def sparsity_html(df: pd.DataFrame, *, tolerance_pp: float = OFF_TARGET_PP) -> str:
    """The long table as HTML for the Snakemake report, flagged rows marked,
    under the flag sentence."""
    import html

    shown = df.drop(columns=["flagged"]).assign(
        **{
            c: df[c] * 100
            for c in ("target", "measured", "measured_min", "measured_max")
        }
    )
    styler = (
        shown.style.hide(axis="index")
        .format(precision=2, na_rep="–", escape="html")
        .format_index(escape="html", axis=1)
        .apply(
            lambda row: (
                ["background-color: #ffcdd2" if df.loc[row.name, "flagged"] else ""]
                * len(row)
            ),
            axis=1,
        )
        .set_table_styles(
            [
                {
                    "selector": "td, th",
                    "props": "border: 1px solid #bbb; padding: 2px 5px",
                }
            ]
        )
    )
    styler.set_uuid("sparsity")  # stable ids: a rerun writes the same file
    note = html.escape(sparsity_flag_note(df, tolerance_pp=tolerance_pp))
    return (
        f"<p><b>Per-tensor sparsity (%; mean, min, max over seeds).</b> {note}</p>\n"
        + styler.to_html()
    )
