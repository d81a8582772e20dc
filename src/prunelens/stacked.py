"""K models of one configuration trained together, as one grouped network.

A WRN-16-2 (or ResNet-18) step on one CIFAR batch is far too small to fill a
large GPU, so independent seeds of the same cell are trained side by side in
one process.
``torch.func.vmap`` would do it, but BatchNorm's running statistics are
in-place buffer updates that vmap handles badly; grouped convolutions need
no functional rewrite: every convolution becomes one convolution with K times
the channels and ``groups=K``, every BatchNorm one BatchNorm over K times the
channels (its statistics are per channel, hence per model), and the linear
head a batched matrix product. Model k owns the k-th block of channels of
every layer, and nothing mixes the blocks, so the stack computes exactly what
K separate :class:`~prunelens.models.Classifier` s compute.

This module holds the models only; :mod:`prunelens.train` trains them with
the same loop as one model: each model is initialised from its own seed,
draws its data order and augmentation from its own generator and minimises
its own loss (the block loss is the sum, whose gradient restricted to model
k's parameters is model k's solo gradient). Results equal K solo runs up to
floating-point summation order (tests/test_stacked.py states the measured
tolerances). :class:`StackedSupConNetwork` stacks encoder and projection head
for SupCon pre-training the same way.

Pruning uses ``torch.nn.utils.prune`` masks on the stacked tensors, so
checkpoints hold ``*_orig`` / ``*_mask`` and
:func:`prunelens.pruning.make_permanent` works as for one model; the masks are
computed per model slice with the single-model rules (layer-wise GMP and
global One-Shot). Events write the new masks into the installed ``*_mask``
buffers instead of stacking ``custom_from_mask`` calls: the effective mask is
the same product, but each ``custom_from_mask`` leaves a full copy of its
mask in a ``PruningContainer`` (39 events x K models at paper scale) and
replaces the forward pre-hooks, on which ``torch.compile`` guards (it
recompiles after the first event).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import prune

from prunelens.models import (
    Classifier,
    SupConNetwork,
    build_classifier,
    build_encoder,
)
from prunelens.pruning import GMP, Scope, Target, install_masks

__all__ = [
    "StackedClassifier",
    "StackedGMP",
    "StackedLinear",
    "StackedProjectionHead",
    "StackedSupConNetwork",
    "drop_smallest",
    "edit_masks",
    "prune_stacked",
    "refresh_weights",
    "split_like",
    "stacked_prune_targets",
    "stacked_sparsity",
]


# ------------------------------------------------------------------ model


class StackedLinear(nn.Module):
    """K independent linear layers: (N, K * in_features) -> (K, N, out_features).

    ``weight`` is (K, out, in) and ``bias`` (K, out); model k reads features
    k * in .. (k + 1) * in - 1 of each row.
    """

    def __init__(self, k: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.k = k
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(k, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(k, out_features))
        with torch.no_grad():
            # nn.Linear's weight init per model (fan_in = in_features); the
            # bias is zero, as Classifier sets it.
            for part in self.weight:
                nn.init.kaiming_uniform_(part, a=math.sqrt(5))
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = x.reshape(x.shape[0], self.k, self.in_features).transpose(0, 1)
        return self.per_model(h)

    def per_model(self, h: Tensor) -> Tensor:
        """(K, N, in) -> (K, N, out): model k's layer on model k's rows."""
        # One fused bmm + bias for all models: (K, N, in) @ (K, in, out).
        return torch.baddbmm(self.bias.unsqueeze(1), h, self.weight.transpose(1, 2))


class StackedProjectionHead(nn.Module):
    """K SupCon projection heads: (N, K * dim) -> (K, N, out_dim), L2-normalised.

    Module names equal :class:`~prunelens.models.ProjectionHead`'s
    (``net.0``, ``net.2``), so stacking copies by name.
    """

    def __init__(self, k: int, dim: int = 128, out_dim: int = 128) -> None:
        super().__init__()
        self.k = k
        self.net = nn.ModuleDict(
            {"0": StackedLinear(k, dim, dim), "2": StackedLinear(k, dim, out_dim)}
        )

    def forward(self, x: Tensor) -> Tensor:
        first, second = self.net["0"], self.net["2"]
        assert isinstance(first, StackedLinear)
        assert isinstance(second, StackedLinear)
        h = F.relu(first(x))
        return F.normalize(second.per_model(h), dim=2)


def _widen(module: nn.Module, k: int) -> None:
    """Replace every Conv2d / BatchNorm2d below ``module`` by its K-model stack."""
    for name, child in module.named_children():
        new: nn.Module
        if isinstance(child, nn.Conv2d):
            new = nn.Conv2d(
                k * child.in_channels,
                k * child.out_channels,
                child.kernel_size,
                child.stride,
                child.padding,
                bias=child.bias is not None,
                groups=k * child.groups,
            )
        elif isinstance(child, nn.BatchNorm2d):
            new = nn.BatchNorm2d(
                k * child.num_features,
                eps=child.eps,
                momentum=child.momentum,
                affine=child.affine,
                track_running_stats=child.track_running_stats,
            )
        else:
            _widen(child, k)
            continue
        setattr(module, name, new)


def _arch(model: Classifier) -> tuple[dict[str, Any], int]:
    """(arch, n_classes) of a classifier built by build_classifier."""
    return dict(model.encoder.arch), model.fc.out_features


class StackedClassifier(nn.Module):
    """K classifiers of one ``arch`` as one network (see the module docstring).

    Input (N, 3K, H, W), model k reading channels 3k .. 3k + 2; output logits
    (K, N, n_classes). Module names equal a Classifier's, so state-dict keys,
    pruning targets and their order correspond one to one. A new instance is
    initialised with the distributions of K ``build_classifier`` calls (drawn
    from the global RNG, but not the same draws);
    :meth:`from_models` stacks given models exactly.
    """

    def __init__(self, k: int, arch: Mapping[str, Any], n_classes: int = 10) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"need at least one model, got k={k}")
        self.k = k
        self.arch = dict(arch)
        self.n_classes = n_classes
        # The encoder's code itself, with its layers widened: forward and
        # forward_probes then run unchanged on the stack.
        self.encoder = build_encoder(arch)
        _widen(self.encoder, k)
        self.fc = StackedLinear(k, self.encoder.dim, n_classes)
        with torch.no_grad():
            for m in self.encoder.modules():
                if isinstance(m, nn.Conv2d):
                    # Per model slice, so the fan is one model's, as solo.
                    for part in m.weight.unflatten(0, (k, -1)):
                        nn.init.kaiming_normal_(
                            part, mode="fan_out", nonlinearity="relu"
                        )

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.encoder(x))

    @classmethod
    def from_models(cls, models: Sequence[Classifier]) -> StackedClassifier:
        """Stack classifiers of one architecture (no pruning hooks) exactly.

        The result lives on the first model's device, in contiguous format.
        BatchNorm's ``num_batches_tracked`` is one counter for the stack, so it
        must agree across the models.
        """
        if not models:
            raise ValueError("need at least one model to stack")
        arch = _arch(models[0])
        for i, m in enumerate(models):
            if _arch(m) != arch:
                raise ValueError(
                    f"model {i} is (arch, classes) {_arch(m)}, model 0 {arch}"
                )
            if prune.is_pruned(m):
                raise ValueError(
                    f"model {i} has pruning hooks; bake the masks in first "
                    "(prunelens.pruning.make_permanent)"
                )
        # Built on meta: no init work and no global RNG draws, since every
        # tensor is overwritten by the copy.
        with torch.device("meta"):
            stacked = cls(len(models), *arch)
        stacked.to_empty(device=next(models[0].parameters()).device)
        stacked._copy(models, into_stack=True)
        return stacked

    def unstack(self) -> list[Classifier]:
        """The K models as separate Classifiers (copies), on this stack's device."""
        if prune.is_pruned(self):
            raise ValueError(
                "the stack has pruning hooks; bake the masks in first "
                "(prunelens.pruning.make_permanent)"
            )
        device = next(self.parameters()).device
        with torch.device("meta"):
            models = [
                build_classifier(self.arch, self.n_classes) for _ in range(self.k)
            ]
        for m in models:
            m.to_empty(device=device)
        self._copy(models, into_stack=False)
        return models

    def _copy(self, models: Sequence[Classifier], *, into_stack: bool) -> None:
        copy_stack(self, self.k, models, into_stack=into_stack)


