"""Pruning schedules chosen by config (random, imp, oneshot.scope) through
the DAG, combination errors, and tables and figures on grids with absent
cells."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, TINY, job_counts, run_snakemake

from prunelens.config import ConfigError, check, load_yaml
from prunelens.data import make_synthetic_images_archive
from prunelens.study import METHOD_SCHEDULES, Grid

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"

# The brief's worked overlay: every new schedule, a non-default One-Shot scope.
NEW_SCHEDULES = {
    "schedules": {"sup": {"random": [50], "imp": [50, 80]}, "scl": {"random": [50]}},
    "oneshot": {"scope": "layerwise"},
    "imp": {"rewind_epoch": 0},
}


def merged(*overlays):
    """config.yaml with ``overlays`` merged in (as Snakemake merges them)."""

    def merge(a, b):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(a[k], v) if isinstance(v, dict) and k in a else v
        return out

    cfg = load_yaml(REPO / "config.yaml")
    for o in overlays:
        cfg = merge(cfg, o)
    return cfg


def error(*overlays) -> str:
    with pytest.raises(ConfigError) as err:
        check(merged(*overlays), SCHEMA)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_every_method_gets_the_post_training_schedules():
    assert METHOD_SCHEDULES == {
        "sup": ("gmp", "oneshot", "random", "imp"),
        "scl": ("gmp", "delayed_gmp", "oneshot", "random", "imp"),
        "simclr": ("gmp", "delayed_gmp", "oneshot", "random", "imp"),
    }
    grid = Grid.from_config(merged(NEW_SCHEDULES))
    assert grid.sparsities("sup", "imp") == (50, 80)
    assert grid.figure_columns() == [
        ("sup", "gmp"),
        ("sup", "oneshot"),
        ("sup", "random"),
        ("sup", "imp"),
        ("scl", "gmp"),
        ("scl", "oneshot"),
        ("scl", "random"),
    ]
    # the paper's grid: the paper's four figure columns
    assert Grid.from_config(merged()).figure_columns() == [
        ("sup", "gmp"),
        ("sup", "oneshot"),
        ("scl", "gmp"),
        ("scl", "oneshot"),
    ]


def test_the_default_config_and_the_new_schedules_pass():
    check(merged(), SCHEMA)
    check(merged(NEW_SCHEDULES), SCHEMA)


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        (
            {"schedules": {"sup": {"delayed_gmp": [50]}}},
            "config key 'schedules.sup.delayed_gmp': not a schedule of method "
            "'sup': delayed GMP is for SCL only (paper §3)",
        ),
        (
            {"schedules": {"scl": {"imp": [50]}}, "imp": {"rewind_epoch": 500}},
            "config key 'imp.rewind_epoch': 500 is not before the end of training "
            "(scl.pretrain.epochs = 500), so IMP has nothing to retrain",
        ),
        (
            {
                "methods": ["scl", "simclr"],
                "schedules": {"scl": {"imp": [50, 80]}, "simclr": {"imp": [50]}},
            },
            "config key 'schedules.simclr.imp': [50] differs from "
            "schedules.scl.imp = [50, 80]; rule pretrain_imp writes the IMP encoders "
            "of every contrastive method with one output list, so both must list "
            "the same sparsities",
        ),
        (
            {"schedules": {"sup": {"magnitude": [50]}}},
            "config key 'schedules.sup': unknown key(s) 'magnitude'",
        ),
        (
            {"gmp": {"sup_head": {"begin": 1, "end": 2, "frequency": 1}}},
            "config key 'gmp.sup_head': method 'sup' trains no separate linear "
            "head to prune (head GMP sections: gmp.scl_head, gmp.simclr_head)",
        ),
        (
            {"schedules": {"sup": {"imp": [50]}}, "imp": {"rewind_epoch": 205}},
            "config key 'imp.rewind_epoch': 205 is not before the end of training "
            "(sup.epochs = 205), so IMP has nothing to retrain",
        ),
        (
            {"schedules": {"sup": {"random": [100]}}},
            "config key 'schedules.sup.random[0]': 100 is greater than or equal to "
            "the maximum of 100",
        ),
        (
            {"schedules": {"sup": {"imp": [0]}}},
            "config key 'schedules.sup.imp[0]': 0 is less than or equal to the "
            "minimum of 0",
        ),
        (
            {"imp": {"fraction": 1.0}},
            "config key 'imp.fraction': 1.0 is greater than or equal to the "
            "maximum of 1",
        ),
        (
            {"oneshot": {"scope": "per-layer"}},
            "config key 'oneshot.scope': 'per-layer' is not one of ['global', "
            "'layerwise']",
        ),
    ],
)
def test_a_nonsense_combination_is_one_line_naming_the_key(overlay, message):
    assert error(overlay) == message


def test_imp_rewinding_is_checked_only_when_imp_is_run():
    check(merged({"imp": {"rewind_epoch": 500}}), SCHEMA)
    # SimCLR's IMP is not run when simclr is not in methods (the default)
    only_listed = {"schedules": {"simclr": {"imp": [50]}}, "imp": {"rewind_epoch": 500}}
    check(merged(only_listed), SCHEMA)
    # nor do lists differ then
    check(merged({"schedules": {"scl": {"imp": [50, 80]}, "simclr": {"imp": [50]}}}),
          SCHEMA)  # fmt: skip


@pytest.mark.slow
def test_the_new_schedules_dry_run_to_all(tmp_path):
    archive = tmp_path / "tiny-images.tar.gz"
    make_synthetic_images_archive(archive, n_train_per_class=12, n_test_per_class=6)
    overlay = tmp_path / "tiny.yaml"
    cfg = {**TINY, "data": {**TINY["data"], "images_archive": str(archive)}}
    overlay.write_text(yaml.safe_dump(cfg))
    extra = tmp_path / "new.yaml"
    extra.write_text(yaml.safe_dump(NEW_SCHEDULES))
    proc = run_snakemake(
        tmp_path, "-n", "-p", "all", configfiles=[REPO / "config.yaml", overlay, extra]
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    # 2 seeds; cells: sup dense, gmp50, oneshot50, random50, imp50, imp80;
    # scl dense, gmp50, delayed_gmp50, oneshot50, random50
    assert job_counts(out) == {
        "all": 1,
        "prepare_cifar10": 1,
        "train_supervised": 4,  # dense + gmp, 2 seeds
        "train_imp": 2,  # one job per seed writes s50 and s80
        "pretrain_supcon": 6,
        "fit_linear_head": 6,
        "prune_oneshot": 8,  # (sup, scl) x (oneshot, random) x 2 seeds
        "predict": 11,
        "probe_depth": 11,
        "score_q": 11,
        "vote_pies": 9,
        "embed_umap": 1,
        "claims": 1,
        "table1": 1,
        "table3": 1,
        "table4": 1,
        "table5": 1,
        "table6": 1,
        "pie_overlap": 1,
        "sparsity_table": 1,
        **{f"fig{n}": 1 for n in range(1, 8)},
        "fig_curves": 1,
    }, out
    # random cells reuse prune_oneshot: its own paths, a pruner without options
    random_jobs = re.findall(
        r"rule prune_oneshot:\n(?:    .*\n)*?    "
        r"output: (results/models/\w+/random/\S+)",
        proc.stdout,
    )
    assert len(random_jobs) == 4, proc.stdout[-3000:]
    imp = re.findall(r"rule train_imp:\n(?:    .*\n)*?    output: (.*)", proc.stdout)
    assert sorted(imp[0].split(", ")) == sorted(
        f"results/models/sup/imp/s{s}/seed{seed}/{f}"
        for s in (50, 80)
        for f in ("model.pt", "metrics.json", "curves.csv")
        for seed in [int(re.search(r"seed(\d)", imp[0]).group(1))]
    )


# IMP for the contrastive methods: SCL and SimCLR next to the tiny grid's cells.
CONTRASTIVE_IMP = {
    "methods": ["sup", "scl", "simclr"],
    "schedules": {"scl": {"imp": [50, 80]}, "simclr": {"imp": [50, 80]}},
    "imp": {"rewind_epoch": 1},
}
# 2 seeds; per contrastive method: dense, gmp50, delayed_gmp50, oneshot50,
# imp50, imp80; Sup: dense, gmp50, oneshot50
ONE_PER_JOB = {
    "train_supervised": 4,
    "pretrain_supcon": 12,  # (dense, gmp, delayed) x 2 methods x 2 seeds
    "pretrain_imp": 4,  # one job per method and seed writes s50 and s80
    "fit_linear_head": 20,  # (dense, gmp, delayed, imp50, imp80) x 2 x 2
    "prune_oneshot": 6,
}
ANALYSIS = {
    "predict": 15,
    "probe_depth": 15,
    "score_q": 15,
    "vote_pies": 12,
    **dict.fromkeys(["all", "prepare_cifar10", "embed_umap", "claims"], 1),
    **dict.fromkeys(["pie_overlap", "sparsity_table"], 1),
    **{f"table{n}": 1 for n in (1, 3, 4, 5, 6)},
    **{f"fig{n}": 1 for n in range(1, 8)},
    "fig_curves": 1,
}


@pytest.mark.slow
@pytest.mark.parametrize("per_job", [1, 2])
def test_contrastive_imp_dry_runs_to_all(tmp_path, per_job):
    archive = tmp_path / "a.tar.gz"
    make_synthetic_images_archive(archive, n_train_per_class=2, n_test_per_class=1)
    overlay = tmp_path / "o.yaml"
    cfg = {**TINY, "data": {**TINY["data"], "images_archive": str(archive)}}
    overlay.write_text(yaml.safe_dump({**cfg, "seeds_per_job": per_job}))
    extra = tmp_path / "imp.yaml"
    extra.write_text(yaml.safe_dump(CONTRASTIVE_IMP))
    proc = run_snakemake(
        tmp_path, "-n", "all", configfiles=[REPO / "config.yaml", overlay, extra]
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    training = {  # seeds 0 and 1 make one block: its rules, half the jobs
        (k if per_job == 1 else f"{k}_seeds0_1"): n // per_job
        for k, n in ONE_PER_JOB.items()
    }
    assert job_counts(proc.stdout) == {**training, **ANALYSIS}, out[-3000:]
    rule = "pretrain_imp" if per_job == 1 else "pretrain_imp_seeds0_1"
    jobs = re.findall(
        rf"rule {rule}:\n(?:    .*\n)*?    output: (.*)\n(?:    .*\n)*?"
        r"    resources: .*runtime=(\d+)",
        proc.stdout,
    )
    seeds = [[0], [1]] if per_job == 1 else [[0, 1]]
    assert sorted(sorted(o.split(", ")) for o, _ in jobs) == sorted(
        sorted(
            f"results/models/{m}/imp/s{s}/seed{seed}/{f}"
            for s in (50, 80)
            for f in ("encoder.pt", "encoder_curves.csv")
            for seed in block
        )
        for m in ("scl", "simclr")
        for block in seeds
    )
    # the dense 2 pre-training epochs, then 9 rounds (fraction 0.2 to 80 %)
    # of epoch 2: 11 epochs of 50,000 images at 15 s per 1,000 on a CPU
    assert {int(r) for _, r in jobs} == {int(10 + per_job * 11 * 50 * 15 / 60)}
    # every IMP encoder gets its linear head
    head = "fit_linear_head" if per_job == 1 else "fit_linear_head_seeds0_1"
    assert "results/models/simclr/imp/s80/seed1/model.pt" in proc.stdout
    assert re.search(
        rf"rule {head}:\n    input: results/data/cifar10.npz, "
        r"results/models/scl/imp/s50/seed0/encoder.pt",
        proc.stdout,
    ), out[-3000:]


# ------------------------------------------------ tables and figures, absent cells

PAPER = load_yaml(REPO / "workflow/resources/paper-tables.yaml")


def test_table3_without_sup_gmp_says_so_instead_of_failing():
    from prunelens.tables import render_markdown, table3, table3_note, table3_wide

    long = table3({}, PAPER)
    assert long.empty
    assert list(long.columns) == [
        "sparsity",
        "pie",
        "ties",
        "n_examples",
        "hooker2019_pie",
        "paper_pie",
    ]
    wide = table3_wide(long)
    assert list(wide.columns) == [
        "Sparsity %",
        "Hooker et al. (2019)",
        "Corti et al. (2022)",
        "ours",
    ]
    note = table3_note(long)
    assert note == (
        "Hooker et al. (2019) used a different architecture. Not in this grid: "
        "Sup / GMP (schedules.sup.gmp), so the table has no rows."
    )
    assert render_markdown(wide, "Table 3", note).endswith(note + "\n")


def test_tables_of_absent_methods_and_schedules_have_no_rows_and_a_note():
    from prunelens.tables import (
        absent_note,
        depth_table,
        depth_wide,
        pie_overlap,
        qscore_table,
        qscore_wide,
    )

    assert qscore_wide(qscore_table([], PAPER, "table4")).columns.tolist() == [
        "Sparsity %"
    ]
    assert depth_wide(depth_table([], PAPER), "corti").columns.tolist() == [
        "Sparsity %"
    ]
    assert pie_overlap([]).columns.tolist() == [
        "schedule",
        "sparsity",
        "sup_pie",
        "scl_pie",
        "shared",
        "iou",
    ]
    rows = pd.DataFrame(
        {"method": ["sup", "sup", "sup"], "schedule": ["dense", "random", "imp"]}
    )
    assert absent_note(rows) == (
        "Not in this grid (no rows): Sup / GMP, Sup / One-Shot, SCL / GMP, "
        "SCL / ΔGMP, SCL / One-Shot."
    )
    paper_like = pd.DataFrame(
        {"method": ["sup", "sup"], "schedule": ["gmp", "oneshot"]}
    )
    assert absent_note(paper_like, [("sup", "gmp"), ("sup", "oneshot")]) == ""


def test_table1_shows_the_new_schedules_as_columns(tmp_path):
    from prunelens.tables import table1_wide

    rows = [
        ("sup", "dense", 0, 10, 0.9),
        ("sup", "random", 50, 40, 0.5),
        ("sup", "imp", 50, 5, 0.88),
    ]
    long = pd.DataFrame(
        [
            {
                "method": m,
                "schedule": sc,
                "sparsity": s,
                "n_models": 2,
                "pie": pie,
                "ties": 0,
                "acc_mean": acc,
                "acc_std": 0.0,
                "paper_pie": None,
                "paper_acc_mean": None,
                "paper_acc_std": None,
                "pie_ci_low": None,
                "pie_ci_high": None,
                "pie_half": None,
                "pie_noise_floor": None,
            }
            for m, sc, s, pie, acc in rows
        ]
    )
    wide = table1_wide(long)
    assert [c for c in wide.columns if c != "Sparsity %"][0].startswith("Sup / Random")
    assert any(c.startswith("Sup / IMP") for c in wide.columns)
    assert not any("GMP" in c for c in wide.columns)


def test_table1_and_table6_columns_are_the_groups_each_method_trains():
    from prunelens.tables import depth_wide, table1_wide

    # Sup GMP; SCL and SimCLR IMP only: no SCL / GMP or SimCLR / GMP columns
    cells = [("sup", "dense", 0), ("sup", "gmp", 50), ("scl", "dense", 0),
             ("scl", "imp", 50), ("simclr", "dense", 0),
             ("simclr", "imp", 50)]  # fmt: skip
    nan = float("nan")
    long = pd.DataFrame(
        [
            {"method": m, "schedule": sc, "sparsity": s, "pie": 3, "acc_mean": 0.5,
             "acc_std": 0.0, "paper_pie": nan, "paper_acc_mean": nan,
             "paper_acc_std": nan, "pie_ci_low": nan, "pie_ci_high": nan,
             "pie_half": nan}
            for m, sc, s in cells
        ]
    )  # fmt: skip
    groups = ["Sup / GMP", "SCL / IMP", "SimCLR / IMP"]
    assert list(table1_wide(long).columns) == ["Sparsity %"] + [
        f"{g} {c}" for g in groups for c in ("PIE", "half", "Acc %")
    ]
    depth = pd.DataFrame(
        [
            {"definition": "corti", "method": m, "group": g, "sparsity": s,
             **{f"{p}{part}{q}": 1.0 for part in ("pie", "non_pie")
                for p, q in (("", "_mean"), ("", "_std"), ("paper_", ""),
                             ("paper_", "_std"))}}
            for m, g, s in [("sup", "gmp", 0), ("sup", "gmp", 50), ("scl", "imp", 0),
                            ("scl", "imp", 50), ("simclr", "imp", 50)]
        ]
    )  # fmt: skip
    assert list(depth_wide(depth, "corti").columns) == ["Sparsity %"] + [
        f"{g} {c}" for g in groups for c in ("PIE", "non-PIE")
    ]


def test_figure7_compares_sup_and_scl_only(tmp_path):
    from prunelens.paper import fig_pies_by_class

    pies = {f"{m}_imp_s50": _pie_csv(tmp_path / f"{m}.csv") for m in ("sup", "scl")}
    rows = [("50%", [("sup", "imp", 50), ("scl", "imp", 50), ("simclr", "imp", 50)])]
    with pytest.raises(ValueError, match="Figure 7 compares Sup and SCL; got a SimCLR"):
        fig_pies_by_class(pies, rows=rows, title="Figure 7: PIEs",
                          pdf=tmp_path / "f.pdf", png=tmp_path / "f.png")  # fmt: skip


def _pie_csv(path, n=20, pies=(1, 5)):
    labels = np.arange(n) % 10
    pd.DataFrame(
        {
            "index": np.arange(n),
            "label": labels,
            "dense_mode": labels,
            "pruned_mode": [(y + (i in pies)) % 10 for i, y in enumerate(labels)],
            "pie": [i in pies for i in range(n)],
            "tie": False,
        }
    ).to_csv(path, index=False)
    return path


def _drawn(tmp_path, name):
    pdf, png = tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"
    assert pdf.stat().st_size > 0
    assert png.stat().st_size > 0
    return pdf, png


def test_figures_of_absent_cells_draw_a_panel_saying_so(tmp_path):
    from pypdf import PdfReader

    from prunelens.paper import (
        absent_text,
        fig_gallery_pies,
        fig_pies_by_class,
        fig_scatter,
    )

    fig_scatter(
        [],
        column="q",
        axis_label="Q-Score",
        title="Figure 2: Q-Score",
        sparsity=0,
        requested=90,
        pdf=tmp_path / "f2.pdf",
        png=tmp_path / "f2.png",
    )
    text = PdfReader(_drawn(tmp_path, "f2")[0]).pages[0].extract_text()
    assert absent_text("Figure 2", [("sup", "gmp")]) == (
        "Figure 2: not in this grid (needs Sup / GMP)"
    )
    assert "not in this grid" in text
    fig_pies_by_class(
        {},
        rows=[("(a) Sup / One-Shot", []), ("(b) SCL / One-Shot", [])],
        title="Figure 4: PIEs per class",
        pdf=tmp_path / "f4.pdf",
        png=tmp_path / "f4.png",
    )
    text = PdfReader(_drawn(tmp_path, "f4")[0]).pages[0].extract_text()
    assert "no schedule and sparsity trained for both Sup and SCL" in text
    fig_gallery_pies(
        {},
        data=tmp_path / "absent.npz",  # not read: nothing to show
        method="scl",
        sparsity=0,
        requested=30,
        per_group=8,
        pdf=tmp_path / "f6.pdf",
        png=tmp_path / "f6.png",
    )
    text = PdfReader(_drawn(tmp_path, "f6")[0]).pages[0].extract_text()
    assert "needs SCL / GMP, SCL / One-Shot" in text


def test_umap_figures_take_the_columns_of_the_grid(tmp_path):
    from prunelens.paper import fig1, fig5

    rng = np.random.default_rng(0)
    rows = []
    for sc, s in (("dense", 0), ("random", 50), ("imp", 50)):
        mode = rng.integers(0, 10, 20)
        rows.append(
            pd.DataFrame(
                {
                    "method": "sup",
                    "schedule": sc,
                    "sparsity": s,
                    "index": np.arange(20),
                    "x": rng.normal(size=20),
                    "y": rng.normal(size=20),
                    "mode": mode,
                    "pie": rng.random(20) < 0.2,
                }
            )
        )
    emb = tmp_path / "emb.csv"
    pd.concat(rows).to_csv(emb, index=False)
    columns = [("sup", "random"), ("sup", "imp")]
    fig1(
        emb,
        methods=["sup"],
        columns=columns,
        sparsity=50,
        requested=95,
        pdf=tmp_path / "f1.pdf",
        png=tmp_path / "f1.png",
    )
    fig5(
        emb,
        methods=["sup"],
        columns=columns,
        sparsities=[50],
        pdf=tmp_path / "f5.pdf",
        png=tmp_path / "f5.png",
    )
    from pypdf import PdfReader

    for name in ("f1", "f5"):
        text = PdfReader(_drawn(tmp_path, name)[0]).pages[0].extract_text()
        assert "Sup / Random 50%" in text, text
        assert "Sup / IMP 50%" in text, text
        assert "not in grid" not in text
