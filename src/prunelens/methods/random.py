"""Random: uniformly random unstructured masks, the control for magnitude.

Per model, exactly round(amount x its remaining entries) of its unpruned
entries over all targets together (global, as One-Shot's paper scope) are
pruned, chosen uniformly at random and independently of the weights' values.
Model k draws from its own generator seeded from ``seeds[k]``: masks differ
by seed, and the same seed gives the same mask on any stack size. The
generator's seed is a hash of the model's seed and this method's name, so
its draws share nothing with the stream that initialised the model
(``torch.manual_seed(seed)``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from prunelens.pruning import Target
from prunelens.stacked import edit_masks, split_like

__all__ = ["RandomMasks", "mask_generator"]


def mask_generator(seed: int) -> torch.Generator:
    """The CPU generator of model ``seed``'s random mask."""
    digest = hashlib.sha256(f"prunelens.random:{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


@dataclass(frozen=True)
class RandomMasks:
    @property
    def per_tensor(self) -> bool:
        return False  # global: the count is over all targets together

    def prune(
        self,
        targets: Sequence[Target],
        n_models: int,
        amount: float,
        *,
        seeds: Sequence[int],
    ) -> None:
        if len(seeds) != n_models:
            raise ValueError(f"need one seed per model: {n_models} models, {seeds}")

        def edit(k: int, _: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
            new = torch.cat([m.reshape(-1) for m in masks])
            alive = (new == 1).nonzero().squeeze(1)
            count = round(amount * alive.numel())
            # drawn on the CPU, so a mask is the same on every device
            pick = torch.randperm(alive.numel(), generator=mask_generator(seeds[k]))
            new[alive[pick[:count].to(alive.device)]] = 0
            return split_like(new, masks)

        edit_masks(targets, n_models, edit)
