"""The claims report on hand-made populations whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from prunelens.bootstrap import Models
from prunelens.claims import (
    claims_frame,
    claims_wide,
    define_claims,
    depth_key,
    pop_key,
    verdict,
)
from prunelens.pie import half_pie_count, noise_floor
from prunelens.study import Grid

PAPER = yaml.safe_load((REPO / "workflow/resources/paper-tables.yaml").read_text())
GRID = Grid.from_config(
    {
        "methods": ["sup", "scl"],
        "schedules": {
            "sup": {"gmp": [90], "oneshot": [90]},
            "scl": {"gmp": [90], "delayed_gmp": [90], "oneshot": [90]},
        },
    }
)
N = 400
LABELS = np.arange(N) % 10


def _population(rng, m, flipped=(), noise=0.05):
    """``m`` models that predict the label, except a shared set of ``flipped``
    examples (label + 1) and a little independent noise."""
    preds = np.tile(LABELS, (m, 1))
    preds[:, list(flipped)] = (LABELS[list(flipped)] + 1) % 10
    noisy = rng.random((m, N)) < noise
    preds[noisy] = rng.integers(0, 10, noisy.sum())
    return preds


def _data(scl_flips, sup_flips, m=6, seed=0, noise=0.05):
    """PIEs at 90 %: ``scl_flips`` SCL examples, ``sup_flips`` Sup examples
    (the same count for every schedule of a method); accuracy follows."""
    rng = np.random.default_rng(seed)
    data = {}
    for method, flips in (("scl", scl_flips), ("sup", sup_flips)):
        for sc, s in GRID.cells(method):
            f = range(flips) if sc != "dense" else ()
            preds = _population(rng, m, f, noise)
            acc = (preds == LABELS).mean(axis=1)
            data[pop_key(method, sc, s)] = Models(m, preds=preds, acc=acc)
    return data


def _c1(data):
    claims = [
        c
        for c in define_claims(GRID, PAPER, headline_ratio=2, depth_cells=[])
        if c.claim == "C1"
    ]
    return claims_frame(claims, data, n_resamples=1000, confidence=0.95, random_state=0)


def test_a_clear_effect_holds():
    df = _c1(_data(scl_flips=120, sup_flips=10))
    assert df["verdict"].tolist() == ["holds", "holds"]
    assert df["estimate"].tolist() == [110.0, 110.0]
    assert (df["ci_low"] > 0).all()
    assert df["paper"].tolist() == [475.0, 366.0]


def test_no_effect_is_inconclusive():
    df = _c1(_data(scl_flips=0, sup_flips=0, seed=1))
    assert df["verdict"].tolist() == ["inconclusive", "inconclusive"]
    assert ((df["ci_low"] <= 0) & (df["ci_high"] >= 0)).all()


def test_a_reversed_effect_is_contradicted():
    df = _c1(_data(scl_flips=10, sup_flips=120))
    assert df["verdict"].tolist() == ["contradicted", "contradicted"]
    assert (df["ci_high"] < 0).all()


def test_two_models_are_too_few():
    df = _c1(_data(scl_flips=120, sup_flips=10, m=2))
    assert df["verdict"].tolist() == ["too few models", "too few models"]
    assert df["estimate"].notna().all()  # the estimate is still shown
    assert df["ci_low"].isna().all()
    assert (
        df["n_models"].iloc[0]
        == "scl/dense/s0:2 scl/gmp/s90:2 sup/dense/s0:2 sup/gmp/s90:2"
    )


def test_a_rerun_gives_identical_intervals():
    data = _data(scl_flips=60, sup_flips=20)
    pd.testing.assert_frame_equal(_c1(data), _c1(dict(reversed(data.items()))))


def test_claims_on_pie_counts_say_whether_they_clear_the_noise_floor():
    notes = _c1(_data(scl_flips=120, sup_flips=0, noise=0.0))["notes"].iloc[0]
    # noise-free models: the halves agree, so the floor is 0; SCL's 120
    # flipped examples clear it, Sup's none do not
    assert notes == (
        "scl/gmp/s90: 120 PIEs; half 120 vs floor 0 (clears); "
        "sup/gmp/s90: 0 PIEs; half 0 vs floor 0 (does not clear)"
    )


def test_every_claim_has_a_row_and_the_paper_value():
    depth = [
        {"method": m, "schedule": sc, "group": g, "sparsity": s, "pie_sparsity": 90}
        for m in GRID.methods
        for g in GRID.pruned_schedules(m)
        for sc, s in (("dense", 0), (g, 90))
    ]
    claims = define_claims(GRID, PAPER, headline_ratio=2, depth_cells=depth)
    data = _data(scl_flips=80, sup_flips=10)
    rng = np.random.default_rng(5)
    for m, sc, s in GRID.all_cells():
        models = data[pop_key(m, sc, s)]
        q = rng.random((6, N))
        data[pop_key(m, sc, s)] = Models(6, preds=models.preds, acc=models.acc, q=q)
        pd_ = rng.integers(1, 17, (3, N)).astype(float)
        data[depth_key(m, sc, s)] = Models(3, pd=pd_)
    df = claims_frame(claims, data, n_resamples=1000, confidence=0.95, random_state=0)
    assert df["claim"].tolist() == ["C1"] * 2 + ["C2"] * 2 + ["C3"] * 4 + ["C4"] * 4 + [
        "C5"
    ] + ["C6"] * 2 + ["C7"] * 2 + ["C8"] * 2 + ["C9"]
    c3 = df[df["claim"] == "C3"]["paper"].tolist()
    assert c3 == [-4.0, -57.0, -79.0, -226.0]
    assert df[df["claim"] == "C4"]["paper"].tolist() == [-98.0, -84.0, -107.0, -90.0]
    assert df[df["claim"] == "C2"]["paper"].tolist() == pytest.approx([5.39, 3.29])
    assert df[df["claim"] == "C6"]["paper"].tolist() == pytest.approx(
        [-18.75, -13.89], abs=0.01
    )
    assert df["cell"].str.len().gt(0).all()
    # only 90 % is trained: C3/C4 at 30-70 % have no models, C8 needs two sparsities
    missing = df[df["verdict"] == "too few models"]
    assert sorted(missing["claim"]) == ["C3"] * 3 + ["C4"] * 3 + ["C8"] * 2
    # C5: SCL's best schedule is chosen on the point estimate and named
    c5 = df[df["claim"] == "C5"].iloc[0]
    assert c5["null"] == 2.0
    assert "best SCL schedule:" in c5["notes"]
    assert set(claims_wide(df)["Verdict"]) <= {
        "holds",
        "inconclusive",
        "contradicted",
        "too few models",
    }


@pytest.mark.parametrize(
    ("low", "high", "side", "n", "expected"),
    [
        (1, 2, ">", 5, "holds"),
        (-2, -1, ">", 5, "contradicted"),
        (-1, 1, ">", 5, "inconclusive"),
        (-2, -1, "<", 5, "holds"),
        (0, 1, ">", 5, "inconclusive"),  # touching the null is not beyond it
        (1, 2, ">", 2, "too few models"),
    ],
)
def test_verdict_reads_the_interval(low, high, side, n, expected):
    assert verdict(low, high, side, 0.0, n) == expected


def test_noise_floor_and_half_counts_on_hand_made_predictions():
    dense = np.array(
        [
            [0, 1, 2, 3, 4, 5],
            [0, 1, 2, 3, 4, 5],
            [0, 1, 2, 9, 9, 5],
            [0, 1, 2, 9, 8, 5],  # example 4 ties 9/8 in the second half -> 8
        ]
    )
    # halves [0, 2) and [2, 4): modes 0..5 against 0,1,2,9,8,5
    assert noise_floor(dense) == 2
    assert noise_floor(dense, tie_break="largest") == 2  # 9 wins the tie: still 2
    pruned = np.array(
        [
            [7, 7, 7, 7, 7, 7],  # first-half seeds: not used against dense
            [7, 7, 7, 7, 7, 7],
            [0, 1, 2, 3, 4, 7],
            [0, 1, 2, 3, 4, 7],
        ]
    )
    assert half_pie_count(dense, pruned) == 1
    # an odd last model is left out of both halves
    assert noise_floor(np.vstack([dense, [[6] * 6]])) == 2
    with pytest.raises(ValueError, match=">= 4 dense models"):
        noise_floor(dense[:3])
