"""Bootstrap over models: confidence intervals of population-level quantities.

A *population* is the set of models trained for one cell (one per seed). A
quantity (a PIE count, a mean accuracy, a difference of two, a ratio ...) is
a function of one or more populations. Its bootstrap distribution comes from
resampling each population's models with replacement, independently, and
recomputing the quantity.

Resampling is expressed as *model weights*: a resample of a population of M
models is a vector of M non-negative integer counts summing to M (multinomial),
the point estimate is all ones and a jackknife replicate is all ones but one
zero. Every statistic is written once against :class:`View`, which turns
weights into weighted votes and means, vectorised over a batch of resamples;
so the point estimate, the bootstrap and the jackknife share one code path.

Each population draws from its own random stream, seeded by
``(random_state, crc32(key))``: a rerun gives identical resamples, and adding
a population to a grid does not change the others' resamples.

Intervals are BCa (bias-corrected and accelerated; Efron & Tibshirani 1993,
ch. 14), because PIE counts from resampled populations are biased upwards (a
resample repeats models, so its vote is noisier); BCa's bias correction
accounts for that. Where BCa is undefined (every resample on one side of the
estimate, or a non-finite jackknife), the percentile interval is used and
the row says so.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Literal

import numpy as np

__all__ = [
    "Interval",
    "Models",
    "View",
    "bootstrap",
    "point",
]

TieBreak = Literal["smallest", "largest"]
Statistic = Callable[["View"], np.ndarray]


@dataclass(frozen=True)
class Models:
    """What a statistic may read of one population, models on axis 0.

    ``preds`` (M, N) predicted classes; ``acc`` (M,) test accuracy;
    ``q`` (M, N) per-model Q-Score (NaN where degenerate); ``pd`` (M, N)
    per-model prediction depth. Only what the statistics use need be given.
    """

    n_models: int
    preds: np.ndarray | None = None
    acc: np.ndarray | None = None
    q: np.ndarray | None = None
    pd: np.ndarray | None = None
    # None: one more than the largest prediction (any larger number of
    # classes gives the same modal labels)
    n_classes: int | None = None
    _onehot: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.n_classes is None and self.preds is not None:
            c = int(self.preds.max()) + 1 if self.preds.size else 1
            object.__setattr__(self, "n_classes", c)

    def onehot(self) -> np.ndarray:
        """(M, N * C) float32 one-hot votes, built once."""
        if "v" not in self._onehot:
            if self.preds is None:
                raise ValueError("this population has no predictions")
            m, n = self.preds.shape
            out = np.zeros((m, n, self.n_classes), np.float32)
            np.put_along_axis(out, self.preds[:, :, None].astype(np.int64), 1.0, axis=2)
            self._onehot["v"] = out.reshape(m, n * self.n_classes)
        return self._onehot["v"]


class View:
    """Population quantities under a batch of model weights.

    ``weights[key]`` is (b, M) or (1, M) (broadcast against the batch).
    Results are arrays whose leading axis is the batch.
    """

    def __init__(
        self,
        data: Mapping[str, Models],
        weights: Mapping[str, np.ndarray],
        tie_break: TieBreak = "smallest",
    ) -> None:
        self.data, self.weights, self.tie_break = data, weights, tie_break
        self._modes: dict[str, np.ndarray] = {}

    def _w(self, key: str) -> np.ndarray:
        return self.weights[key].astype(np.float32)

    def modes(self, key: str) -> np.ndarray:
        """(b, N) modal label of each example under the weighted vote."""
        if key not in self._modes:
            models = self.data[key]
            votes = self._w(key) @ models.onehot()
            votes = votes.reshape(len(votes), -1, models.n_classes)
            if self.tie_break == "smallest":
                mode = votes.argmax(axis=2)
            else:
                mode = models.n_classes - 1 - votes[:, :, ::-1].argmax(axis=2)
            self._modes[key] = mode.astype(np.int16)
        return self._modes[key]

    def pies(self, dense: str, pruned: str) -> np.ndarray:
        """(b, N) PIE flags: the two populations' modal labels differ."""
        return self.modes(dense) != self.modes(pruned)

    def pie_count(self, dense: str, pruned: str) -> np.ndarray:
        return self.pies(dense, pruned).sum(axis=1).astype(np.float64)

    def mean(self, key: str, what: Literal["acc"]) -> np.ndarray:
        """(b,) weighted mean over models of a per-model scalar."""
        values = getattr(self.data[key], what)
        w = self._w(key).astype(np.float64)
        return (w @ values) / w.sum(axis=1)

    def per_example(self, key: str, what: Literal["q", "pd"]) -> np.ndarray:
        """(b, N) weighted mean over models per example; NaN values (a
        degenerate Q) are left out of that example's mean."""
        values = np.asarray(getattr(self.data[key], what), np.float64)
        finite = np.isfinite(values)
        w = self._w(key).astype(np.float64)
        total = w @ np.where(finite, values, 0.0)
        count = w @ finite
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / count, np.nan)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    method: str  # "bca" or "percentile" (BCa undefined for this statistic)


