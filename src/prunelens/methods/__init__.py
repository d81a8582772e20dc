"""Post-training pruning methods: one interface, one registry, one module each.

A method prunes a stack of ``n_models`` models (``n_models=1``: one plain
model) in place, through ``torch.nn.utils.prune`` masks on ``targets``, the
(module, tensor name) pairs of :func:`prunelens.pruning.prune_targets` or
:func:`prunelens.stacked.stacked_prune_targets`. ``amount`` is the fraction
of each model's remaining entries to prune and ``seeds`` the models' seeds,
for methods that draw random numbers. Methods are frozen dataclasses whose
fields are their options: :func:`make_pruner` builds one from a name and a
mapping of options (checked), and :func:`pruner_key` is what a resume
fingerprint records. Adding a method: README, "Adding a pruning method".

Iterative magnitude pruning (:mod:`prunelens.methods.imp`) prunes during
training, not after it, so it is a training stage
(:func:`prunelens.train.train_imp`) built on the same mask primitives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from prunelens.methods.oneshot import OneShot
from prunelens.methods.random import RandomMasks
from prunelens.pruning import Target

__all__ = ["PRUNERS", "PruningMethod", "make_pruner", "pruner_key"]


class PruningMethod(Protocol):
    """What the One-Shot fine-tune stage calls on the dense models."""

    @property
    def per_tensor(self) -> bool:
        """Whether ``amount`` applies to each tensor on its own, so that each
        tensor's target is the cell's sparsity (metrics.json ``layers``), or
        to all targets together (no per-tensor target)."""
        ...

    def prune(
        self,
        targets: Sequence[Target],
        n_models: int,
        amount: float,
        *,
        seeds: Sequence[int],
    ) -> None: ...


# name (the schedule name in paths and metadata) -> the method's class
PRUNERS: dict[str, type[PruningMethod]] = {
    "oneshot": OneShot,
    "random": RandomMasks,
}


def make_pruner(name: str, options: Mapping[str, Any] | None = None) -> PruningMethod:
    """The method registered as ``name``, with ``options`` (its fields)."""
    if name not in PRUNERS:
        raise ValueError(
            f"unknown pruning method {name!r}; known: {', '.join(sorted(PRUNERS))}"
        )
    cls = PRUNERS[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options or {}) - fields)
    if unknown:
        raise ValueError(
            f"pruning method {name!r} has no option {', '.join(unknown)}; "
            f"its options: {', '.join(sorted(fields)) or 'none'}"
        )
    return cls(**(options or {}))


def pruner_key(name: str, pruner: PruningMethod) -> dict[str, Any]:
    """The method's name and options, for a resume fingerprint."""
    return {"name": name, **dataclasses.asdict(pruner)}
