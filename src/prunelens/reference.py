"""A run's evidence in a few MB: every model's predicted labels, accuracy,
per-example Q-Score and prediction depth, and what regenerates Table 1 and
the claims from them on a CPU.

``export`` (rule ``reference``) writes ``arrays.npz`` (uint8 labels, float32
Q, uint8 depths; the test ``index`` and ``label`` once) and ``meta.json``
(the grid, seeds, settings and each array's population). ``regenerate``
reads them back and writes ``table1.{csv,md}`` and ``claims.{csv,md}``,
equal to the workflow's own::

    python -m prunelens.reference reference/fidelity /tmp/regenerated
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prunelens.bootstrap import Models

__all__ = ["export", "load", "regenerate"]

PAPER_TABLES = (
    Path(__file__).resolve().parents[2] / "workflow/resources/paper-tables.yaml"
)


def export(
    populations: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    settings: Mapping[str, Any],
) -> None:
    """Write the compact files of ``populations`` (as the claims rule reads
    them) and ``settings`` (grid, depth cells, tie rule, bootstrap, ...)."""
    from prunelens.pie import load_population
    from prunelens.runtime import atomic_path
    from prunelens.scores import qscore

    arrays: dict[str, np.ndarray] = {}
    index: dict[str, dict[str, str]] = {}
    provenance: dict[str, Any] = {}
    for i, pop in enumerate(populations):
        names = {}
        if pop.get("depth") is not None:
            for column in ("pd", "pd_baldock"):
                values = []
                for p in pop["depth"]:
                    with np.load(p) as z:
                        values.append(z[column])
                stacked = np.stack(values)
                if not np.array_equal(stacked, np.round(stacked)):
                    raise ValueError(f"{pop['key']}: per-model depths are not integers")
                names[column] = f"{column}{i}"
                arrays[names[column]] = stacked.astype(np.uint8)
        else:
            population = load_population(pop["predictions"])
            if "index" not in arrays:
                arrays["index"], arrays["label"] = population.index, population.labels
            names["pred"] = f"pred{i}"
            arrays[names["pred"]] = population.preds.astype(np.uint8)
            metrics = [json.loads(Path(p).read_text()) for p in pop["metrics"]]
            names["acc"] = f"acc{i}"
            arrays[names["acc"]] = np.array([m["test_acc"] for m in metrics])
            provenance[pop["key"]] = {
                "train_wall_time_s": round(
                    sum(m.get("wall_time_s", 0) for m in metrics), 1
                ),
                "devices": sorted({str(m.get("device")) for m in metrics}),
                "torch": sorted({str(m.get("torch")) for m in metrics}),
            }
            q = []
            for p in pop["predictions"]:
                with np.load(p) as z:
                    q.append(qscore(z["rep"]).q.astype(np.float32))  # as the claims
            names["q"] = f"q{i}"
            arrays[names["q"]] = np.stack(q)
        index[pop["key"]] = names
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "arrays.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    with atomic_path(out / "meta.json") as tmp:
        tmp.write_text(
            json.dumps(
                {"populations": index, "settings": settings, "models": provenance},
                indent=1,
            )
            + "\n"
        )


def load(ref_dir: str | Path) -> tuple[dict[str, Models], dict[str, Any]]:
    """The populations (as :class:`Models`) and settings of a reference."""
    ref = Path(ref_dir)
    meta = json.loads((ref / "meta.json").read_text())
    settings = meta["settings"]
    pd_column = settings["pd_column"]
    data: dict[str, Models] = {}
    with np.load(ref / "arrays.npz", allow_pickle=False) as z:
        for key, names in meta["populations"].items():
            if pd_column in names:
                pd_ = z[names[pd_column]].astype(np.float64)
                data[key] = Models(len(pd_), pd=pd_)
            else:
                preds = z[names["pred"]].astype(np.int64)
                data[key] = Models(
                    len(preds),
                    preds=preds,
                    acc=z[names["acc"]],
                    q=z[names["q"]],
                )
    return data, settings


def regenerate(
    ref_dir: str | Path, out_dir: str | Path, paper_path: str | Path = PAPER_TABLES
) -> None:
    """Table 1 and the claims of a reference, as ``table1.{csv,md}`` and
    ``claims.{csv,md}`` under ``out_dir``."""
    from prunelens.claims import claims_frame, claims_wide, define_claims
    from prunelens.runtime import atomic_path
    from prunelens.study import Grid
    from prunelens.tables import load_paper, render_markdown, table1, table1_wide

    data, s = load(ref_dir)
    paper = load_paper(paper_path)
    grid = Grid.from_config(s["grid"])
    cells = [
        {"method": m, "schedule": sc, "sparsity": sp} for m, sc, sp in grid.all_cells()
    ]
    boot = s["claims"]
    kw = {k: boot[k] for k in ("n_resamples", "confidence", "random_state")}
    t1 = table1(cells, paper, data=data, tie_break=s["tie_break"], **kw)
    claims = define_claims(
        grid, paper, headline_ratio=boot["headline_ratio"], depth_cells=s["depth_cells"]
    )
    cl = claims_frame(claims, data, tie_break=s["tie_break"], **kw)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, long, wide in (
        ("table1", t1, table1_wide(t1)),
        ("claims", cl, claims_wide(cl)),
    ):
        with atomic_path(out / f"{name}.csv") as tmp:
            long.to_csv(tmp, index=False)
        with atomic_path(out / f"{name}.md") as tmp:
            tmp.write_text(
                render_markdown(wide, f"{name} (regenerated from {ref_dir})")
            )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m prunelens.reference",
        description="Regenerate Table 1 and the claims from a reference's files.",
    )
    parser.add_argument("reference", help="a folder with arrays.npz and meta.json")
    parser.add_argument("out", help="where table1.* and claims.* are written")
    args = parser.parse_args(argv)
    regenerate(args.reference, args.out)


if __name__ == "__main__":
    main()
