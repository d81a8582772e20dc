"""Magnitude pruning on top of ``torch.nn.utils.prune`` (study-reference §5).

* GMP: Zhu & Gupta's cubic schedule, fired as the authors' code does
  (global step counted from 1, fire when ``step % frequency == 0`` between
  ``begin`` and ``end``), each event removing a fraction of the *remaining*
  weights: layer-wise by default (as the authors), global as an option.
* One-Shot: one global L1 prune of every conv weight and linear weight/bias.
* Per-tensor accounting: :func:`layer_sparsity`, each prunable tensor's
  target (where the method sets one per tensor) and measured sparsity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils import prune

Scope = Literal["layerwise", "global"]
Target = tuple[nn.Module, str]

__all__ = [
    "GMP",
    "GMPSchedule",
    "gmp_fractions",
    "gmp_targets",
    "install_masks",
    "layer_sparsity",
    "make_permanent",
    "measured_sparsity",
    "prune_global",
    "prune_targets",
    "tensor_names",
]


def prune_targets(
    model: nn.Module, *, convs: bool = True, linears: bool = True
) -> list[Target]:
    """(module, tensor name) pairs that pruning may touch; BN is never pruned.

    Linear biases are pruned too, as in the authors' code (§5.2, §5.3).
    """
    out: list[Target] = []
    for m in model.modules():
        if convs and isinstance(m, nn.Conv2d):
            out.append((m, "weight"))
        elif linears and isinstance(m, nn.Linear):
            out.append((m, "weight"))
            if m.bias is not None:
                out.append((m, "bias"))
    return out


def gmp_targets(final: float, begin: int, end: int, frequency: int) -> list[float]:
    """Cumulative targets s_k at the schedule points begin + k*frequency <= end."""
    if not 0 <= final < 1:
        raise ValueError(f"GMP final sparsity must be in [0, 1), got {final}")
    if not 0 < begin <= end or frequency < 1:
        raise ValueError(
            f"GMP needs 0 < begin <= end and frequency >= 1, got "
            f"begin={begin} end={end} frequency={frequency}"
        )
    n = (end - begin) // frequency
    span = max(end - begin, 1)
    return [final * (1 - (1 - k * frequency / span) ** 3) for k in range(n + 1)]


def gmp_fractions(targets: Sequence[float]) -> list[float]:
    """Per-event fractions of the remaining weights: g_k = (s_k-s_{k-1})/(1-s_{k-1})."""
    out = [0.0]
    for prev, cur in zip(targets, targets[1:], strict=False):
        out.append((cur - prev) / (1 - prev))
    return out


@dataclass(frozen=True)
class GMPSchedule:
    final: float
    begin: int
    end: int
    frequency: int
    scope: Scope = "layerwise"

    def fractions(self) -> list[float]:
        return gmp_fractions(
            gmp_targets(self.final, self.begin, self.end, self.frequency)
        )

    def firing_steps(self) -> list[int]:
        """Steps (1-based) at which an event fires, given enough fractions."""
        n = len(self.fractions())
        first = -(-self.begin // self.frequency) * self.frequency
        steps = range(first, self.end + 1, self.frequency)
        return list(steps)[:n]


@dataclass
class GMP:
    """Stateful GMP driver: call ``step(global_step)`` before each batch."""

    schedule: GMPSchedule
    targets: list[Target]
    events: int = 0
    _fractions: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._fractions = self.schedule.fractions()
        install_masks(self.targets)

    def step(self, global_step: int) -> bool:
        s = self.schedule
        active = s.begin <= global_step <= s.end and global_step % s.frequency == 0
        if not active or self.events >= len(self._fractions):
            return False
        amount = self._fractions[self.events]
        self.events += 1
        if amount > 0:
            self.prune(amount)
        return True

    def prune(self, amount: float) -> None:
        """One event: remove ``amount`` of the remaining weights."""
        if self.schedule.scope == "global":
            prune_global(self.targets, amount)
        else:
            for module, name in self.targets:
                prune.l1_unstructured(module, name, amount=amount)

    def state_dict(self) -> dict[str, Any]:
        # An event scores ``module.<name>``, the masked weight torch's pruning
        # hook computed at the last forward pass (before the last optimiser
        # step), not the current one; a resumed run needs those same tensors
        # or an event at its first step would score the install-time weights.
        scored = [getattr(m, n).detach().clone() for m, n in self.targets]
        return {"events": self.events, "scored": scored}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.events = int(state["events"])
        for (module, name), w in zip(self.targets, state["scored"], strict=True):
            setattr(module, name, w.to(getattr(module, f"{name}_orig").device))


def install_masks(targets: Iterable[Target]) -> None:
    """Install all-ones masks, so checkpoints always hold ``*_orig``/``*_mask``."""
    for module, name in targets:
        if not prune.is_pruned(module) or not hasattr(module, f"{name}_mask"):
            prune.identity(module, name)


@torch.no_grad()
def prune_global(targets: Sequence[Target], amount: float) -> None:
    """Global L1 pruning of ``amount`` of the remaining entries over all targets.

    The same rule as ``prune.global_unstructured`` with ``L1Unstructured``
    (the k = round(amount x remaining) smallest |w| among unpruned entries),
    computed on logical (NCHW) order so that it also works for channels_last
    weights, whose flat ``view`` the torch helper needs and cannot get.
    """
    scores = torch.cat([getattr(m, n).abs().reshape(-1) for m, n in targets])
    old = torch.cat(
        [
            getattr(m, f"{n}_mask").reshape(-1)
            if hasattr(m, f"{n}_mask")
            else torch.ones_like(getattr(m, n)).reshape(-1)
            for m, n in targets
        ]
    )
    remaining = (old == 1).nonzero().squeeze(1)
    k = round(amount * remaining.numel())
    new = old.clone()
    if k:
        drop = torch.topk(scores[remaining], k, largest=False).indices
        new[remaining[drop]] = 0
    start = 0
    for module, name in targets:
        shape = getattr(module, name).shape
        size = shape.numel()
        prune.custom_from_mask(module, name, mask=new[start : start + size].view(shape))
        start += size


def make_permanent(model: nn.Module) -> None:
    """Bake masks into the weights and drop the reparametrisation."""
    for m in model.modules():
        for hook in list(m._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(m, hook._tensor_name)


@torch.no_grad()
def measured_sparsity(model: nn.Module) -> float:
    """Zeros over prunable weights (conv + linear weights, biases not counted).

    The authors' accounting (§5.2). Reads the effective weight, so it works
    with masks installed or baked in.
    """
    zeros = total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            w = m.weight  # the masked weight while masks are installed
            zeros += int((w == 0).sum())
            total += w.numel()
    return zeros / total if total else 0.0


def _named(model: nn.Module, **which: bool) -> list[tuple[str, nn.Module, str]]:
    """(state_dict name, module, tensor name) of each of ``prune_targets``."""
    names = {id(m): n for n, m in model.named_modules()}
    return [
        (f"{names[id(m)]}.{n}" if names[id(m)] else n, m, n)
        for m, n in prune_targets(model, **which)
    ]


def tensor_names(model: nn.Module, **which: bool) -> list[str]:
    """The ``prune_targets`` of ``model`` (``which``: its convs/linears
    switches) by their names in ``model.state_dict()`` once masks are baked in,
    e.g. ``blocks.0.conv1.weight``."""
    return [name for name, _, _ in _named(model, **which)]


@torch.no_grad()
def layer_sparsity(
    model: nn.Module, targets: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    """Per prunable tensor of ``model`` (every conv weight, linear weight and
    bias, in module order): ``tensor`` (its state_dict name), ``numel``,
    ``target`` and ``measured`` (zeros / numel of the effective weight, so
    masks may be installed or baked in).

    ``targets``: the sparsity a method aimed each tensor at, by name; a tensor
    not in it gets ``target`` None: no per-tensor target (global pruning,
    where only the total is set, or no pruning at all).
    """
    targets = targets or {}
    unknown = sorted(set(targets) - set(tensor_names(model)))
    if unknown:
        raise ValueError(f"targets name no prunable tensor: {', '.join(unknown)}")
    out = []
    for name, module, attr in _named(model):
        w = getattr(module, attr)  # the masked tensor while masks are installed
        out.append(
            {
                "tensor": name,
                "numel": w.numel(),
                "target": targets.get(name),
                "measured": int((w == 0).sum()) / w.numel(),
            }
        )
    return out
