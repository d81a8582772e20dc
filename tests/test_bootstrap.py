"""The bootstrap over models: weighted votes, BCa against SciPy, reruns."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from prunelens.bootstrap import Models, View, bootstrap, point
from prunelens.pie import modal_labels


@pytest.mark.parametrize("tie_break", ["smallest", "largest"])
def test_weighted_votes_equal_the_vote_of_the_repeated_models(tie_break):
    """A resample as weights equals the resample as an explicit population."""
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 4, (7, 300))
    data = {"p": Models(7, preds=preds, n_classes=4)}
    weights = rng.multinomial(7, np.full(7, 1 / 7), 5)
    modes = View(data, {"p": weights}, tie_break).modes("p")
    for w, got in zip(weights, modes, strict=True):
        repeated = np.repeat(preds, w, axis=0)
        want, _ = modal_labels(repeated, 4, tie_break)
        np.testing.assert_array_equal(got, want)


def test_point_estimate_uses_every_model_once():
    preds = np.array([[0, 1, 2], [0, 1, 1], [1, 1, 2]])
    acc = np.array([0.5, 0.6, 0.9])
    data = {"a": Models(3, preds=preds, acc=acc), "b": Models(3, preds=preds[::-1])}
    assert point(lambda v: v.mean("a", "acc"), data, ["a"]) == pytest.approx(2 / 3)
    # modal labels: [0, 1, 2] for both populations, so no PIEs
    assert point(lambda v: v.pie_count("a", "b"), data, ["a", "b"]) == 0


def test_weighted_per_example_means_skip_nan():
    q = np.array([[1.0, np.nan], [3.0, np.nan], [5.0, 2.0]])
    view = View({"q": Models(3, q=q)}, {"q": np.array([[2, 1, 0], [0, 0, 3]])})
    np.testing.assert_allclose(
        view.per_example("q", "q"), [[5 / 3, np.nan], [5.0, 2.0]], equal_nan=True
    )


def _scipy_interval(samples, statistic, n):
    res = stats.bootstrap(
        samples,
        statistic,
        n_resamples=n,
        method="BCa",
        vectorized=True,
        random_state=np.random.default_rng(1),
    )
    return res.confidence_interval.low, res.confidence_interval.high


@pytest.mark.parametrize("two_samples", [False, True])
def test_bca_interval_agrees_with_scipy(two_samples):
    """An independent implementation as the oracle: SciPy's BCa bootstrap of
    a mean (and a difference of two means) over the same models."""
    rng = np.random.default_rng(3)
    a, b = rng.gamma(2.0, 1.0, 25), rng.gamma(3.0, 1.0, 18)
    data = {"a": Models(len(a), acc=a), "b": Models(len(b), acc=b)}
    n = 20_000
    if two_samples:

        def ours(v):
            return v.mean("a", "acc") - v.mean("b", "acc")

        def theirs(x, y, axis):
            return x.mean(axis=axis) - y.mean(axis=axis)

        keys, samples = ["a", "b"], (a, b)
    else:

        def ours(v):
            return v.mean("a", "acc")

        def theirs(x, axis):
            return x.mean(axis=axis)

        keys, samples = ["a"], (a,)
    iv = bootstrap(
        {"x": (ours, keys)}, data, n_resamples=n, confidence=0.95, random_state=0
    )["x"]
    low, high = _scipy_interval(samples, theirs, n)
    width = high - low
    assert iv.method == "bca"
    # Monte-Carlo error of two independent 20k-resample runs: ~1 % of the width
    assert abs(iv.low - low) < 0.03 * width
    assert abs(iv.high - high) < 0.03 * width


def test_reruns_are_identical_and_populations_draw_independently():
    rng = np.random.default_rng(0)
    data = {k: Models(6, acc=rng.random(6)) for k in ("a", "b", "c")}

    def stat(v):
        return v.mean("a", "acc")

    kw = {"n_resamples": 1000, "confidence": 0.9, "random_state": 7}
    first = bootstrap({"s": (stat, ["a"])}, data, **kw)["s"]
    assert bootstrap({"s": (stat, ["a"])}, data, **kw)["s"] == first
    # a second statistic reading other populations changes nothing for "a"
    both = bootstrap(
        {"s": (stat, ["a"]), "t": (lambda v: v.mean("c", "acc"), ["b", "c"])},
        data,
        **kw,
    )
    assert both["s"] == first
    other = bootstrap({"s": (stat, ["a"])}, data, **{**kw, "random_state": 8})["s"]
    assert other != first


def test_a_constant_statistic_has_a_zero_width_interval():
    data = {"a": Models(4, acc=np.full(4, 0.5))}
    iv = bootstrap(
        {"s": (lambda v: v.mean("a", "acc"), ["a"])},
        data,
        n_resamples=1000,
        confidence=0.95,
        random_state=0,
    )["s"]
    assert (iv.estimate, iv.low, iv.high) == (0.5, 0.5, 0.5)
