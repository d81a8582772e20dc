"""SimCLR: NT-Xent against a loop oracle, labels unused, the pre-training
stage (deterministic, K models together equal K alone), config keys and the
DAG with methods [sup, simclr] and [simclr]."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, SCHEMA, TINY, job_counts, run_snakemake

from prunelens import augment, paper
from prunelens import train as train_module
from prunelens.bootstrap import Models
from prunelens.claims import claims_frame, define_claims, pop_key
from prunelens.config import ConfigError, check
from prunelens.data import make_synthetic_images_archive
from prunelens.losses import supcon_loss
from prunelens.study import METHOD_SCHEDULES, PRETRAIN_OBJECTIVE, Grid
from prunelens.tables import load_paper, qscore_table, qscore_wide
from prunelens.train import _contrastive, fit_linear_head, pretrain_supcon

ARCH = {"depth": 10, "width": 1}
NORM = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
# simclr.pretrain's keys: SCL's without base_temperature
PRETRAIN = {
    "epochs": 1,
    "batch_size": 64,  # 320 images: 5 steps per epoch
    "lr": 0.05,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5e-4,
    "eta_min_factor": 1e-3,
    "temperature": 0.5,
    "augment": {
        "scale": [0.2, 1.0],
        "jitter": [0.4, 0.4, 0.4, 0.1],
        "p_jitter": 0.8,
        "p_gray": 0.2,
    },
}
CPU = {"device": "cpu"}
PAPER = load_paper(REPO / "workflow/resources/paper-tables.yaml")


# ---------------------------------------------------------------- the loss


def _nt_xent_oracle(z: list[list[list[float]]], t: float) -> float:
    """NT-Xent by explicit loops: every view of every sample is an anchor,
    the other views of its sample its positives, every other view (itself
    excluded) its denominator; mean over positives, then over anchors."""
    views = [(i, v, z[i][v]) for i in range(len(z)) for v in range(len(z[i]))]

    def sim(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / t

    per_anchor = []
    for a_idx, (i, v, za) in enumerate(views):
        denom = sum(
            math.exp(sim(za, zb))
            for b_idx, (_, _, zb) in enumerate(views)
            if b_idx != a_idx
        )
        terms = [
            -math.log(math.exp(sim(za, zp)) / denom)
            for j, w, zp in views
            if j == i and w != v
        ]
        per_anchor.append(sum(terms) / len(terms))
    return sum(per_anchor) / len(per_anchor)


def _unit_rows(rows: list[list[list[float]]]) -> list[list[list[float]]]:
    return [
        [[x / math.sqrt(sum(y * y for y in r)) for x in r] for r in sample]
        for sample in rows
    ]


# 3 samples x 2 views x 3 dims, hand-made and normalised
BATCH = _unit_rows(
    [
        [[1.0, 0.0, 0.0], [0.8, 0.6, 0.0]],
        [[0.0, 1.0, 0.0], [0.0, 0.6, 0.8]],
        [[-1.0, 1.0, 1.0], [1.0, -2.0, 2.0]],
    ]
)


@pytest.mark.parametrize("t", [0.5, 0.1, 1.0])
def test_nt_xent_matches_a_loop_oracle(t):
    got = supcon_loss(
        torch.tensor(BATCH, dtype=torch.float64),
        None,
        temperature=t,
        base_temperature=t,
    )
    assert abs(float(got) - _nt_xent_oracle(BATCH, t)) <= 1e-6


def test_nt_xent_with_three_views_matches_the_oracle():
    batch = _unit_rows(
        [
            [[1.0, 2.0], [2.0, 1.0], [1.0, -1.0]],
            [[-1.0, 0.5], [0.3, -1.0], [-2.0, -1.0]],
        ]
    )
    got = supcon_loss(
        torch.tensor(batch, dtype=torch.float64),
        temperature=0.3,
        base_temperature=0.3,
    )
    assert abs(float(got) - _nt_xent_oracle(batch, 0.3)) <= 1e-6


def _objective_loss(objective: str, z: torch.Tensor, labels: list[int]) -> float:
    """The loss the pre-training loop computes for one model's two views."""
    hp = {**PRETRAIN, "base_temperature": 0.07}
    loss, _ = _contrastive(objective, hp)(
        lambda x: x, torch.cat([z[:, 0], z[:, 1]]), torch.tensor([labels])
    )
    return float(loss[0])