def _check_stackable(models: Sequence[nn.Module]) -> None:
    if not models:
        raise ValueError("need at least one model to stack")
    for i, m in enumerate(models):
        if prune.is_pruned(m):
            raise ValueError(
                f"model {i} has pruning hooks; bake the masks in first "
                "(prunelens.pruning.make_permanent)"
            )


class StackedSupConNetwork(nn.Module):
    """K SupCon networks (encoder + projection head) as one network.

    Input (N, 3K, H, W); output (K, N, out_dim) unit projections. Module names
    equal :class:`~prunelens.models.SupConNetwork`'s.
    """

    def __init__(self, k: int, arch: Mapping[str, Any]) -> None:
        super().__init__()
        self.k = k
        self.arch = dict(arch)
        self.encoder = build_encoder(arch)
        _widen(self.encoder, k)
        self.head = StackedProjectionHead(k, self.encoder.dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))

    @classmethod
    def from_models(cls, nets: Sequence[SupConNetwork]) -> StackedSupConNetwork:
        """Stack SupCon networks of one architecture exactly (as
        :meth:`StackedClassifier.from_models`)."""
        _check_stackable(nets)
        arch = dict(nets[0].encoder.arch)
        for i, n in enumerate(nets):
            if n.encoder.arch != arch:
                raise ValueError(
                    f"network {i} is arch {n.encoder.arch}, network 0 {arch}"
                )
        with torch.device("meta"):
            stacked = cls(len(nets), arch)
        stacked.to_empty(device=next(nets[0].parameters()).device)
        copy_stack(stacked, len(nets), nets, into_stack=True)
        return stacked

    def unstack(self) -> list[SupConNetwork]:
        """The K networks as separate SupConNetworks (copies)."""
        if prune.is_pruned(self):
            raise ValueError("bake the masks in first (make_permanent)")
        device = next(self.parameters()).device
        with torch.device("meta"):
            nets = [SupConNetwork(build_encoder(self.arch)) for _ in range(self.k)]
        for n in nets:
            n.to_empty(device=device)
        copy_stack(self, self.k, nets, into_stack=False)
        return nets


