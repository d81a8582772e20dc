"""Q-Score, Z-Score and L1 sparsity of representations (Kalibhat et al. 2022).

Follows study-reference.md §7. For one model and one example with representation
h (D features):

    u  = h / ||h||_2
    Z  = (max_j u_j - mean_j u_j) / std_j u_j      (population std, over features)
    L1 = ||u||_1
    Q  = Z / L1

All statistics are per example over the feature dimension, never over the dataset.
The population score of an example is the mean over models of its per-model scores
(not the score of the mean representation), as in the authors' code.

The authors do not guard degenerate representations (zero vector, or all features
equal, possible after ReLU at extreme sparsity), where Z or L1 is undefined. Here
such rows get NaN scores and are flagged, so callers can count and report them;
population means skip them and return how many were skipped per example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PopulationScores",
    "QScores",
    "population_scores",
    "qscore",
    "summarise",
]

# u has unit L2 norm, so an absolute tolerance on its std is scale-free. Rows whose
# spread is at the level of float64 round-off of a constant vector count as
# constant: their Z would be round-off noise divided by round-off noise.
_STD_TOL = 1e-12


@dataclass(frozen=True)
class QScores:
    """Per-example scores of one model; NaN where ``degenerate``."""

    q: np.ndarray
    z: np.ndarray
    l1: np.ndarray
    degenerate: np.ndarray


@dataclass(frozen=True)
class PopulationScores:
    """Per-example means over models of the non-degenerate per-model scores.

    ``n_degenerate[i]`` is how many models were degenerate on example i (and so
    left out of its means); an example degenerate in all ``n_models`` is NaN.
    """

    q: np.ndarray
    z: np.ndarray
    l1: np.ndarray
    n_degenerate: np.ndarray
    n_models: int


def qscore(rep: np.ndarray) -> QScores:
    """Q, Z and L1 of each row of ``rep`` (N, D) for a single model.

    Rows with zero norm or zero spread over the features are flagged in
    ``degenerate`` and get NaN scores. Non-finite input raises ValueError, since
    it signals a broken model rather than a degenerate representation.
    """
    rep = np.asarray(rep, dtype=np.float64)
    if rep.ndim != 2 or rep.shape[1] == 0:
        raise ValueError(f"rep must be 2-D (N, D) with D >= 1, got shape {rep.shape}")
    if not np.isfinite(rep).all():
        raise ValueError("rep contains NaN or inf")
    norm = np.linalg.norm(rep, axis=1)
    zero_norm = norm == 0
    # Divide zero rows by 1 instead of 0 so no warnings fire; they are masked below.
    u = rep / np.where(zero_norm, 1.0, norm)[:, None]
    mean = u.mean(axis=1)
    std = u.std(axis=1)
    degenerate = zero_norm | (std <= _STD_TOL)
    safe_std = np.where(degenerate, 1.0, std)
    z = np.where(degenerate, np.nan, (u.max(axis=1) - mean) / safe_std)
    l1 = np.where(degenerate, np.nan, np.abs(u).sum(axis=1))
    # L1 >= L2 = 1 on valid rows; NaN / NaN on degenerate rows stays NaN silently.
    return QScores(q=z / l1, z=z, l1=l1, degenerate=degenerate)


def population_scores(reps: Sequence[np.ndarray]) -> PopulationScores:
    """Per-example mean over models of the per-model Q, Z and L1.

    ``reps`` holds one (N, D) representation per model, rows aligned on the same
    N examples. Degenerate (model, example) pairs are excluded from that example's
    mean; their count per example is returned in ``n_degenerate``.
    """
    if len(reps) == 0:
        raise ValueError("reps must hold at least one model")
    per_model = [qscore(r) for r in reps]
    n = per_model[0].q.shape[0]
    if any(s.q.shape[0] != n for s in per_model):
        shapes = [np.shape(r) for r in reps]
        raise ValueError(f"all models must score the same examples, got {shapes}")
    valid = ~np.stack([s.degenerate for s in per_model])
    n_valid = valid.sum(axis=0)

    def mean_over_models(values: list[np.ndarray]) -> np.ndarray:
        total = np.where(valid, np.stack(values), 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n_valid > 0, total / n_valid, np.nan)

    return PopulationScores(
        q=mean_over_models([s.q for s in per_model]),
        z=mean_over_models([s.z for s in per_model]),
        l1=mean_over_models([s.l1 for s in per_model]),
        n_degenerate=(len(per_model) - n_valid).astype(np.int64),
        n_models=len(per_model),
    )


def summarise(
    values: np.ndarray, mask: np.ndarray | None = None
) -> tuple[float, float, int]:
    """Mean, population std (ddof=0) and count of the finite ``values``.

    With a boolean ``mask`` (e.g. the PIE flags, or their negation) only the
    selected entries are used. An empty selection gives (nan, nan, 0).
    """
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_ or mask.shape != values.shape:
            raise ValueError(
                f"mask must be a boolean array of shape {values.shape}, "
                f"got {mask.dtype} {mask.shape}"
            )
        keep &= mask
    selected = values[keep]
    if selected.size == 0:
        return float("nan"), float("nan"), 0
    return float(selected.mean()), float(selected.std()), int(selected.size)