def test_the_simclr_objective_is_plain_nt_xent_and_ignores_labels():
    z = torch.tensor(BATCH, dtype=torch.float64)
    want = _nt_xent_oracle(BATCH, PRETRAIN["temperature"])  # no T / T_base factor
    for labels in ([0, 0, 1], [1, 0, 0], [2, 1, 0], [0, 0, 0]):
        assert abs(_objective_loss("simclr", z, labels) - want) <= 1e-6
    # SupCon's labels do matter: samples 0 and 1 sharing a label changes it
    assert _objective_loss("supcon", z, [0, 0, 1]) != pytest.approx(
        _objective_loss("supcon", z, [0, 1, 2])
    )


def test_an_unknown_objective_is_refused_before_any_training(tmp_path):
    with pytest.raises(ValueError, match="unknown pre-training objective 'byol'"):
        pretrain_supcon(data=tmp_path / "absent.npz", seeds=[0],
                        encoder_outs=[tmp_path / "e.pt"], arch=ARCH, hp=PRETRAIN,
                        norm=NORM, gmp=None, sparsity=0, schedule="dense",
                        settings=CPU, objective="byol")  # fmt: skip


# ---------------------------------------------------------------- the stage


def _pretrain(prepared: Path, outs: list[Path], seeds: list[int], **over):
    kw = {"gmp": None, "sparsity": 0, "schedule": "dense", "objective": "simclr"}
    kw |= {"hp": PRETRAIN, **over}
    return pretrain_supcon(data=prepared, seeds=seeds, encoder_outs=outs,
                           arch=ARCH, norm=NORM, settings=CPU, **kw)  # fmt: skip


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=False)["state_dict"]


def test_simclr_pretraining_is_deterministic_given_the_seed(prepared, tmp_path):
    a, b, c = (tmp_path / f"{n}.pt" for n in "abc")
    (state,) = _pretrain(prepared, [a], [0])
    _pretrain(prepared, [b], [0])
    _pretrain(prepared, [c], [1])
    assert state["steps"] == 5
    assert state["meta"]["objective"] == "simclr"
    assert all(math.isfinite(row["loss"]) for row in state["history"])
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert not list(tmp_path.glob("resume*.pt"))


def test_simclr_and_supcon_pretraining_differ_from_the_same_seed(prepared, tmp_path):
    _pretrain(prepared, [tmp_path / "simclr.pt"], [0])
    _pretrain(prepared, [tmp_path / "scl.pt"], [0], objective="supcon",
              hp={**PRETRAIN, "base_temperature": 0.07})  # fmt: skip
    a, b = _weights(tmp_path / "simclr.pt"), _weights(tmp_path / "scl.pt")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_the_resume_fingerprint_names_the_objective(prepared, tmp_path, monkeypatch):
    """Same hyper-parameters, seeds and data: a SupCon resume file is never
    resumed by a SimCLR job (nor the reverse)."""
    keys = {}

    class Stop(Exception):
        pass

    def record(*args, key, **kwargs):
        keys[objective] = key
        raise Stop

    monkeypatch.setattr(train_module, "train", record)
    hp = {**PRETRAIN, "base_temperature": 0.07}  # SimCLR ignores it
    for objective in ("supcon", "simclr"):
        with pytest.raises(Stop):
            _pretrain(prepared, [tmp_path / f"{objective}.pt"], [0], hp=hp,
                      objective=objective)  # fmt: skip
    assert keys["supcon"] != keys["simclr"]