@torch.no_grad()
def copy_stack(
    stack: nn.Module, k: int, models: Sequence[nn.Module], *, into_stack: bool
) -> None:
    """Copy every parameter and buffer between a stack and its ``models``.

    Model k owns the k-th block of each stacked tensor's first dimension;
    submodules correspond by name.
    """
    for name, sm in stack.named_modules():
        if not isinstance(sm, nn.Conv2d | nn.BatchNorm2d | StackedLinear):
            continue
        tensors = [
            *sm.named_parameters(recurse=False),
            *sm.named_buffers(recurse=False),
        ]
        for tname, st in tensors:
            singles = [getattr(m.get_submodule(name), tname) for m in models]
            if st.ndim == 0:  # BatchNorm's num_batches_tracked
                if into_stack:
                    if len({int(s) for s in singles}) > 1:
                        raise ValueError(
                            f"{name}.{tname} differs between the models: "
                            f"{[int(s) for s in singles]}"
                        )
                    st.copy_(singles[0])
                else:
                    for s in singles:
                        s.copy_(st)
                continue
            for part, single in zip(st.unflatten(0, (k, -1)), singles, strict=True):
                part = part.view(single.shape)  # the head's (1, C, D) -> (C, D)
                if into_stack:
                    part.copy_(single)
                else:
                    single.copy_(part)


# ---------------------------------------------------------------- pruning


def stacked_prune_targets(
    model: nn.Module, *, convs: bool = True, linears: bool = True
) -> list[Target]:
    """The stack's counterpart of ``prunelens.pruning.prune_targets``, same order."""
    out: list[Target] = []
    for m in model.modules():
        if convs and isinstance(m, nn.Conv2d):
            out.append((m, "weight"))
        elif linears and isinstance(m, StackedLinear):
            out += [(m, "weight"), (m, "bias")]
    return out


