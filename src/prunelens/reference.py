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
    from prunelens.claims import load_models
    from prunelens.files import load_depth, load_metrics, load_predictions
    from prunelens.runtime import atomic_path

    voting = [pop for pop in populations if pop.get("depth") is None]
    # predictions, accuracies and float32 Q-Scores exactly as the claims read
    # them (every file checked, all of the same examples)
    models = load_models(voting, q_keys={pop["key"] for pop in voting})
    arrays: dict[str, np.ndarray] = {}
    if voting:
        first = load_predictions(voting[0]["predictions"][0], arrays=())
        arrays["index"], arrays["label"] = first.index, first.label
    index: dict[str, dict[str, str]] = {}
    provenance: dict[str, Any] = {}
    for i, pop in enumerate(populations):
        names = {}
        if pop.get("depth") is not None:
            depth = [load_depth(p, index=arrays.get("index")) for p in pop["depth"]]
            for column in ("pd", "pd_baldock"):
                names[column] = f"{column}{i}"
                # load_depth checked them: integers in 0..16
                arrays[names[column]] = np.stack([d[column] for d in depth]).astype(
                    np.uint8
                )
        else:
            m = models[pop["key"]]
            assert m.preds is not None
            assert m.acc is not None
            assert m.q is not None
            names |= {"pred": f"pred{i}", "acc": f"acc{i}", "q": f"q{i}"}
            arrays[names["pred"]] = m.preds.astype(np.uint8)
            arrays[names["acc"]] = m.acc
            arrays[names["q"]] = m.q
            metrics = [load_metrics(p) for p in pop["metrics"]]
            provenance[pop["key"]] = {
                "train_wall_time_s": round(sum(x["wall_time_s"] for x in metrics), 1),
                "devices": sorted({str(x["device"]) for x in metrics}),
                "torch": sorted({str(x["torch"]) for x in metrics}),
            }
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
    """The populations (as :class:`Models`) and settings of a reference, its
    two files checked (one-line :class:`prunelens.files.FileContractError`)."""
    from prunelens.files import contract_error, read_json, read_npz

    ref = Path(ref_dir)
    meta_path, arrays_path = ref / "meta.json", ref / "arrays.npz"
    meta = read_json(meta_path, "reference")
    try:
        settings, populations = meta["settings"], meta["populations"]
        pd_column = settings["pd_column"]
        names = [n for pop in populations.values() for n in pop.values()]
    except (KeyError, TypeError, AttributeError) as exc:
        raise contract_error(
            meta_path, f"no settings.pd_column or populations ({exc!r})", "reference"
        ) from exc
    z = read_npz(arrays_path, ["index", *names], "reference")
    n = len(z["index"])
    data: dict[str, Models] = {}
    for key, named in populations.items():
        if pd_column in named:
            pd_ = z[named[pd_column]].astype(np.float64)
            shapes = [(named[pd_column], pd_.shape, (len(pd_), n))]
            data[key] = Models(len(pd_), pd=pd_)
        else:
            preds = z[named["pred"]].astype(np.int64)
            m = len(preds)
            acc, q = z[named["acc"]], z[named["q"]]
            shapes = [
                (named["pred"], preds.shape, (m, n)),
                (named["acc"], acc.shape, (m,)),
                (named["q"], q.shape, (m, n)),
            ]
            data[key] = Models(m, preds=preds, acc=acc, q=q)
        for name, got, want in shapes:
            if got != want:
                raise contract_error(
                    arrays_path, f"{key}: {name} is {got}, expected {want}", "reference"
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