def test_a_simclr_block_equals_its_solo_runs_in_float64(
    prepared, tmp_path, monkeypatch
):
    normalize = augment.normalize
    monkeypatch.setattr(
        augment, "normalize", lambda x, m, s: normalize(x.double(), m, s)
    )
    torch.set_default_dtype(torch.float64)
    try:
        solo = [tmp_path / f"solo{s}.pt" for s in (0, 1)]
        for s, out in zip((0, 1), solo, strict=True):
            _pretrain(prepared, [out], [s])
        block = [tmp_path / f"block{s}.pt" for s in (0, 1)]
        _pretrain(prepared, block, [0, 1])
    finally:
        torch.set_default_dtype(torch.float32)
    for one, together in zip(solo, block, strict=True):
        x, y = _weights(one), _weights(together)
        assert x.keys() == y.keys()
        for name, v in x.items():
            if v.is_floating_point():
                assert v.dtype == torch.float64, name
                diff = (v - y[name]).abs().max()
                assert diff <= 1e-10 * v.abs().max().clamp(min=1e-30), name


def test_a_simclr_head_records_its_method(prepared, tmp_path):
    enc = tmp_path / "encoder.pt"
    _pretrain(prepared, [enc], [0])
    head = {**PRETRAIN, "milestones": [], "gamma": 0.2, "cosine_eta_min": 1e-4}
    for key in ("eta_min_factor", "temperature", "augment"):
        del head[key]
    (metrics,) = fit_linear_head(
        data=prepared, encoders=[enc], seeds=[0], model_outs=[tmp_path / "m.pt"],
        metrics_outs=[tmp_path / "m.json"], hp=head,
        augment_cfg={"padding": 4, "hflip": True, "vflip": False}, norm=NORM,
        gmp=None, sparsity=0, schedule="dense", settings=CPU, method="simclr",
    )  # fmt: skip
    assert metrics["method"] == "simclr"
    assert 0.0 <= metrics["test_acc"] <= 1.0


# ---------------------------------------------------------------- vocabulary, config


def test_simclr_runs_scls_stages_and_schedules():
    assert PRETRAIN_OBJECTIVE == {"scl": "supcon", "simclr": "simclr"}
    assert METHOD_SCHEDULES["simclr"] == METHOD_SCHEDULES["scl"]
    grid = Grid.from_config(
        {"methods": ["simclr"], "schedules": {"simclr": {"gmp": [50], "oneshot": []}}}
    )
    assert grid.cells("simclr") == [("dense", 0), ("gmp", 50)]
    assert grid.cells("scl") == []


def _config(paper_config, **over):
    cfg = {**paper_config, "methods": ["sup", "simclr"]}
    for dotted, value in over.items():
        *parents, last = dotted.split(".")
        node = cfg
        for p in parents:
            node[p] = dict(node[p])
            node = node[p]
        node[last] = value
    return cfg


def test_the_default_config_with_simclr_is_valid(paper_config):
    check(_config(paper_config), SCHEMA)
    check({**paper_config, "methods": ["simclr"]}, SCHEMA)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            {"simclr.pretrain.base_temperature": 0.07},
            "config key 'simclr.pretrain': unknown key(s) 'base_temperature'",
        ),
        (
            {"gmp.simclr.end": 10**6},
            "config key 'gmp.simclr.end': step 1000000 is after the last training "
            "step 24500 (simclr.pretrain.epochs = 500 x 49 steps), so the target "
            "sparsity is never reached",
        ),
        (
            {"gmp.simclr_head.begin": 10**6},
            "config key 'gmp.simclr_head.begin': 1000000 is after "
            "gmp.simclr_head.end = 10000",
        ),
        (
            {"simclr.head.milestones": [90, 60]},
            "config key 'simclr.head.milestones': must be increasing, got [90, 60]",
        ),
        (
            {"schedules.simclr": {"gmp": [50], "imp": [50]}, "imp.rewind_epoch": 500},
            "config key 'imp.rewind_epoch': 500 is not before the end of training "
            "(simclr.pretrain.epochs = 500), so IMP has nothing to retrain",
        ),
    ],
)
def test_a_bad_simclr_value_is_one_line_naming_its_key(paper_config, over, message):
    with pytest.raises(ConfigError) as err:
        check(_config(paper_config, **over), SCHEMA)
    assert str(err.value) == message