def drop_smallest(
    weights: Sequence[Tensor], masks: Sequence[Tensor], count: int
) -> list[Tensor]:
    """New masks: the ``count`` unpruned entries of smallest |w| zeroed.

    Jointly over the given tensors, on logical order: the rule of
    ``prunelens.pruning.prune_global`` and, for one tensor, of
    ``prune.l1_unstructured`` on top of an existing mask (same candidate
    values in the same order, so ``topk`` picks the same entries).
    """
    scores = torch.cat([w.abs().reshape(-1) for w in weights])
    new = torch.cat([m.reshape(-1) for m in masks])
    alive = (new == 1).nonzero().squeeze(1)
    if not 0 <= count <= alive.numel():
        raise ValueError(f"cannot prune {count} of {alive.numel()} unpruned entries")
    if count:
        new[alive[torch.topk(scores[alive], count, largest=False).indices]] = 0
    return split_like(new, masks)


def _drop_smallest(
    weights: Sequence[Tensor], masks: Sequence[Tensor], amount: float
) -> list[Tensor]:
    """``drop_smallest`` of k = round(amount x unpruned entries), as torch's
    pruning counts."""
    alive = sum(int((m == 1).sum()) for m in masks)
    return drop_smallest(weights, masks, round(amount * alive))


def split_like(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """A flat tensor cut back into tensors of the shapes of ``like``."""
    return [
        p.view(m.shape)
        for p, m in zip(flat.split([m.numel() for m in like]), like, strict=True)
    ]


# (model index, its weights, its masks) -> its new masks, same shapes
MaskEdit = Callable[[int, list[Tensor], list[Tensor]], list[Tensor]]


@torch.no_grad()
def edit_masks(targets: Sequence[Target], n_models: int, edit: MaskEdit) -> None:
    """Replace each model's masks in a stack (or one model, ``n_models=1``).

    ``edit`` sees model k's slices of the targets' effective (masked)
    weights, the tensors torch's pruning scores, and of their masks. Installs
    all-ones masks first where none are, writes the new masks into the
    installed buffers and refreshes the weights.
    """
    install_masks(targets)
    weights = [getattr(m, n).detach().unflatten(0, (n_models, -1)) for m, n in targets]
    masks = [getattr(m, f"{n}_mask").unflatten(0, (n_models, -1)) for m, n in targets]
    for k in range(n_models):
        ms = [m[k] for m in masks]
        for m, new in zip(ms, edit(k, [w[k] for w in weights], ms), strict=True):
            m.copy_(new)
    refresh_weights(targets)


@torch.no_grad()
def refresh_weights(targets: Sequence[Target]) -> None:
    """weight = weight_orig x mask, what torch's pruning does after a mask
    change (and its hook before each forward pass)."""
    for module, name in targets:
        setattr(
            module,
            name,
            getattr(module, f"{name}_orig") * getattr(module, f"{name}_mask"),
        )


def prune_stacked(
    targets: Sequence[Target], n_models: int, amount: float, scope: Scope = "global"
) -> None:
    """Prune ``amount`` of each model's remaining weights in a stack.

    ``global``: per model over its slices of all targets (One-Shot, as
    ``prune_global`` on that model alone); ``layerwise``: per model and
    target (as ``prune.l1_unstructured`` on each of that model's tensors).
    Scores are the effective (masked) weights that torch's pruning reads.
    Installs all-ones masks first where none are.
    """

    def edit(_: int, ws: list[Tensor], ms: list[Tensor]) -> list[Tensor]:
        if scope == "global":
            return _drop_smallest(ws, ms, amount)
        return [
            _drop_smallest([w], [m], amount)[0] for w, m in zip(ws, ms, strict=True)
        ]

    edit_masks(targets, n_models, edit)


@dataclass
class StackedGMP(GMP):
    """``prunelens.pruning.GMP`` for a stack: call ``step`` before each batch.

    Same firing rule and schedule; each event prunes every model's slices by
    the event's fraction of that model's remaining weights, layer-wise or
    globally per model.
    """

    n_models: int = 1

    def prune(self, amount: float) -> None:
        prune_stacked(self.targets, self.n_models, amount, self.schedule.scope)


@torch.no_grad()
def stacked_sparsity(model: nn.Module, k: int) -> list[float]:
    """``prunelens.pruning.measured_sparsity`` of each of the ``k`` models in a
    stack (or a part of one, such as its encoder)."""
    zeros = torch.zeros(k, dtype=torch.int64)
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d | StackedLinear):
            w = m.weight.unflatten(0, (k, -1))  # masked while masks are on
            zeros += (w == 0).flatten(1).sum(1).cpu()
            total += w[0].numel()
    return [z / total if total else 0.0 for z in zeros.tolist()]
