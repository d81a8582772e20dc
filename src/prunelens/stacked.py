"""K models of one configuration trained together, as one grouped network.

A WRN-16-2 step on one CIFAR batch is far too small to fill a large GPU, so
independent seeds of the same cell are trained side by side in one process.
``torch.func.vmap`` would do it, but BatchNorm's running statistics are
in-place buffer updates that vmap handles badly; grouped convolutions need
no functional rewrite: every convolution becomes one convolution with K times
the channels and ``groups=K``, every BatchNorm one BatchNorm over K times the
channels (its statistics are per channel, hence per model), and the linear
head a batched matrix product. Model k owns the k-th block of channels of
every layer, and nothing mixes the blocks, so the stack computes exactly what
K separate :class:`~prunelens.models.Classifier` s compute.

Training (:func:`train_supervised_block`) keeps the per-seed semantics of
:func:`prunelens.train.train_supervised`: each model is initialised from its
own seed, draws its data order and augmentation from its own generator and
minimises its own mean cross-entropy (the block loss is the sum, whose
gradient restricted to model k's parameters is model k's solo gradient), and
each seed gets the same ``model.pt`` and ``metrics.json`` as a solo run.
Results equal K solo runs up to floating-point summation order (see
tests/test_stacked.py for the measured tolerance).

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

import importlib.util
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import prune
from tqdm import tqdm

from prunelens import augment
from prunelens.models import Classifier, WideResNetEncoder, build_classifier
from prunelens.pruning import (
    GMP,
    Scope,
    Target,
    install_masks,
    make_permanent,
)
from prunelens.runtime import atomic_path, keep_freed_memory, pick_device
from prunelens.train import (
    History,
    Normalisation,
    SGDConfig,
    TrainingDiverged,
    finish_training,
    gmp_schedule,
    train_tensors,
)

log = logging.getLogger("prunelens.stacked")

__all__ = [
    "StackedClassifier",
    "StackedGMP",
    "StackedLinear",
    "block_batch_loss",
    "prune_stacked",
    "stacked_prune_targets",
    "stacked_sparsity",
    "train_supervised_block",
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
        # One fused bmm + bias for all models: (K, N, in) @ (K, in, out).
        return torch.baddbmm(self.bias.unsqueeze(1), h, self.weight.transpose(1, 2))


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


def _arch(model: Classifier) -> tuple[int, int, int]:
    """(depth, width, n_classes) of a WRN classifier built by build_classifier."""
    blocks = len(model.encoder.blocks)  # 3 groups of (depth - 4) / 6 blocks
    return 2 * blocks + 4, model.encoder.dim // 64, model.fc.out_features


class StackedClassifier(nn.Module):
    """K WRN-depth-width classifiers as one network (see the module docstring).

    Input (N, 3K, H, W), model k reading channels 3k .. 3k + 2; output logits
    (K, N, n_classes). Module names equal a Classifier's, so state-dict keys,
    pruning targets and their order correspond one to one. A new instance is
    initialised with the distributions of K ``build_classifier`` calls (drawn
    from the global RNG, but not the same draws);
    :meth:`from_models` stacks given models exactly.
    """

    def __init__(
        self, k: int, depth: int = 16, width: int = 2, n_classes: int = 10
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"need at least one model, got k={k}")
        self.k = k
        self.depth = depth
        self.width = width
        self.n_classes = n_classes
        # The WRN code itself, with its layers widened: forward and
        # forward_probes then run unchanged on the stack.
        self.encoder = WideResNetEncoder(depth, width)
        _widen(self.encoder, k)
        self.fc = StackedLinear(k, self.encoder.dim, n_classes)
        with torch.no_grad():
            for m in self.encoder.modules():
                if isinstance(m, nn.Conv2d):
                    # Per model slice, so the fan is one model's, as in the WRN.
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
                    f"model {i} is (depth, width, classes) {_arch(m)}, model 0 {arch}"
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
                build_classifier(self.depth, self.width, self.n_classes)
                for _ in range(self.k)
            ]
        for m in models:
            m.to_empty(device=device)
        self._copy(models, into_stack=False)
        return models

    @torch.no_grad()
    def _copy(self, models: Sequence[Classifier], *, into_stack: bool) -> None:
        """Copy every parameter and buffer between the stack and ``models``."""
        for name, sm in self.named_modules():
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
                for part, single in zip(
                    st.unflatten(0, (self.k, -1)), singles, strict=True
                ):
                    part = part.view(single.shape)  # the head's (1, C, D) -> (C, D)
                    if into_stack:
                        part.copy_(single)
                    else:
                        single.copy_(part)


# ---------------------------------------------------------------- pruning


def stacked_prune_targets(
    model: StackedClassifier, *, convs: bool = True, linears: bool = True
) -> list[Target]:
    """The stack's counterpart of ``prunelens.pruning.prune_targets``, same order."""
    out: list[Target] = []
    for m in model.modules():
        if convs and isinstance(m, nn.Conv2d):
            out.append((m, "weight"))
        elif linears and isinstance(m, StackedLinear):
            out += [(m, "weight"), (m, "bias")]
    return out