# ---------------------------------------------------------------- the DAG


@pytest.mark.parametrize(
    ("methods", "expected"),
    [
        (
            ["sup", "simclr"],
            {
                "train_supervised": 4,  # (dense, gmp 50) x 2 seeds
                "pretrain_supcon": 6,  # simclr (dense, gmp, delayed) x 2 seeds
                "fit_linear_head": 6,
                "prune_oneshot": 4,  # sup and simclr, 50 % x 2 seeds
                "predict": 7,
                "vote_pies": 5,
            },
        ),
        (
            ["simclr"],
            {
                "pretrain_supcon": 6,
                "fit_linear_head": 6,
                "prune_oneshot": 2,
                "predict": 4,
                "vote_pies": 3,
            },
        ),
    ],
)
def test_a_dry_run_plans_simclr_like_scl(tmp_path, methods, expected):
    archive = tmp_path / "a.tar.gz"
    make_synthetic_images_archive(archive, n_train_per_class=2, n_test_per_class=1)
    overlay = tmp_path / "o.yaml"
    cfg = {**TINY, "data": {**TINY["data"], "images_archive": str(archive)}}
    overlay.write_text(yaml.safe_dump({**cfg, "methods": methods}))
    proc = run_snakemake(
        tmp_path, "-n", "all", configfiles=[REPO / "config.yaml", overlay]
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    counts = job_counts(proc.stdout)
    assert {k: counts.get(k, 0) for k in expected} == expected
    if "sup" not in methods:
        assert "train_supervised" not in counts
    # every training job is SimCLR's or Sup's, never SCL's
    assert "results/models/scl/" not in proc.stdout
    assert "results/models/simclr/gmp/s50/seed1/encoder.pt" in proc.stdout
    assert "results/pie/simclr/oneshot/s50.csv" in proc.stdout


# ---------------------------------------------------------- tables, figures, claims


def _embeddings(path: Path, cells: list[tuple[str, str, int]]) -> Path:
    rows = [
        {"method": m, "schedule": sc, "sparsity": s, "index": i, "x": i, "y": -i,
         "mode": i % 10, "pie": sc != "dense" and i == 0}
        for m, sc, s in cells
        for i in range(3)
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("methods", "columns"),
    [
        (["sup", "scl"], ["sup/gmp", "sup/oneshot", "scl/gmp", "scl/oneshot"]),
        (["sup", "simclr"], ["sup/gmp", "sup/oneshot", "simclr/gmp", "simclr/oneshot"]),
        (["simclr"], ["simclr/gmp", "simclr/oneshot"]),
        (
            ["sup", "scl", "simclr"],
            [
                "sup/gmp",
                "sup/oneshot",
                "scl/gmp",
                "scl/oneshot",
                "simclr/gmp",
                "simclr/oneshot",
            ],
        ),  # fmt: skip
    ],
)
def test_figure5_has_a_gmp_and_a_oneshot_column_per_method_present(
    tmp_path, monkeypatch, methods, columns
):
    cells = [(m, sc, s) for m in methods for sc, s in (("dense", 0), ("gmp", 50),
             ("oneshot", 50))]  # fmt: skip
    emb = _embeddings(tmp_path / "emb.csv", cells)
    drawn = {}
    monkeypatch.setattr(
        paper,
        "fig_umap",
        lambda panels, *a, ncols, **k: drawn.update(p=panels, n=ncols),
    )
    grid = Grid.from_config(
        {
            "methods": methods,
            "schedules": {m: {"gmp": [50], "oneshot": [50]} for m in methods},
        }
    )
    assert [f"{m}/{sc}" for m, sc in grid.figure_columns()] == columns
    paper.fig5(
        emb,
        sparsities=[50],
        methods=methods,
        columns=grid.figure_columns(),
        pdf=tmp_path / "f.pdf",
        png=tmp_path / "f.png",
    )
    assert drawn["n"] == len(columns)
    dense, sparse = drawn["p"][: len(columns)], drawn["p"][len(columns) :]
    # the dense row: each method's dense model over its first column
    assert [p and f"{p[0].method}/{p[0].schedule}" for p in dense] == [
        f"{c.split('/')[0]}/dense" if i % 2 == 0 else None
        for i, c in enumerate(columns)
    ]
    assert [f"{p[0].method}/{p[0].schedule}" for p in sparse] == columns
    assert all(p[1] is not None and len(p[1]) == 3 for p in sparse)


def test_table4_has_columns_for_scl_and_simclr(tmp_path):
    scores = tmp_path / "q.csv"
    pd.DataFrame(
        {"index": range(4), "q": [1.0, 1.0, 3.0, 3.0], "z": 2.0, "l1": 1.0,
         "n_degenerate": 0}
    ).to_csv(scores, index=False)  # fmt: skip
    pie = tmp_path / "p.csv"
    pd.DataFrame(
        {"index": range(4), "label": [0, 1, 2, 3], "dense_mode": [0, 1, 2, 3],
         "pruned_mode": [0, 1, 3, 4], "pie": [False, False, True, True],
         "tie": False}
    ).to_csv(pie, index=False)  # fmt: skip
    cells = [
        {"method": m, "schedule": sc, "sparsity": s, "scores": scores,
         "pie": None if sc == "dense" else pie}
        for m in ("scl", "simclr")
        for sc, s in (("dense", 0), ("gmp", 90))
    ]  # fmt: skip
    long = qscore_table(cells, PAPER, "table4")
    assert sorted(set(long["method"])) == ["scl", "simclr"]
    # SimCLR is not in the paper: no paper values
    assert long[long["method"] == "simclr"]["paper_q"].isna().all()
    assert long[(long["method"] == "scl") & (long["sparsity"] == 90)][
        "paper_q"
    ].tolist()[0] == pytest.approx(0.56)
    wide = qscore_wide(long)
    assert list(wide.columns) == [
        "Sparsity %",
        "SCL / GMP Q",
        "SCL / GMP Z",
        "SCL / GMP ‖h‖₁",
        "SimCLR / GMP Q",
        "SimCLR / GMP Z",
        "SimCLR / GMP ‖h‖₁",
    ]
    assert wide["SimCLR / GMP Q"].tolist() == ["2.00 ± 1.00 (–)", "2.00 ± 1.00 (–)"]


def test_the_claims_with_simclr_in_place_of_scl_say_too_few_models():
    grid = Grid.from_config(
        {
            "methods": ["sup", "simclr"],
            "schedules": {
                "sup": {"gmp": [90], "oneshot": [90]},
                "simclr": {"gmp": [90], "delayed_gmp": [90], "oneshot": [90]},
            },
        }
    )
    claims = define_claims(grid, PAPER, headline_ratio=2, depth_cells=[])
    rng = np.random.default_rng(0)
    data = {
        pop_key(m, sc, s): Models(6, preds=rng.integers(0, 10, (6, 40)),
                                  acc=rng.random(6), q=rng.random((6, 40)))
        for m, sc, s in grid.all_cells()
    }  # fmt: skip
    df = claims_frame(claims, data, n_resamples=1000, confidence=0.95, random_state=0)
    assert len(df) == len(claims) > 0
    # the paper's claims compare SCL with Sup: SimCLR does not stand in for SCL
    scl_claims = df[df["n_models"].str.contains("scl/")]
    assert len(scl_claims) > 0
    assert (scl_claims["verdict"] == "too few models").all()
    assert not df["n_models"].str.contains("simclr").any()
