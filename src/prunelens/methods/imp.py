"""IMP: iterative magnitude pruning with weight rewinding (lottery tickets).

The procedure of Frankle et al. that open_lth implements: train dense,
keeping the model state at the end of epoch ``rewind_epoch`` (0: at
initialisation); then rounds of (prune ``fraction`` of the remaining
weights by global magnitude per model; rewind the whole model state to the
kept one, masks kept; retrain from the rewind epoch to the end of the
schedule) until the target sparsity. The stage drivers are
:func:`prunelens.train.train_imp` (Sup) and
:func:`prunelens.train.pretrain_imp` (SCL, SimCLR: over the contrastive
pre-training), one round loop (``prunelens.train._imp_rounds``); this
module holds its pure parts.

* What is pruned: conv and linear *weights*, not biases (open_lth's
  prunable layers), so that a round's count is exact in the sparsity
  accounting of :func:`prunelens.pruning.measured_sparsity`; in
  contrastive pre-training the encoder's convolution weights only (the
  projection head is never pruned).
* What is rewound: every parameter and buffer (BatchNorm's affine
  parameters and running statistics included), as open_lth reloads the
  whole state dict of the rewind step; the optimiser restarts from zero
  momentum, and data order and augmentation restart from the generators'
  states at the rewind point, so every round replays the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from prunelens.pruning import Target
from prunelens.stacked import drop_smallest, edit_masks, refresh_weights
from prunelens.study import _EPS, imp_schedule

__all__ = ["capture", "imp_schedule", "prune_to", "rewind", "rounds_to"]


def prune_to(targets: Sequence[Target], n_models: int, sparsity: float) -> None:
    """Per model, globally over ``targets``: prune the smallest-|w| unpruned
    entries until exactly round(sparsity x N) of its N entries are pruned.

    Scores are ``weight_orig x mask`` (refreshed first), the trained weights.
    """
    refresh_weights_if_masked(targets)

    def edit(_: int, ws: list[Tensor], ms: list[Tensor]) -> list[Tensor]:
        total = sum(m.numel() for m in ms)
        pruned = total - sum(int((m == 1).sum()) for m in ms)
        want = round(sparsity * total)
        if want < pruned:
            raise ValueError(
                f"IMP round to sparsity {sparsity} but {pruned}/{total} are "
                "already pruned"
            )
        return drop_smallest(ws, ms, want - pruned)

    edit_masks(targets, n_models, edit)


def refresh_weights_if_masked(targets: Sequence[Target]) -> None:
    # After training, ``module.weight`` is the hook's value from the last
    # forward pass, before the last optimiser step: score the current one.
    masked = [(m, n) for m, n in targets if hasattr(m, f"{n}_mask")]
    refresh_weights(masked)


def capture(net: nn.Module, gens: Sequence[torch.Generator]) -> dict[str, Any]:
    """The rewind point: a copy of the whole model state and the generators'."""
    return {
        "model": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "generators": [g.get_state() for g in gens],
    }


@torch.no_grad()
def rewind(
    net: nn.Module,
    targets: Sequence[Target],
    gens: Sequence[torch.Generator],
    point: dict[str, Any],
) -> None:
    """Every tensor of ``net`` back to ``point`` except the masks; the
    generators back to theirs."""
    now = net.state_dict()
    net.load_state_dict(
        {k: now[k] if k.endswith("_mask") else point["model"][k] for k in now}
    )
    refresh_weights(targets)
    for g, s in zip(gens, point["generators"], strict=True):
        g.set_state(s.cpu())


def rounds_to(schedule: Sequence[float], sparsity: float) -> int:
    """The round (1-based; 0 is the dense training) that ends at ``sparsity``."""
    for i, s in enumerate(schedule):
        if math.isclose(s, sparsity, rel_tol=0, abs_tol=_EPS):
            return i + 1
    raise ValueError(f"sparsity {sparsity} is not in the IMP schedule {schedule}")
