"""The paper's tables: long-form CSV (ours beside the paper's) + Markdown + LaTeX."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from prunelens.runtime import atomic_path

__all__ = ["GROUP_LABELS", "render_latex", "render_markdown", "table1", "write_table"]

GROUP_LABELS = {
    ("sup", "gmp"): "Sup / GMP",
    ("sup", "oneshot"): "Sup / One-Shot",
    ("scl", "gmp"): "SCL / GMP",
    ("scl", "delayed_gmp"): "SCL / ΔGMP",
    ("scl", "oneshot"): "SCL / One-Shot",
}
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
]


def load_paper(path: str | Path) -> dict[str, Any]:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _acc_stats(metrics: Sequence[str | Path]) -> tuple[int, float, float]:
    acc = np.array([json.loads(Path(p).read_text())["test_acc"] for p in metrics])
    std = float(acc.std(ddof=1)) * 100 if len(acc) > 1 else float("nan")
    return len(acc), float(acc.mean()) * 100, std


def table1(
    cells: Sequence[Mapping[str, Any]], paper: Mapping[str, Any]
) -> pd.DataFrame:
    """Long-form Table 1.

    ``cells``: one mapping per (method, schedule, sparsity) with ``metrics``
    (metrics.json paths of its models) and ``pie`` (its PIE csv, None for the
    dense row). Accuracy in percent, std over models with ddof=1.
    """
    rows = []
    for cell in cells:
        method, schedule, sparsity = cell["method"], cell["schedule"], cell["sparsity"]
        n, mean, std = _acc_stats(cell["metrics"])
        pie = ties = np.nan
        if cell.get("pie"):
            votes = pd.read_csv(cell["pie"])
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
            }
        )
    df = pd.DataFrame(rows, columns=TABLE1_COLUMNS)
    return df.astype({"pie": "Int64", "ties": "Int64", "paper_pie": "Int64"})


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
    groups = [g for g in GROUP_LABELS if g[0] in set(df["method"])]
    groups = [g for g in groups if (df["schedule"] == g[1]).any()]
    sparsities = sorted(set(df["sparsity"]))
    out = pd.DataFrame({"Sparsity %": sparsities})
    for method, schedule in groups:
        label = GROUP_LABELS[(method, schedule)]
        pies, accs = [], []
        for s in sparsities:
            sel = df[
                (df["method"] == method)
                & (df["schedule"] == (schedule if s else "dense"))
                & (df["sparsity"] == s)
            ]
            if sel.empty:
                pies.append("")
                accs.append("")
                continue
            r = sel.iloc[0]
            pies.append(f"{_fmt(r['pie'])} ({_fmt(r['paper_pie'])})")
            accs.append(
                f"{_fmt(r['acc_mean'])} ± {_fmt(r['acc_std'])} "
                f"({_fmt(r['paper_acc_mean'])} ± {_fmt(r['paper_acc_std'])})"
            )
        out[f"{label} PIE"] = pies
        out[f"{label} Acc %"] = accs
    return out


def render_markdown(df: pd.DataFrame, title: str, note: str = "") -> str:
    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.to_numpy()]
    text = [f"**{title}**", "", head, rule, *body]
    if note:
        text += ["", note]
    return "\n".join(text) + "\n"


def _tex_escape(s: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("±", r"$\pm$"),
        ("Δ", r"$\Delta$"),
    ):
        s = s.replace(a, b)
    return s


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
