"""Supervised contrastive loss (Khosla et al. 2020), study-reference.md §4.1.

Same loss as the authors' ``SupCon`` (a near-copy of SupContrast's
``SupConLoss`` with ``contrast_mode='all'``), written with ``logsumexp`` and
with explicit input checks instead of NaN on bad input.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["supcon_loss"]

# A feature row with a smaller norm than this is treated as zero.
_ZERO_NORM = 1e-12


def supcon_loss(
    features: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float = 0.5,
    base_temperature: float = 0.07,
) -> Tensor:
    """SupCon loss over ``features`` of shape (N, V, D), rows L2-normalised.

    Every one of the N * V views is an anchor and every other view is in its
    contrast set (self excluded). The positives of an anchor are the other
    views with the same label; with ``labels`` None they are the other views
    of the same sample, which is SimCLR's NT-Xent. With
    ``log p_ij = s_ij - log sum_{a != i} exp(s_ia)`` and
    ``s_ij = z_i . z_j / temperature``, the loss is the mean over anchors of
    ``-(temperature / base_temperature) * mean_{j in P(i)} log p_ij``.

    Anchors without a positive (possible only when V = 1) are left out of the
    mean (SupContrast would count them as 0); if no anchor has one, the loss
    is undefined and a ValueError is raised. Features are not normalised
    here, but zero or non-finite rows raise a ValueError rather than giving a
    meaningless loss or NaN. Half-precision features are computed in float32.

    Args:
        features: (N, V, D) projections, N samples with V views each.
        labels: (N,) class labels, or None for the self-supervised case.
        temperature: T in the logits ``z_i . z_j / T``; must be > 0.
        base_temperature: T_base of the loss scale T / T_base; must be > 0.

    Returns:
        The scalar loss.
    """
    if temperature <= 0 or base_temperature <= 0:
        raise ValueError(
            "temperature and base_temperature must be > 0, got "
            f"{temperature} and {base_temperature}"
        )
    if features.ndim != 3:
        raise ValueError(
            f"features must be (N, V, D), got shape {tuple(features.shape)}"
        )
    n, v, _ = features.shape
    if labels is not None and (labels.ndim != 1 or labels.shape[0] != n):
        raise ValueError(
            f"labels must be of shape ({n},) to match features, "
            f"got {tuple(labels.shape)}"
        )
    if labels is None and v < 2:
        raise ValueError("without labels an anchor's positives are its other views")

    # View-major stacking as in SupContrast: anchor a = view * N + sample.
    z = features.transpose(0, 1).reshape(n * v, -1)
    z = z.to(torch.promote_types(z.dtype, torch.float32))
    norms = torch.linalg.vector_norm(z, dim=1)
    bad = ~((norms >= _ZERO_NORM) & torch.isfinite(norms))
    if bad.any():  # the one host sync of this function
        zero = int((norms < _ZERO_NORM).sum())
        nonfinite = int(bad.sum()) - zero
        detail = f" and {nonfinite} a non-finite norm" if nonfinite else ""
        raise ValueError(
            f"{zero} of {n * v} feature rows have zero norm (< {_ZERO_NORM:g})"
            f"{detail}; expected L2-normalised rows"
        )

    ids = torch.arange(n, device=z.device) if labels is None else labels.to(z.device)
    ids = ids.repeat(v)
    self_mask = torch.eye(n * v, dtype=torch.bool, device=z.device)
    positive = (ids[:, None] == ids[None, :]) & ~self_mask

    # Under autocast the matmul would run in bf16 (loss off by ~3e-4 and its
    # gradient by ~5e-3 relative at batch 1024): logits stay in float32.
    with torch.autocast(z.device.type, enabled=False):
        logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
        # logsumexp subtracts the row max internally, so this is stable.
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    # where, not multiply: the diagonal of log_prob is -inf and 0 * -inf = NaN.
    sum_log_prob_pos = torch.where(positive, log_prob, 0.0).sum(dim=1)
    n_pos = positive.sum(dim=1)
    per_anchor = (
        -(temperature / base_temperature) * sum_log_prob_pos / n_pos.clamp(min=1)
    )

    if v >= 2:
        # Every anchor has its other views as positives; no data-dependent check.
        return per_anchor.mean()
    has_pos = n_pos > 0
    n_anchors = has_pos.sum()
    if not bool(n_anchors):
        raise ValueError(
            "no anchor has a positive: with one view per sample, every label is "
            "unique in this batch"
        )
    return (per_anchor * has_pos).sum() / n_anchors
