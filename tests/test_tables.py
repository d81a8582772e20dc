"""Tables from hand-made files: exact counts, means and the paper's columns."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, depth_arrays, metrics_json

from prunelens.analysis import population_depth, population_qscores, split_summary
from prunelens.claims import claims_html
from prunelens.evaluate import write_predictions
from prunelens.files import FileContractError
from prunelens.runtime import write_csv, write_json, write_npz
from prunelens.tables import (
    SPARSITY_COLUMNS,
    depth_table,
    load_paper,
    pie_overlap,
    qscore_table,
    read_sparsity,
    render_latex,
    render_markdown,
    sparsity_flag_note,
    sparsity_html,
    sparsity_markdown,
    sparsity_table,
    table1,
    table1_wide,
    table3,
    write_table,
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


# ---------------------------------------------------------------- per-tensor sparsity


def _layers(tmp_path, name, layers):
    """A metrics.json whose ``layers`` are (tensor, numel, target, measured)."""
    p = tmp_path / f"{name}.json"
    records = [
        {"tensor": t, "numel": n, "target": tg, "measured": m} for t, n, tg, m in layers
    ]
    write_json(p, metrics_json(layers=records))
    return p


def _cell(schedule, metrics, sparsity=90):
    return {"method": "sup", "schedule": schedule, "sparsity": sparsity,
            "metrics": metrics}  # fmt: skip


def test_the_sparsity_table_averages_seeds_and_flags_an_off_target_tensor(tmp_path):
    # layer-wise cell, 2 seeds: the conv within 0.2 pp, the 10-entry bias of
    # seed 1 at 80 %, 10 pp off; a global cell: no targets, its distribution
    gmp = [
        _layers(tmp_path, "g0", [("conv.weight", 1000, 0.9, 0.9),
                                 ("fc.bias", 10, 0.9, 0.9)]),
        _layers(tmp_path, "g1", [("conv.weight", 1000, 0.9, 0.902),
                                 ("fc.bias", 10, 0.9, 0.8)]),
    ]  # fmt: skip
    glob = [
        _layers(tmp_path, "o0", [("conv.weight", 1000, None, 0.95),
                                 ("fc.bias", 10, None, 0.3)]),
    ]  # fmt: skip
    df = sparsity_table([_cell("gmp", gmp), _cell("oneshot", glob)])
    assert df.columns.tolist() == SPARSITY_COLUMNS
    conv, bias, oconv, obias = df.itertuples()
    assert (conv.tensor, conv.numel, conv.target, conv.n_models) == (
        "conv.weight", 1000, 0.9, 2
    )  # fmt: skip
    assert conv.measured == pytest.approx(0.901, abs=1e-12)
    assert (conv.measured_min, conv.measured_max) == (0.9, 0.902)
    assert conv.off_target_pp == pytest.approx(0.2, abs=1e-9)
    assert not conv.flagged
    assert bias.measured == pytest.approx(0.85, abs=1e-12)
    assert bias.off_target_pp == pytest.approx(10, abs=1e-9)  # the worst seed
    assert bias.flagged
    for r in (oconv, obias):
        assert np.isnan(r.target)
        assert np.isnan(r.off_target_pp)
        assert not r.flagged
    note = sparsity_flag_note(df)
    assert note == (
        "1 tensor more than 0.5 pp off its target (worst model): "
        "Sup / GMP / 90 %: fc.bias (10.00 pp)."
    )
    md = sparsity_markdown(df)
    assert note in md
    assert "**Sup / GMP / 90 % (2 models)**" in md
    assert "| fc.bias | 10 | 90.00 | 85.00 | 80.00 | 90.00 | 10.00 **flagged** |" in md
    assert "| conv.weight | 1000 | 90.00 | 90.10 | 90.00 | 90.20 | 0.20 |" in md
    assert "Every tensor has a per-tensor target." in md
    assert (
        "No per-tensor target (global pruning, or none): measured sparsity of its "
        "2 tensors min 30.00 %, median 62.50 %, max 95.00 %." in md
    )
    assert "| conv.weight | 1000 | – | 95.00 | 95.00 | 95.00 | – |" in md
    html = sparsity_html(df)
    # the flagged row (the bias, row 1), every cell of it, and only it shaded
    style = html[html.index("<style") : html.index("</style>")]
    assert "background-color: #ffcdd2" in style
    assert set(re.findall(r"#T_sparsity_row(\d+)_col(\d+)", style)) == {
        ("1", str(c)) for c in range(len(SPARSITY_COLUMNS) - 1)
    }
    assert "fc.bias (10.00 pp)" in html
    write_csv(tmp_path / "sparsity.csv", df)
    back = read_sparsity(tmp_path / "sparsity.csv")
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert sparsity_flag_note(back) == note


def test_a_tensor_exactly_half_a_point_off_is_not_flagged(tmp_path):
    # 0.905 - 0.9 is 0.5000000000000004 pp in floating point
    edge = [_layers(tmp_path, "e", [("w", 1000, 0.9, 0.905), ("b", 10, 0.9, 0.9)])]
    df = sparsity_table([_cell("gmp", edge)])
    assert not df["flagged"].any()
    assert sparsity_flag_note(df) == "No tensor is more than 0.5 pp off its target."
    assert sparsity_table([_cell("gmp", edge)], tolerance_pp=0.4)["flagged"].any()


def test_the_sparsity_table_refuses_disagreeing_or_missing_layers(tmp_path):
    a = _layers(tmp_path, "a", [("w", 1000, 0.9, 0.9)])
    b = _layers(tmp_path, "b", [("w", 1000, None, 0.9)])
    with pytest.raises(FileContractError, match="b.json: its layers' tensors"):
        sparsity_table([_cell("gmp", [a, b])])
    old = tmp_path / "old.json"
    write_json(old, metrics_json())
    with pytest.raises(FileContractError, match="no per-tensor sparsity"):
        sparsity_table([_cell("gmp", [old])])
    bad = _layers(tmp_path, "bad", [("w", 0, 1.5, 0.9)])
    with pytest.raises(FileContractError, match="numel is not a positive.*target"):
        sparsity_table([_cell("gmp", [bad])])


# ---------------------------------------------------------------- escaping

# Every character that LaTeX or a Markdown pipe table treats specially.
HOSTILE = "a_b % & # $ {x} ~ ^ \\ | c"
TEX_ESCAPED = (
    r"a\_b \% \& \# \$ \{x\} \textasciitilde{} \textasciicircum{} "
    r"\textbackslash{} \textbar{} c"
)


def _unescaped_pipes(line: str) -> int:
    """Pipes not preceded by an odd run of backslashes (GFM's cell ends)."""
    return len(re.findall(r"(?<!\\)(?:\\\\)*\|", line))


def _bare_tex(line: str) -> str:
    """A tabular row with every escape sequence of the renderer removed."""
    line = line.removesuffix(r" \\")
    return re.sub(r"\\(?:[a-zA-Z]+)\{[^{}]*\}|\\[%&_#$\{\}]", "", line)


def _check_tex(tex: str, n_columns: int) -> None:
    body = tex.split(r"\hline")[1:-1]  # the header and the rows
    rows = [ln for part in body for ln in part.strip().splitlines()]
    assert rows
    for row in rows:
        bare = _bare_tex(row)
        assert bare.count("&") == n_columns - 1, row  # only the separators
        for ch in "%#$_^~{}\\|<>":
            assert ch not in bare, (ch, row)
    caption = re.search(r"\\caption\{(.*)\}$", tex, flags=re.M).group(1)
    for ch in "%#$_^~&{}\\|<>":
        assert ch not in _bare_tex(caption), (ch, caption)


def test_markdown_and_latex_escape_every_special_character(tmp_path):
    from prunelens.tables import _tex_escape

    assert _tex_escape(HOSTILE) == TEX_ESCAPED
    assert _tex_escape("±Δ") == r"\ensuremath{\pm}\ensuremath{\Delta}"  # no $$
    df = pd.DataFrame({HOSTILE: [HOSTILE, "two\nlines ± Δ"], "n": [1, 2]})
    md = render_markdown(df, "T")
    header, rule, *body = md.splitlines()[2:]
    assert rule == "|---|---|"
    for line in (header, *body):
        assert _unescaped_pipes(line) == 3, line
    assert header == r"| a_b % & # $ {x} ~ ^ \\ \| c | n |"
    assert body[1] == "| two lines ± Δ | 2 |"
    tex = render_latex(df, f"cap {HOSTILE}", "tab:x")
    _check_tex(tex, 2)
    assert f"{TEX_ESCAPED} & 1 \\\\" in tex
    assert r"two lines \ensuremath{\pm} \ensuremath{\Delta} & 2" in tex


def test_every_table_writer_escapes_hostile_labels(tmp_path):
    # write_table is what Tables 1, 3-6, pie_overlap and the claims write with
    long = pd.DataFrame({"method": [HOSTILE], "value": [1.5]})
    wide = pd.DataFrame({HOSTILE: [HOSTILE], "Acc %": ["1.00 ± 0.10"]})
    out = {ext: tmp_path / f"t.{ext}" for ext in ("csv", "md", "tex")}
    write_table(long, wide, **out, title=HOSTILE, label="tab:t", note=HOSTILE)
    pd.testing.assert_frame_equal(pd.read_csv(out["csv"]), long)
    header, _, row = out["md"].read_text().splitlines()[2:5]
    assert _unescaped_pipes(header) == _unescaped_pipes(row) == 3
    _check_tex(out["tex"].read_text(), 2)
    # the sparsity table: a hostile tensor name in every layout
    m = _layers(tmp_path, "h", [(HOSTILE, 10, 0.5, 0.5)])
    df = sparsity_table([_cell("gmp", [m], 50)])
    rows = [ln for ln in sparsity_markdown(df).splitlines() if ln.startswith("| ")]
    assert {_unescaped_pipes(ln) for ln in rows} == {8}
    html = sparsity_html(df.assign(tensor="<b>&</b>"))
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in html
    assert "<b>&</b>" not in html
    # the claims' HTML (the report's front page)
    claims = claims_html(pd.DataFrame({"<i>": ["a<b>&"], "Verdict": ["holds"]}), "<c>")
    assert "a&lt;b&gt;&amp;" in claims
    assert "&lt;i&gt;" in claims
    assert "&lt;c&gt;" in claims