def _drop_smallest(
    weights: Sequence[Tensor], masks: Sequence[Tensor], amount: float
) -> list[Tensor]:
    """New masks: ``amount`` of the unpruned entries, smallest |w| first, zeroed.

    Jointly over the given tensors, with k = round(amount x remaining), on
    logical order: the rule of ``prunelens.pruning.prune_global`` and, for one
    tensor, of ``prune.l1_unstructured`` on top of an existing mask (same
    candidate values in the same order, so ``topk`` picks the same entries).
    """
    scores = torch.cat([w.abs().reshape(-1) for w in weights])
    new = torch.cat([m.reshape(-1) for m in masks])
    alive = (new == 1).nonzero().squeeze(1)
    k = round(amount * alive.numel())
    if k:
        new[alive[torch.topk(scores[alive], k, largest=False).indices]] = 0
    return [
        p.view(m.shape)
        for p, m in zip(new.split([m.numel() for m in masks]), masks, strict=True)
    ]


@torch.no_grad()
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
    install_masks(targets)
    weights = [getattr(m, n).detach().unflatten(0, (n_models, -1)) for m, n in targets]
    masks = [getattr(m, f"{n}_mask").unflatten(0, (n_models, -1)) for m, n in targets]
    for k in range(n_models):
        ws, ms = [w[k] for w in weights], [m[k] for m in masks]
        groups = (
            [(ws, ms)]
            if scope == "global"
            else [([w], [m]) for w, m in zip(ws, ms, strict=True)]
        )
        for gw, gm in groups:
            for m, new in zip(gm, _drop_smallest(gw, gm, amount), strict=True):
                m.copy_(new)
    for module, name in targets:
        # What torch's pruning does after a mask change: refresh the weight.
        setattr(
            module,
            name,
            getattr(module, f"{name}_orig") * getattr(module, f"{name}_mask"),
        )


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
def stacked_sparsity(model: StackedClassifier) -> list[float]:
    """``prunelens.pruning.measured_sparsity`` of each model in the stack."""
    zeros = torch.zeros(model.k, dtype=torch.int64, device=model.fc.bias.device)
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d | StackedLinear):
            w = m.weight.unflatten(0, (model.k, -1))  # masked while masks are on
            zeros += (w == 0).flatten(1).sum(1)
            total += w[0].numel()
    return [z / total for z in zeros.tolist()]


# --------------------------------------------------------------- training


def block_batch_loss(
    net: Callable[[Tensor], Tensor],
    images: Tensor,
    labels: Tensor,
    idx: Sequence[Tensor],
    generators: Sequence[torch.Generator],
    norm: Normalisation,
    aug: Mapping[str, Any],
    *,
    memory_format: torch.memory_format = torch.channels_last,
    amp_bf16: bool = False,
) -> tuple[Tensor, Tensor]:
    """Per-model mean cross-entropy (K,) and correct counts (K,) of one step.

    Model k's batch is ``images[idx[k]]`` (uint8 NHWC), augmented with
    ``generators[k]`` exactly as ``prunelens.train``'s supervised batch loss
    does; the K batches are concatenated along channels for the stack.
    Nothing here synchronises with the device.
    """
    views = []
    for ix, gen in zip(idx, generators, strict=True):
        x = augment.crop_flip(augment.to_unit_float(images[ix]), gen, **aug)
        views.append(augment.normalize(x, norm.mean, norm.std))
    x = torch.cat(views, dim=1).contiguous(memory_format=memory_format)
    y = torch.stack([labels[ix] for ix in idx])
    # Inside autocast, cross_entropy runs in float32 even on bf16 logits.
    with torch.autocast(images.device.type, torch.bfloat16, enabled=amp_bf16):
        logits = net(x)
        losses = F.cross_entropy(
            logits.flatten(0, 1), y.flatten(), reduction="none"
        ).view(y.shape)
    return losses.mean(dim=1), (logits.argmax(dim=2) == y).sum(dim=1)