def _weights_point(
    data: Mapping[str, Models], keys: Sequence[str]
) -> dict[str, np.ndarray]:
    return {k: np.ones((1, data[k].n_models)) for k in keys}


def point(
    statistic: Statistic,
    data: Mapping[str, Models],
    keys: Sequence[str],
    tie_break: TieBreak = "smallest",
) -> float:
    """The statistic on the populations as they are (every model once)."""
    return float(statistic(View(data, _weights_point(data, keys), tie_break))[0])


def _streams(keys: Sequence[str], random_state: int) -> dict[str, np.random.Generator]:
    return {
        k: np.random.default_rng([random_state, zlib.crc32(k.encode())]) for k in keys
    }


def bootstrap(
    statistics: Mapping[str, tuple[Statistic, Sequence[str]]],
    data: Mapping[str, Models],
    *,
    n_resamples: int,
    confidence: float,
    random_state: int,
    tie_break: TieBreak = "smallest",
    chunk: int = 200,
) -> dict[str, Interval]:
    """BCa intervals of several statistics on shared resamples.

    ``statistics`` maps a name to (statistic, the population keys it reads).
    All statistics see the same resamples of a population, drawn chunk by
    chunk from that population's own stream.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    # Point estimates first: a statistic may fix a choice on them (C5 picks
    # SCL's best schedule once, on the populations as they are).
    thetas = {
        name: point(stat, data, ks, tie_break)
        for name, (stat, ks) in statistics.items()
    }
    keys = sorted({k for _, ks in statistics.values() for k in ks})
    streams = _streams(keys, random_state)
    draws: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
    done = 0
    while done < n_resamples:
        b = min(chunk, n_resamples - done)
        weights = {
            k: streams[k].multinomial(
                data[k].n_models, np.full(data[k].n_models, 1 / data[k].n_models), b
            )
            for k in keys
        }
        view = View(data, weights, tie_break)
        for name, (stat, _) in statistics.items():
            draws[name].append(np.broadcast_to(stat(view), (b,)).astype(np.float64))
        done += b
    out = {}
    for name, (stat, ks) in statistics.items():
        out[name] = _interval(
            thetas[name],
            np.concatenate(draws[name]),
            [_jackknife(stat, data, ks, k, tie_break) for k in ks],
            confidence,
        )
    return out


def _jackknife(
    stat: Statistic,
    data: Mapping[str, Models],
    keys: Sequence[str],
    left_out: str,
    tie_break: TieBreak,
) -> np.ndarray:
    """The statistic with each model of ``left_out`` left out in turn."""
    weights = _weights_point(data, keys)
    m = data[left_out].n_models
    weights[left_out] = 1.0 - np.eye(m)
    return np.broadcast_to(stat(View(data, weights, tie_break)), (m,)).astype(
        np.float64
    )


def _interval(
    theta: float,
    draws: np.ndarray,
    jackknives: Sequence[np.ndarray],
    confidence: float,
) -> Interval:
    alpha = (1 - confidence) / 2
    finite = draws[np.isfinite(draws)]
    if not np.isfinite(theta) or len(finite) == 0:
        return Interval(theta, np.nan, np.nan, "percentile")

    def percentile(q_lo: float, q_hi: float, method: str) -> Interval:
        lo, hi = np.nanquantile(draws, [q_lo, q_hi])
        return Interval(theta, float(lo), float(hi), method)

    # Bias correction from the share of resamples below the estimate, ties
    # counted half (PIE counts are integers, so ties are common).
    share = (np.sum(draws < theta) + 0.5 * np.sum(draws == theta)) / len(draws)
    if not 0 < share < 1 or not all(np.isfinite(j).all() for j in jackknives):
        return percentile(alpha, 1 - alpha, "percentile")
    z0 = NormalDist().inv_cdf(share)
    # Acceleration, summed over every population's jackknife (as SciPy does
    # for multi-sample statistics).
    num = den = 0.0
    for jack in jackknives:
        n = len(jack)
        u = (n - 1) * (jack.mean() - jack)
        num += float((u**3).sum()) / n**3
        den += float((u**2).sum()) / n**2
    a = num / (6 * den**1.5) if den > 0 else 0.0
    nd = NormalDist()
    qs = []
    for z_alpha in (nd.inv_cdf(alpha), nd.inv_cdf(1 - alpha)):
        z = z0 + z_alpha
        qs.append(nd.cdf(z0 + z / (1 - a * z)))
    return percentile(qs[0], qs[1], "bca")
