"""Tables from hand-made files: exact counts, means and the paper's columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, depth_arrays, metrics_json

from prunelens.analysis import population_depth, population_qscores, split_summary
from prunelens.evaluate import write_predictions
from prunelens.files import FileContractError
from prunelens.runtime import write_json, write_npz
from prunelens.tables import (
    depth_table,
    load_paper,
    pie_overlap,
    qscore_table,
    render_latex,
    render_markdown,
    table1,
    table1_wide,
    table3,
)

PAPER = load_paper(REPO / "workflow/resources/paper-tables.yaml")


def _pie(path, pies, labels=(0, 1, 2, 3), ties=()):
    flags = [i in pies for i in range(len(labels))]
    pd.DataFrame(
        {
            "index": range(len(labels)),
            "label": labels,
            "dense_mode": labels,
            # a PIE is where the two modal labels differ
            "pruned_mode": [(y + f) % 10 for y, f in zip(labels, flags, strict=True)],
            "pie": flags,
            "tie": [i in ties for i in range(len(labels))],
        }
    ).to_csv(path, index=False)
    return path


def _metrics(tmp_path, name, accs):
    out = []
    for i, acc in enumerate(accs):
        p = tmp_path / f"{name}{i}.json"
        write_json(p, metrics_json(test_acc=acc))
        out.append(p)
    return out


def _predictions(tmp_path, name, preds, labels=(0, 1, 2, 3)):
    out = []
    for i, pred in enumerate(preds):
        p = tmp_path / f"{name}{i}.npz"
        write_predictions(
            p,
            index=np.arange(len(labels)),
            labels=np.array(labels),
            logits=np.eye(10, dtype=np.float32)[pred],  # argmax: pred
            rep=np.ones((len(labels), 4)),
        )
        out.append(p)
    return out


def test_table1_counts_pies_ties_and_accuracy(tmp_path):
    flipped = [[0, 2, 2, 0]] * 4  # examples 1 and 3 change their modal label
    cells = [
        {
            "method": "sup",
            "schedule": "dense",
            "sparsity": 0,
            "metrics": _metrics(tmp_path, "d", [0.90, 0.92, 0.90, 0.92]),
            "predictions": _predictions(tmp_path, "dp", [[0, 1, 2, 3]] * 4),
            "pie": None,
        },
        {
            "method": "sup",
            "schedule": "gmp",
            "sparsity": 90,
            "metrics": _metrics(tmp_path, "g", [0.80, 0.84, 0.82, 0.82]),
            "predictions": _predictions(tmp_path, "gp", flipped),
            "pie": _pie(tmp_path / "p.csv", {1, 3}, ties={0}),
        },
    ]
    df = table1(cells, PAPER, n_resamples=1000)
    dense, gmp = df.iloc[0], df.iloc[1]
    assert dense["acc_mean"] == pytest.approx(91.0)
    assert dense["acc_std"] == pytest.approx(np.std([90, 92, 90, 92], ddof=1))
    assert pd.isna(dense["pie"])
    assert (gmp["pie"], gmp["ties"], gmp["n_models"]) == (2, 1, 4)
    assert gmp["acc_mean"] == pytest.approx(82.0)
    assert (gmp["paper_pie"], gmp["paper_acc_mean"]) == (273, 89.47)
    # every model agrees: no noise, so the CI is the count itself, the halves
    # of the dense population agree (floor 0) and a half sees both PIEs
    assert (gmp["pie_ci_low"], gmp["pie_ci_high"]) == (2.0, 2.0)
    assert (gmp["pie_half"], gmp["pie_noise_floor"]) == (2, 0)
    assert pd.isna(dense["pie_half"])
    assert dense["pie_noise_floor"] == 0
    wide = table1_wide(df)
    assert wide.columns.tolist() == [
        "Sparsity %",
        "Sup / GMP PIE",
        "Sup / GMP half",
        "Sup / GMP Acc %",
    ]
    assert wide.iloc[1, 1] == "2 [2, 2] (273)"
    md = render_markdown(wide, "T")
    assert "| 90 | 2 [2, 2] (273) | 2 |" in md
    assert r"\pm" in render_latex(wide, "cap", "tab:x")


def test_table1_refuses_a_pie_file_its_predictions_contradict(tmp_path):
    cells = [
        {
            "method": "sup",
            "schedule": s,
            "sparsity": sp,
            "metrics": _metrics(tmp_path, s, [0.9] * 4),
            "predictions": _predictions(tmp_path, s + "p", [[0, 1, 2, 3]] * 4),
            "pie": pie,
        }
        for s, sp, pie in (
            ("dense", 0, None),
            ("gmp", 90, _pie(tmp_path / "cut.csv", {1})),  # predictions: no PIEs
        )
    ]
    with pytest.raises(
        FileContractError,
        match=r"cut\.csv: 1 PIEs, but .* give 0; rebuild .* vote_pies$",
    ):
        table1(cells, PAPER, n_resamples=1000)


def test_table3_sits_beside_hooker_and_the_paper(tmp_path):
    df = table3(
        {30: _pie(tmp_path / "a.csv", {0}), 90: _pie(tmp_path / "b.csv", {})}, PAPER
    )
    assert df[["sparsity", "pie", "hooker2019_pie", "paper_pie"]].values.tolist() == [
        [30, 1, 114, 188],
        [90, 0, 216, 273],
    ]


def test_split_summary_over_all_pies_and_the_rest():
    values = pd.DataFrame({"index": [0, 1, 2, 3], "q": [1.0, 2.0, 3.0, np.nan]})
    pie = pd.DataFrame({"index": [3, 2, 1, 0], "pie": [True, True, False, False]})
    rows = {r["subset"]: r for r in split_summary(values, pie, ["q"])}
    assert (rows["all"]["q_mean"], rows["all"]["n"]) == (2.0, 3)
    assert (rows["pie"]["q_mean"], rows["pie"]["q_std"], rows["pie"]["n"]) == (
        3.0,
        0.0,
        1,
    )
    assert rows["non_pie"]["q_mean"] == 1.5


def test_population_qscores_average_models_and_count_degenerate(tmp_path):
    reps = [
        np.array([[1.0, 0, 0, 0], [0, 0, 0, 0]]),  # second row: zero vector
        np.array([[3.0, 4.0, 0, 0], [1.0, 0, 0, 0]]),
    ]
    paths = []
    for i, rep in enumerate(reps):
        p = tmp_path / f"m{i}.npz"
        write_predictions(
            p,
            index=np.array([5, 6]),
            labels=np.zeros(2),
            logits=np.zeros((2, 10)),
            rep=rep,
        )
        paths.append(p)
    df = population_qscores(paths)
    q_unit = np.sqrt(3)  # [1,0,0,0]: z = sqrt(3), l1 = 1
    u = np.array([0.6, 0.8, 0, 0])
    q_34 = (u.max() - u.mean()) / u.std() / np.abs(u).sum()
    assert df["q"].tolist() == pytest.approx([(q_unit + q_34) / 2, q_unit])
    assert df["n_degenerate"].tolist() == [0, 1]
    assert df["index"].tolist() == [5, 6]


def test_qscore_table_uses_pie_splits_and_paper_values(tmp_path):
    scores = tmp_path / "q.csv"
    pd.DataFrame(
        {
            "index": range(4),
            "q": [1.0, 1.0, 3.0, 3.0],
            "z": 2.0,
            "l1": 1.0,
            "n_degenerate": 0,
        }
    ).to_csv(scores, index=False)
    cells = [
        {
            "method": "scl",
            "schedule": "dense",
            "sparsity": 0,
            "scores": scores,
            "pie": None,
        },
        {
            "method": "scl",
            "schedule": "gmp",
            "sparsity": 90,
            "scores": scores,
            "pie": _pie(tmp_path / "p.csv", {2, 3}),
        },
    ]
    df = qscore_table(cells, PAPER, "table4")
    assert df["subset"].tolist() == ["all", "all", "pie", "non_pie"]
    assert df["q_mean"].tolist() == [2.0, 2.0, 3.0, 1.0]
    assert df.loc[1, "paper_q"] == 0.56
    assert pd.isna(df.loc[2, "paper_q"])


def test_depth_table_and_population_depth(tmp_path):
    paths = []
    for i, pd_values in enumerate(([1, 16, 4, 4], [3, 14, 4, 6])):
        p = tmp_path / f"d{i}.npz"
        write_npz(p, depth_arrays(pd=pd_values))
        paths.append(p)
    frame = population_depth(paths)
    assert frame["pd"].tolist() == [2.0, 15.0, 4.0, 5.0]
    scores = tmp_path / "pd.csv"
    frame.to_csv(scores, index=False)
    cell = {
        "method": "sup",
        "schedule": "gmp",
        "group": "gmp",
        "sparsity": 90,
        "n_models": 2,
        "scores": scores,
        "pie": _pie(tmp_path / "p.csv", {1}),
    }
    df = depth_table([cell], PAPER)
    corti = df[df["definition"] == "corti"].iloc[0]
    assert (corti["pie_mean"], corti["n_pie"]) == (15.0, 1)
    assert corti["non_pie_mean"] == pytest.approx(11 / 3)
    assert corti["paper_pie"] == 15.10


def test_pie_overlap_counts_shared_examples(tmp_path):
    cell = {
        "schedule": "gmp",
        "sparsity": 50,
        "sup": _pie(tmp_path / "a.csv", {1, 2, 3}),
        "scl": _pie(tmp_path / "b.csv", {2, 3, 0}),
    }
    row = pie_overlap([cell]).iloc[0]
    assert (row["sup_pie"], row["scl_pie"], row["shared"]) == (3, 3, 2)
    assert row["iou"] == pytest.approx(0.5)