def _compile_available(device: str) -> bool:
    """Whether torch.compile's default backend has its toolchain here."""
    if device.startswith("cuda"):
        return importlib.util.find_spec("triton") is not None
    return any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++"))


def train_supervised_block(
    *,
    data: str | Path,
    seeds: Sequence[int],
    model_outs: Sequence[str | Path],
    metrics_outs: Sequence[str | Path],
    arch: Mapping[str, int],
    hp: Mapping[str, Any],
    norm: Mapping[str, Any],
    gmp: Mapping[str, Any] | None,
    sparsity: int,
    schedule: str,
    device: str = "auto",
    threads: int = 1,
    eval_batch_size: int = 1024,
    precision: str = "fp32",
    channels_last: bool = True,
    compile: bool = False,
    checkpoint: str | Path | None = None,
) -> list[dict[str, Any]]:
    """``train_supervised`` for several seeds at once; returns each seed's metrics.

    Writes ``model_outs[i]`` / ``metrics_outs[i]`` for ``seeds[i]`` exactly as
    ``train_supervised`` does (same keys; ``wall_time_s`` and the throughputs
    are the block's, per model). One resume checkpoint for the block
    (default: ``resume_block.pt`` beside the first model) is written
    atomically after every epoch and resumed from when present.

    Speed options: ``channels_last`` (the single-model path's layout; on CPU
    grouped convolutions are ~2x slower without it) and ``compile``
    (``torch.compile`` of the stack; skipped with a warning where its backend
    is missing) keep the results equal to the solo runs up to float rounding;
    ``precision="bf16"`` (bf16 autocast, as ``train_supervised``'s) changes the
    numerics.
    """
    k = len(seeds)
    if k == 0 or not k == len(model_outs) == len(metrics_outs):
        raise ValueError(
            f"need one model and metrics path per seed: {k} seeds, "
            f"{len(model_outs)} model paths, {len(metrics_outs)} metrics paths"
        )
    if len(set(seeds)) != k:
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    torch.set_num_threads(max(1, threads))
    keep_freed_memory()
    dev = pick_device(device)
    models, gens = [], []
    for seed in seeds:
        torch.manual_seed(seed)  # model initialisation, as train_supervised
        models.append(build_classifier(**arch))
        gen = torch.Generator(device="cpu")  # as train_supervised: device-free
        gen.manual_seed(seed)  # data order and augmentation
        gens.append(gen)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    stacked = StackedClassifier.from_models(models).to(dev, memory_format=fmt)
    del models
    sched = gmp_schedule(sparsity, gmp)
    driver = (
        StackedGMP(sched, stacked_prune_targets(stacked), n_models=k) if sched else None
    )
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    amp_bf16 = precision == "bf16"
    if amp_bf16 and dev.startswith("cuda") and not torch.cuda.is_bf16_supported():
        log.warning("this GPU has no bf16; training in float32")
        amp_bf16 = False
    net: Callable[[Tensor], Tensor] = stacked
    if compile:
        if _compile_available(dev):
            net = torch.compile(stacked)
        else:
            log.warning("torch.compile has no backend toolchain here; eager mode")

    cfg = SGDConfig.from_dict(hp)
    normal = Normalisation.from_dict(norm)
    images, labels = train_tensors(data, dev)
    opt = torch.optim.SGD(
        stacked.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )
    ckpt = Path(checkpoint or Path(model_outs[0]).parent / "resume_block.pt")
    hists = [History() for _ in seeds]
    if ckpt.exists():
        state = torch.load(ckpt, map_location=dev, weights_only=False)
        if state["seeds"] != list(seeds):
            raise ValueError(
                f"{ckpt} belongs to seeds {state['seeds']}, not {list(seeds)}; "
                "delete it to start this block afresh"
            )
        stacked.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for gen, gstate in zip(gens, state["generators"], strict=True):
            gen.set_state(gstate.cpu())  # RNG states are CPU byte tensors
        if driver is not None:
            driver.load_state_dict(state["gmp"])
        hists = state["histories"]
        log.info(
            "resumed from %s at epoch %d/%d", ckpt, len(hists[0].epochs), cfg.epochs
        )

    desc = f"sup/{schedule}/s{sparsity}/seeds{','.join(map(str, seeds))}"
    n = len(labels)
    step = hists[0].step
    for epoch in range(len(hists[0].epochs), cfg.epochs):
        lr = cfg.lr_at(epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        stacked.train()
        t0 = time.perf_counter()
        perms = [augment.permutation(n, g, dev) for g in gens]
        total_loss = torch.zeros(k, device=dev)
        correct = torch.zeros(k, dtype=torch.int64, device=dev)
        bar = tqdm(
            range(0, n, cfg.batch_size), desc=f"{desc} {epoch + 1}", disable=None
        )
        for i in bar:
            step += 1
            if driver is not None:
                driver.step(step)
            idx = [p[i : i + cfg.batch_size] for p in perms]
            losses, n_right = block_batch_loss(
                net,
                images,
                labels,
                idx,
                gens,
                normal,
                hp["augment"],
                memory_format=fmt,
                amp_bf16=amp_bf16,
            )
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            total_loss += losses.detach() * len(idx[0])
            correct += n_right
        mean_losses = [float(t) / n for t in total_loss.tolist()]
        bad = [
            s for s, v in zip(seeds, mean_losses, strict=True) if not math.isfinite(v)
        ]
        if bad:
            raise TrainingDiverged(
                f"{desc}: loss is not finite for seeds {bad} in epoch {epoch + 1} "
                f"(lr {lr:g}); lower the learning rate or check the data"
            )
        dt = time.perf_counter() - t0
        sparsities = stacked_sparsity(stacked)
        for hist, loss, right, sp in zip(
            hists, mean_losses, correct.tolist(), sparsities, strict=True
        ):
            hist.step = step
            hist.wall_time_s += dt
            hist.images_seen += n
            hist.epochs.append(
                {
                    "epoch": epoch + 1,
                    "loss": loss,
                    "train_acc": right / n,
                    "lr": lr,
                    "sparsity": sp,
                    "images_per_s": n / dt,
                }
            )
        log.info(
            "%s epoch %d/%d loss %s lr %.2e sparsity %s %.0f img/s per model, x%d",
            desc,
            epoch + 1,
            cfg.epochs,
            " ".join(f"{v:.4f}" for v in mean_losses),
            lr,
            " ".join(f"{v:.4f}" for v in sparsities),
            n / dt,
            k,
        )
        state = {
            "seeds": list(seeds),
            "model": stacked.state_dict(),
            "optimizer": opt.state_dict(),
            "generators": [g.get_state() for g in gens],
            "gmp": driver.state_dict() if driver is not None else None,
            "histories": hists,
        }
        with atomic_path(ckpt) as tmp:
            torch.save(state, tmp)

    make_permanent(stacked)
    metrics = []
    for model, seed, hist, model_out, metrics_out in zip(
        stacked.unstack(), seeds, hists, model_outs, metrics_outs, strict=True
    ):
        metrics.append(
            finish_training(
                model.to(memory_format=torch.channels_last),
                hist,
                data=data,
                norm=normal,
                device=dev,
                eval_batch_size=eval_batch_size,
                model_out=model_out,
                metrics_out=metrics_out,
                # a solo run's leftover checkpoint for this seed is obsolete now
                checkpoint=Path(model_out).parent / "resume.pt",
                arch=arch,
                method="sup",
                schedule=schedule,
                sparsity=sparsity,
                seed=seed,
            )
        )
    ckpt.unlink(missing_ok=True)
    return metrics
