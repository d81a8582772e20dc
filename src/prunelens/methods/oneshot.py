"""One-Shot: magnitude pruning of trained models (the paper's, study-reference §5.3).

``scope="global"`` (the paper): per model, the smallest |w| over all its
targets together, so layers end with different sparsities; for one model
exactly :func:`prunelens.pruning.prune_global`. ``scope="layerwise"``: per
model and tensor, exactly round(amount x that tensor's remaining entries).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

from prunelens.pruning import Scope, Target
from prunelens.stacked import prune_stacked

__all__ = ["OneShot"]


@dataclass(frozen=True)
class OneShot:
    scope: Scope = "global"

    def __post_init__(self) -> None:
        if self.scope not in get_args(Scope):
            raise ValueError(
                f"oneshot.scope must be one of {', '.join(get_args(Scope))}, "
                f"got {self.scope!r}"
            )

    @property
    def per_tensor(self) -> bool:
        return self.scope == "layerwise"

    def prune(
        self,
        targets: Sequence[Target],
        n_models: int,
        amount: float,
        *,
        seeds: Sequence[int] = (),
    ) -> None:
        prune_stacked(targets, n_models, amount, self.scope)
