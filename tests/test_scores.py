"""Q-Score, Z-Score and L1 (study-reference.md §7) on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prunelens.scores import population_scores, qscore, summarise


@pytest.mark.parametrize(
    ("rep", "z", "l1"),
    [
        # u = [1,0,0,0]: mean 1/4, std sqrt(3)/4, max - mean = 3/4.
        ([1.0, 0.0, 0.0, 0.0], math.sqrt(3), 1.0),
        # u = [0.6, 0.8]: mean 0.7, std 0.1, max - mean = 0.1.
        ([3.0, 4.0], 1.0, 1.4),
        # u = [a,a,0,0] with a = 1/sqrt(2): mean a/2, std a/2, max - mean = a/2.
        ([2.0, 2.0, 0.0, 0.0], 1.0, math.sqrt(2)),
    ],
)
def test_qscore_hand_computed(rep: list[float], z: float, l1: float) -> None:
    s = qscore(np.array([rep]))
    assert s.z[0] == pytest.approx(z, rel=1e-12)
    assert s.l1[0] == pytest.approx(l1, rel=1e-12)
    assert s.q[0] == pytest.approx(z / l1, rel=1e-12)
    assert not s.degenerate[0]
    assert s.q.dtype == np.float64


def test_qscore_rows_are_independent() -> None:
    rows = np.array([[1.0, 0.0, 0.0, 0.0], [3.0, 4.0, 0.0, 0.0]])
    both = qscore(rows)
    for i in range(2):
        alone = qscore(rows[i : i + 1])
        assert both.q[i] == pytest.approx(alone.q[0], rel=1e-15)


def test_scores_are_invariant_to_positive_scale() -> None:
    rng = np.random.default_rng(0)
    rep = np.abs(rng.normal(size=(50, 128))).astype(np.float32)
    base = qscore(rep)
    for scale in (1e-6, 0.3, 7.0, 1e6):
        scaled = qscore(rep * scale)
        np.testing.assert_allclose(scaled.z, base.z, rtol=1e-5)
        np.testing.assert_allclose(scaled.l1, base.l1, rtol=1e-5)
        np.testing.assert_allclose(scaled.q, base.q, rtol=1e-5)


def test_degenerate_rows_are_flagged_and_nan() -> None:
    rep = np.array(
        [
            [0.0, 0.0, 0.0, 0.0],  # zero norm
            [5.0, 5.0, 5.0, 5.0],  # zero spread
            [0.1, 0.1, 0.1, 0.1],  # zero spread, inexact in binary
            [1.0, 0.0, 0.0, 0.0],
        ]
    )
    with np.errstate(all="raise"):  # the guard must not rely on silenced warnings
        s = qscore(rep)
    np.testing.assert_array_equal(s.degenerate, [True, True, True, False])
    for values in (s.q, s.z, s.l1):
        assert np.isnan(values[:3]).all()
        assert np.isfinite(values[3])
    assert s.q[3] == pytest.approx(math.sqrt(3))


def test_qscore_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2-D"):
        qscore(np.ones(4))
    with pytest.raises(ValueError, match="NaN or inf"):
        qscore(np.array([[1.0, np.nan]]))


def test_population_mean_of_per_model_scores() -> None:
    rng = np.random.default_rng(1)
    reps = [np.abs(rng.normal(size=(20, 16))) for _ in range(3)]
    pop = population_scores(reps)
    per_model = [qscore(r) for r in reps]
    np.testing.assert_allclose(pop.q, np.mean([s.q for s in per_model], axis=0))
    np.testing.assert_allclose(pop.z, np.mean([s.z for s in per_model], axis=0))
    np.testing.assert_allclose(pop.l1, np.mean([s.l1 for s in per_model], axis=0))
    np.testing.assert_array_equal(pop.n_degenerate, 0)
    assert pop.n_models == 3
    # Averaging scores is not scoring the averaged representation.
    assert not np.allclose(pop.q, qscore(np.mean(reps, axis=0)).q)


def test_population_excludes_degenerate_entries() -> None:
    a = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    b = np.array([[3.0, 4.0, 0.0, 0.0], [2.0, 2.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    pop = population_scores([a, b])
    qb = qscore(b).q
    # Example 0: both models valid; 1: only b; 2: neither.
    assert pop.q[0] == pytest.approx((qscore(a).q[0] + qb[0]) / 2)
    assert pop.q[1] == pytest.approx(qb[1])
    assert np.isnan(pop.q[2])
    assert np.isnan(pop.z[2])
    assert np.isnan(pop.l1[2])
    np.testing.assert_array_equal(pop.n_degenerate, [0, 1, 2])
    assert pop.n_degenerate.dtype == np.int64


def test_population_rejects_mismatched_models() -> None:
    with pytest.raises(ValueError, match="same examples"):
        population_scores([np.ones((3, 4)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="at least one"):
        population_scores([])


def test_summarise_finite_and_masked() -> None:
    values = np.array([1.0, 2.0, np.nan, 4.0, np.inf])
    mean, std, count = summarise(values)
    assert (mean, count) == (pytest.approx(7 / 3), 3)
    assert std == pytest.approx(np.std([1.0, 2.0, 4.0]))
    pie = np.array([True, False, True, True, True])
    assert summarise(values, pie) == (pytest.approx(2.5), pytest.approx(1.5), 2)
    assert summarise(values, ~pie) == (2.0, 0.0, 1)
    empty = summarise(values, np.zeros(5, dtype=bool))
    assert math.isnan(empty[0])
    assert math.isnan(empty[1])
    assert empty[2] == 0


def test_summarise_rejects_bad_mask() -> None:
    with pytest.raises(ValueError, match="boolean"):
        summarise(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="boolean"):
        summarise(np.ones(3), np.ones(2, dtype=bool))
