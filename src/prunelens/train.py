"""Training: one loop for K >= 1 models of one configuration, and its stages.

:func:`train` is the loop; a stage hands it a :class:`Run` (the network, its
trainable parameters, how one model's batch becomes views, the objective,
the lr schedule, the pruning driver). With K = 1 the network is the plain
model, with K > 1 its stack (:mod:`prunelens.stacked`); nothing else in the
loop depends on K. Each of the K models has its own seed (initialisation)
and its own CPU generator (data order and augmentation), so a block's model
k equals the solo run of seed k up to floating-point summation order.

The stages (:func:`train_supervised`, :func:`pretrain_supcon`,
:func:`fit_linear_head`, :func:`oneshot_finetune` with any post-training
method of :mod:`prunelens.methods`, and IMP: :func:`train_imp` for Sup,
:func:`pretrain_imp` for SCL and SimCLR) take lists of seeds
and of per-seed output paths and write each seed exactly the files a
one-seed job writes. Resume: after every epoch the loop writes
``resume.pt`` beside the first output (:mod:`prunelens.checkpoint`:
fingerprinted, resumed only on match), so a killed job rerun by Snakemake
ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunelens import augment
from prunelens.checkpoint import fingerprint, load_resume, resume_path, save_resume
from prunelens.curves import Curves, Progress, eta, write_curves
from prunelens.files import load_encoder, load_model
from prunelens.losses import supcon_loss
from prunelens.methods import make_pruner, pruner_key
from prunelens.methods.imp import capture, imp_schedule, prune_to, rewind, rounds_to
from prunelens.models import (
    Classifier,
    SupConNetwork,
    build_classifier,
    build_encoder,
    save_model,
)
from prunelens.pruning import (
    GMP,
    GMPSchedule,
    Target,
    install_masks,
    layer_sparsity,
    make_permanent,
    measured_sparsity,
    prune_targets,
    tensor_names,
)
from prunelens.runtime import atomic_path, versions, write_json
from prunelens.settings import JobSettings
from prunelens.stacked import (
    StackedClassifier,
    StackedGMP,
    StackedSupConNetwork,
    refresh_weights,
    stacked_prune_targets,
    stacked_sparsity,
)
from prunelens.study import PRETRAIN_OBJECTIVE

log = logging.getLogger("prunelens.train")

__all__ = [
    "History",
    "Normalisation",
    "Run",
    "SGDConfig",
    "TrainingDiverged",
    "chained_head_lrs",
    "cosine_lr",
    "fit_linear_head",
    "gmp_schedule",
    "oneshot_finetune",
    "pretrain_imp",
    "pretrain_supcon",
    "train",
    "train_imp",
    "train_supervised",
]

Paths = Sequence[str | Path]
_T = TypeVar("_T")
Settings = JobSettings | Mapping[str, Any] | None


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class SGDConfig:
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    milestones: tuple[int, ...] = ()
    gamma: float = 1.0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SGDConfig:
        keys = cls.__dataclass_fields__
        kw = {k: v for k, v in d.items() if k in keys}
        kw["milestones"] = tuple(kw.get("milestones", ()))
        return cls(**kw)

    def lr_at(self, epoch: int) -> float:
        """MultiStepLR stepped once per epoch (0-based epoch)."""
        return self.lr * self.gamma ** sum(m <= epoch for m in self.milestones)


def cosine_lr(base: float, eta_min: float, t_max: int, epoch: int) -> float:
    """CosineAnnealingLR stepped per epoch (closed form)."""
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * epoch / t_max)) / 2


def chained_head_lrs(
    base: float, epochs: int, milestones: Sequence[int], gamma: float, eta_min: float
) -> list[float]:
    """The SCL head's lr per epoch: MultiStepLR and CosineAnnealingLR chained.

    The authors step both schedulers every epoch (§4.3); their combined
    recursive formulas are simulated with torch's own schedulers, for parity.
    """
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    steps = torch.optim.lr_scheduler.MultiStepLR(opt, list(milestones), gamma)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1), eta_min)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        steps.step()
        cos.step()
    return lrs


def gmp_schedule(sparsity: int, gmp: Mapping[str, Any] | None) -> GMPSchedule | None:
    """The GMP schedule to ``sparsity`` percent, None for a dense model."""
    if sparsity == 0:
        return None
    if gmp is None:
        raise ValueError(f"sparsity {sparsity}% needs a GMP schedule")
    return GMPSchedule(final=sparsity / 100, **gmp)


@dataclass
class History:
    """One model's training record: a row per epoch (metrics.json's
    ``history``) and per logging point (``steps``, every
    ``settings.log_every_steps`` steps: :mod:`prunelens.curves`)."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    step: int = 0
    wall_time_s: float = 0.0
    images_seen: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # resume files written before ``steps`` existed
        self.__dict__.update({"steps": [], **state})


@dataclass(frozen=True)
class Normalisation:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalisation:
        return cls(tuple(d["mean"]), tuple(d["std"]))


# One model's uint8 NHWC batch (as float in [0, 1]) -> its views, e.g. one
# crop-flip or SupCon's two views concatenated along the batch.
Views = Callable[[Tensor, torch.Generator], Tensor]
# (network, inputs (V*N, 3K, H, W), labels (K, N)) -> per-model loss (K,) and
# number correct (K,); counts stay tensors so a GPU step never waits.
Objective = Callable[
    [Callable[[Tensor], Tensor], Tensor, Tensor], tuple[Tensor, Tensor]
]


@dataclass
class Run:
    """What a stage plugs into :func:`train`."""

    net: nn.Module  # the plain model (K = 1) or its stack
    params: list[nn.Parameter]
    views: Views
    objective: Objective
    lr_at: Callable[[int], float]
    sparsity: Callable[[], list[float]]  # per model, logged every epoch
    gmp: GMP | None = None
    train_mode: Callable[[], None] | None = None
    # called with the number of epochs done, before the resume file is
    # written, so what it keeps is on disk before that epoch counts as done
    after_epoch: Callable[[int], None] | None = None
    accuracy: bool = True  # whether the objective's counts mean anything


def batch_inputs(
    images: Tensor,
    labels: Tensor,
    idx: Sequence[Tensor],
    gens: Sequence[torch.Generator],
    views: Views,
    norm: Normalisation,
) -> tuple[Tensor, Tensor]:
    """The input pipeline: uint8 -> augment (model k with ``gens[k]``) ->
    normalise; the K models' views concatenated along channels."""
    xs = [
        augment.normalize(
            views(augment.to_unit_float(images[i]), g), norm.mean, norm.std
        )
        for i, g in zip(idx, gens, strict=True)
    ]
    # channels_last: ~20% faster convolutions on CPU, and on GPU tensor cores
    x = torch.cat(xs, dim=1).contiguous(memory_format=torch.channels_last)
    return x, torch.stack([labels[i] for i in idx])


def train(
    run: Run,
    images: Tensor,
    labels: Tensor,
    cfg: SGDConfig,
    gens: Sequence[torch.Generator],
    norm: Normalisation,
    *,
    settings: JobSettings,
    resume: Path,
    key: str,
    desc: str,
    curves: Curves | None = None,
) -> list[History]:
    """Train K = len(gens) models for ``cfg.epochs`` epochs; their histories.

    Resumes from ``resume`` when it holds fingerprint ``key``, and writes it
    after every epoch. bf16 autocast (``settings.bf16``) covers the network
    and the objective; weights, optimiser state and the loss stay float32.
    Every ``settings.log_every_steps`` steps (0: never) each History gets a
    step row, mirrored with the epoch rows to ``curves`` (TensorBoard); at
    least every ``settings.progress_s`` seconds of an epoch the log gets a
    progress line. Neither changes what is trained.
    """
    curves = curves or Curves()
    k = len(gens)
    opt = torch.optim.SGD(
        run.params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )
    hists = [History() for _ in gens]
    state = load_resume(resume, key, settings.device)
    if state is not None:
        run.net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for g, s in zip(gens, state["generators"], strict=True):
            g.set_state(s.cpu())  # RNG states are CPU byte tensors
        if run.gmp is not None:
            run.gmp.load_state_dict(state["gmp"])
        hists = state["histories"]
        log.info(
            "resumed from %s at epoch %d/%d", resume, len(hists[0].epochs), cfg.epochs
        )
        curves.write([h.steps for h in hists], [h.epochs for h in hists], run.accuracy)
    net: Callable[[Tensor], Tensor] = (
        torch.compile(run.net) if settings.compile else run.net
    )
    n, step = len(labels), hists[0].step
    every = settings.log_every_steps
    progress = Progress(settings.progress_s)
    # Measuring sparsity costs more than a logging point's other work; masks
    # change only when GMP prunes, so step rows reuse the last measurement.
    row_sp: list[float] | None = None
    for epoch in range(len(hists[0].epochs), cfg.epochs):
        lr = run.lr_at(epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        (run.train_mode or run.net.train)()
        t0 = time.perf_counter()
        perms = [augment.permutation(n, g, images.device) for g in gens]
        total_loss = torch.zeros(k, device=images.device)
        correct = torch.zeros(k, dtype=torch.long, device=images.device)
        seen = 0  # images per model this epoch
        # the accumulators' values at the previous step row of this epoch
        row_t, row_seen, row_loss, row_right = t0, 0, [0.0] * k, [0] * k
        for i in range(0, n, cfg.batch_size):
            step += 1
            if run.gmp is not None and run.gmp.step(step):
                row_sp = None
            idx = [p[i : i + cfg.batch_size] for p in perms]
            x, y = batch_inputs(images, labels, idx, gens, run.views, norm)
            with torch.autocast(
                images.device.type, torch.bfloat16, enabled=settings.bf16
            ):
                losses, n_right = run.objective(net, x, y)
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            total_loss += losses.detach() * len(idx[0])
            correct += n_right
            seen += len(idx[0])
            if every and step % every == 0:
                # the one device sync of a logging point: reading the sums
                now, cum_loss, cum_right = (
                    time.perf_counter(),
                    total_loss.tolist(),
                    correct.tolist(),
                )
                m = seen - row_seen
                row_sp = row_sp or run.sparsity()
                rows = [
                    {
                        "epoch": epoch + 1,
                        "step": step,
                        "loss": (cl - pl) / m,
                        "acc": (cr - pr) / m if run.accuracy else None,
                        "lr": lr,
                        "sparsity": sp,
                        "images_per_s": m / max(now - row_t, 1e-9),
                    }
                    for cl, pl, cr, pr, sp in zip(
                        cum_loss, row_loss, cum_right, row_right, row_sp,
                        strict=True,
                    )
                ]  # fmt: skip
                for hist, row in zip(hists, rows, strict=True):
                    hist.steps.append(row)
                curves.write([[r] for r in rows], [[]] * k, run.accuracy)
                row_t, row_seen, row_loss, row_right = now, seen, cum_loss, cum_right
            if progress.due():
                rate = seen / max(time.perf_counter() - t0, 1e-9)
                left = n - seen
                log.info(
                    "%s epoch %d/%d step %d (%d/%d images) %.0f img/s per model; "
                    "left: epoch %s, training %s",
                    desc, epoch + 1, cfg.epochs, step, seen, n, rate,
                    eta(left / rate), eta((left + (cfg.epochs - epoch - 1) * n) / rate),
                )  # fmt: skip
        mean_loss = [t / n for t in total_loss.tolist()]
        if not all(math.isfinite(v) for v in mean_loss):
            raise TrainingDiverged(
                f"{desc}: loss is {' '.join(map(str, mean_loss))} in epoch "
                f"{epoch + 1} (lr {lr:g}); lower the learning rate or check the data"
            )
        dt = time.perf_counter() - t0
        sparsity = row_sp = run.sparsity()
        for hist, loss, right, sp in zip(
            hists, mean_loss, correct.tolist(), sparsity, strict=True
        ):
            hist.step = step
            hist.wall_time_s += dt
            hist.images_seen += n
            row = {"epoch": epoch + 1, "loss": loss, "train_acc": right / n}
            hist.epochs.append(
                {**row, "lr": lr, "sparsity": sp, "images_per_s": n / dt, "step": step}
            )
        curves.write([[]] * k, [[h.epochs[-1]] for h in hists], run.accuracy)
        curves.flush()
        log.info(
            "%s epoch %d/%d loss %s lr %.2e sparsity %s %.0f img/s per model x%d",
            desc,
            epoch + 1,
            cfg.epochs,
            " ".join(f"{v:.4f}" for v in mean_loss),
            lr,
            " ".join(f"{v:.4f}" for v in sparsity),
            n / dt,
            k,
        )
        if run.after_epoch is not None:
            run.after_epoch(epoch + 1)
        save_resume(
            resume,
            key,
            {
                "model": run.net.state_dict(),
                "optimizer": opt.state_dict(),
                "generators": [g.get_state() for g in gens],
                "gmp": run.gmp.state_dict() if run.gmp is not None else None,
                "histories": hists,
            },
        )
    return hists


# ---------------------------------------------------------------- objectives


def _per_model_ce(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and correct count per model of (K, N, C) logits.

    One ``cross_entropy`` call per model: for K = 1 exactly the solo loss.
    """
    losses = torch.stack(
        [F.cross_entropy(lg, t) for lg, t in zip(logits, y, strict=True)]
    )
    return losses, (logits.argmax(2) == y).sum(1)


def _ce(net: Callable[[Tensor], Tensor], x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    return _per_model_ce(net(x).reshape(*y.shape, -1), y)


# The pre-training objectives of pretrain_supcon: SupCon (labels define the
# positives) and SimCLR (NT-Xent: a view's one positive is the other view);
# the method of each names its stage in logs and resume fingerprints.
_METHOD_OF = {obj: m for m, obj in PRETRAIN_OBJECTIVE.items()}
PRETRAIN_OBJECTIVES = tuple(_METHOD_OF)


def _contrastive(objective: str, hp: Mapping[str, Any]) -> Objective:
    """The pre-training loss of ``objective`` with ``hp``'s temperature(s).

    SimCLR's NT-Xent is SupCon without labels and without SupCon's loss scale
    T / T_base, i.e. base_temperature = temperature (``hp`` has no
    base_temperature).
    """
    if objective == "supcon":
        return _supcon(hp["temperature"], hp["base_temperature"], use_labels=True)
    if objective == "simclr":
        return _supcon(hp["temperature"], hp["temperature"], use_labels=False)
    raise ValueError(
        f"unknown pre-training objective {objective!r}; "
        f"known: {', '.join(PRETRAIN_OBJECTIVES)}"
    )


def _supcon(
    temperature: float, base_temperature: float, use_labels: bool = True
) -> Objective:
    def objective(
        net: Callable[[Tensor], Tensor], x: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor]:
        k, n = y.shape
        z = net(x).reshape(k, 2 * n, -1)  # each model's two views, view-major
        losses = torch.stack(
            [
                supcon_loss(
                    torch.stack(zk.split(n), dim=1),
                    yk if use_labels else None,
                    temperature=temperature,
                    base_temperature=base_temperature,
                )
                for zk, yk in zip(z, y, strict=True)
            ]
        )
        # no classifier yet: no accuracy during pre-training
        return losses, torch.zeros(k, dtype=torch.long, device=x.device)

    return objective


def _crop_flip(aug: Mapping[str, Any]) -> Views:
    return lambda x, g: augment.crop_flip(x, g, **aug)


def _two_views(aug: Mapping[str, Any]) -> Views:
    kw = {
        "scale": tuple(aug["scale"]),
        "jitter": tuple(aug["jitter"]),
        "p_jitter": aug["p_jitter"],
        "p_gray": aug["p_gray"],
    }
    return lambda x, g: torch.cat(augment.two_views(x, g, **kw))


# ---------------------------------------------------------------- stages


@dataclass
class _Job:
    """What every stage sets up the same way: settings, seeds, data."""

    settings: JobSettings
    seeds: list[int]
    images: Tensor
    labels: Tensor
    test: Any  # prunelens.data.Split, loaded once per job
    norm: Normalisation

    @classmethod
    def start(
        cls,
        data: str | Path,
        seeds: Sequence[int],
        norm: Mapping[str, Any],
        settings: Settings,
    ) -> _Job:
        from prunelens.data import load_prepared

        seeds = [int(s) for s in seeds]
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
        s = JobSettings.of(settings)
        train_split = load_prepared(data, "train")
        return cls(
            s,
            seeds,
            torch.from_numpy(train_split.images).to(s.device),
            torch.from_numpy(train_split.labels).to(s.device),
            load_prepared(data, "test"),
            Normalisation.from_dict(norm),
        )

    @property
    def n_classes(self) -> int:
        """The data set's classes (its prepared file's class names)."""
        return int(self.test.n_classes)

    def seeded(
        self, build: Callable[[int], nn.Module]
    ) -> tuple[list[Any], list[torch.Generator]]:
        """Per seed: ``build(seed)`` after seeding the global RNG (model
        initialisation, on the CPU), and a CPU generator for data order and
        augmentation (its draws are copied to the device: the same on CPU
        and GPU)."""
        models, gens = [], []
        for seed in self.seeds:
            torch.manual_seed(seed)
            models.append(build(seed))
            gen = torch.Generator(device="cpu")
            gen.manual_seed(seed)
            gens.append(gen)
        return models, gens

    def desc(self, stage: str, schedule: str, sparsity: int) -> str:
        one = len(self.seeds) == 1
        who = ("seed" if one else "seeds") + ",".join(map(str, self.seeds))
        return f"{stage}/{schedule}/s{sparsity}/{who}"

    def key(self, inputs: Sequence[str | Path], **what: Any) -> str:
        """The resume fingerprint: ``what`` the result depends on, the seeds,
        the precision and the input files."""
        return fingerprint(
            {**what, "seeds": self.seeds, "precision": self.settings.precision},
            inputs,
        )


def _check_outputs(seeds: Sequence[int], *paths: Paths | None) -> None:
    """One path per seed in each of ``paths`` (None: an output not asked for)."""
    given = [p for p in paths if p is not None]
    if any(len(p) != len(seeds) for p in given):
        raise ValueError(
            f"need one output path per seed: {len(seeds)} seeds, "
            f"{[len(p) for p in given]} paths"
        )


def _stack_classifiers(models: list[Classifier], device: str) -> nn.Module:
    net = models[0] if len(models) == 1 else StackedClassifier.from_models(models)
    return net.to(device, memory_format=torch.channels_last)


def _unstack(net: nn.Module) -> list[Classifier]:
    """The trained classifiers, masks baked in."""
    make_permanent(net)
    if isinstance(net, StackedClassifier):
        return [m.to(memory_format=torch.channels_last) for m in net.unstack()]
    assert isinstance(net, Classifier)
    return [net]


def _sparsity(net: nn.Module, k: int) -> Callable[[], list[float]]:
    if k == 1:
        return lambda: [measured_sparsity(net)]
    return lambda: stacked_sparsity(net, k)


def _gmp_targets(
    sched: GMPSchedule | None, part: nn.Module, prefix: str = "", **which: bool
) -> dict[str, float]:
    """Per-tensor targets (``layer_sparsity``) of GMP on ``part``'s tensors
    (named ``prefix`` + name): layer-wise GMP takes each to the final
    sparsity; global GMP sets only the total, so no tensor has one."""
    if sched is None or sched.scope != "layerwise":
        return {}
    return {prefix + n: sched.final for n in tensor_names(part, **which)}


def _gmp(
    sched: GMPSchedule | None, part: nn.Module, k: int, **which: bool
) -> GMP | None:
    if sched is None:
        return None
    if k == 1:
        return GMP(sched, prune_targets(part, **which))
    return StackedGMP(sched, stacked_prune_targets(part, **which), n_models=k)


def finish_training(
    model: Classifier,
    hist: History,
    *,
    job: _Job,
    model_out: str | Path,
    metrics_out: str | Path,
    arch: Mapping[str, Any],
    method: str,
    schedule: str,
    sparsity: int,
    seed: int,
    extra: Mapping[str, Any] | None = None,
    layer_targets: Mapping[str, float] | None = None,
    curves_out: str | Path | None = None,
) -> dict[str, Any]:
    """Test one trained classifier (masks permanent), write ``model.pt``,
    ``metrics.json`` and (``curves_out``) its curves CSV (the file contracts
    of docs/data-format.md); ``layer_targets``: the per-tensor targets of its
    pruning, by tensor name (:func:`prunelens.pruning.layer_sparsity`)."""
    from prunelens.evaluate import accuracy, predict

    meta = {
        "arch": dict(arch),
        "method": method,
        "schedule": schedule,
        "sparsity": sparsity,
        "seed": seed,
    }
    s = job.settings
    logits, _ = predict(
        model,
        job.test.images,
        job.norm.mean,
        job.norm.std,
        device=s.device,
        batch=s.eval_batch_size,
    )
    metrics = {
        **meta,
        "test_acc": accuracy(logits, job.test.labels),
        "sparsity_measured": measured_sparsity(model),
        "layers": layer_sparsity(model, layer_targets),
        "epochs": len(hist.epochs),
        "steps": hist.step,
        "wall_time_s": hist.wall_time_s,
        "train_images_per_s": hist.images_seen / max(hist.wall_time_s, 1e-9),
        "device": s.device,
        "torch": torch.__version__,
        "versions": versions(),
        "history": hist.epochs,
        **(extra or {}),
    }
    save_model(model_out, model, meta)
    write_json(metrics_out, metrics)
    if curves_out is not None:
        write_curves(curves_out, hist.steps, hist.epochs, accuracy=True)
    log.info(
        "seed %d: test accuracy %.4f, sparsity %.4f",
        seed,
        metrics["test_acc"],
        metrics["sparsity_measured"],
    )
    return metrics


def _finish_all(
    net: nn.Module,
    hists: list[History],
    job: _Job,
    model_outs: Paths,
    metrics_outs: Paths,
    resume: Path,
    extras: Sequence[Mapping[str, Any] | None] | None = None,
    curves_outs: Paths | None = None,
    **meta: Any,
) -> list[dict[str, Any]]:
    out = _finish_models(
        net, hists, job, model_outs, metrics_outs, extras, curves_outs, **meta
    )
    resume.unlink(missing_ok=True)
    return out


def _finish_models(
    net: nn.Module,
    hists: list[History],
    job: _Job,
    model_outs: Paths,
    metrics_outs: Paths,
    extras: Sequence[Mapping[str, Any] | None] | None = None,
    curves_outs: Paths | None = None,
    **meta: Any,
) -> list[dict[str, Any]]:
    """Write each model of ``net`` (masks baked in: ``net`` loses its hooks)."""
    none = [None] * len(job.seeds)
    return [
        finish_training(
            model,
            hist,
            job=job,
            model_out=mo,
            metrics_out=me,
            seed=seed,
            extra=ex,
            curves_out=cu,
            **meta,
        )
        for model, hist, mo, me, seed, ex, cu in zip(
            _unstack(net),
            hists,
            model_outs,
            metrics_outs,
            job.seeds,
            extras or none,
            curves_outs or none,
            strict=True,
        )
    ]


def train_supervised(
    *,
    data: str | Path,
    seeds: Sequence[int],
    model_outs: Paths,
    metrics_outs: Paths,
    arch: Mapping[str, Any],
    hp: Mapping[str, Any],
    norm: Mapping[str, Any],
    gmp: Mapping[str, Any] | None,
    sparsity: int,
    schedule: str,
    settings: Settings = None,
    curves_outs: Paths | None = None,
    tensorboard_dirs: Paths | None = None,
) -> list[dict[str, Any]]:
    """Sup training from scratch, dense (sparsity 0) or with GMP to ``sparsity``%.

    Every stage takes ``curves_outs`` (per seed, the curves CSV to write) and
    ``tensorboard_dirs`` (per seed, its TensorBoard run directory), both
    optional (:mod:`prunelens.curves`)."""
    _check_outputs(seeds, model_outs, metrics_outs, curves_outs, tensorboard_dirs)
    job = _Job.start(data, seeds, norm, settings)
    arch = {**arch, "n_classes": job.n_classes}  # saved with the model
    models, gens = job.seeded(lambda _: build_classifier(arch))
    k = len(models)
    net = _stack_classifiers(models, job.settings.device)
    cfg = SGDConfig.from_dict(hp)
    sched = gmp_schedule(sparsity, gmp)
    run = Run(
        net,
        list(net.parameters()),
        _crop_flip(hp["augment"]),
        _ce,
        cfg.lr_at,
        _sparsity(net, k),
        _gmp(sched, net, k),
    )
    resume = resume_path(model_outs[0])
    key = job.key(
        [data], stage="sup", arch=arch, hp=hp, norm=norm, gmp=gmp, sparsity=sparsity
    )
    curves = Curves(tensorboard_dirs)
    hists = train(
        run, job.images, job.labels, cfg, gens, job.norm,
        settings=job.settings, resume=resume, key=key,
        desc=job.desc("sup", schedule, sparsity), curves=curves,
    )  # fmt: skip
    curves.close()
    return _finish_all(
        net, hists, job, model_outs, metrics_outs, resume, curves_outs=curves_outs,
        arch=arch, method="sup", schedule=schedule, sparsity=sparsity,
        layer_targets=_gmp_targets(sched, models[0]),
    )  # fmt: skip


def oneshot_finetune(
    *,
    data: str | Path,
    dense_models: Paths,
    seeds: Sequence[int],
    model_outs: Paths,
    metrics_outs: Paths,
    hp: Mapping[str, Any],
    augment_cfg: Mapping[str, Any],
    norm: Mapping[str, Any],
    method: str,
    sparsity: int,
    settings: Settings = None,
    pruner: str = "oneshot",
    pruner_options: Mapping[str, Any] | None = None,
    curves_outs: Paths | None = None,
    tensorboard_dirs: Paths | None = None,
) -> list[dict[str, Any]]:
    """Post-training pruning of trained models, then CE fine-tuning (§5.3).

    ``pruner`` names a method of :data:`prunelens.methods.PRUNERS` (with its
    ``pruner_options``), and is the schedule name the outputs record: by
    default the paper's One-Shot, global magnitude pruning. Each whole
    classifier (encoder and linear head) is pruned on its own and fine-tuned
    end to end, for Sup and SCL alike.
    """
    _check_outputs(
        seeds, dense_models, model_outs, metrics_outs, curves_outs, tensorboard_dirs
    )
    method_ = make_pruner(pruner, pruner_options)
    job = _Job.start(data, seeds, norm, settings)
    dense = dict(zip(job.seeds, dense_models, strict=True))
    loaded, gens = job.seeded(lambda seed: load_model(dense[seed], job.settings.device))
    k = len(loaded)
    net = _stack_classifiers([m for m, _ in loaded], job.settings.device)
    targets = prune_targets(net) if k == 1 else stacked_prune_targets(net)
    method_.prune(targets, k, sparsity / 100, seeds=job.seeds)
    cfg = SGDConfig.from_dict(hp)
    run = Run(
        net, list(net.parameters()), _crop_flip(augment_cfg), _ce, cfg.lr_at,
        _sparsity(net, k),
    )  # fmt: skip
    resume = resume_path(model_outs[0])
    key = job.key(
        list(dense_models), stage="oneshot", hp=hp, augment=augment_cfg, norm=norm,
        method=method, sparsity=sparsity, pruner=pruner_key(pruner, method_),
    )  # fmt: skip
    curves = Curves(tensorboard_dirs)
    hists = train(
        run, job.images, job.labels, cfg, gens, job.norm,
        settings=job.settings, resume=resume, key=key,
        desc=job.desc(f"{method}-{pruner}", pruner, sparsity), curves=curves,
    )  # fmt: skip
    curves.close()
    # a per-tensor method takes each tensor to the sparsity; a global one
    # only the total
    layer_targets = dict.fromkeys(
        tensor_names(loaded[0][0]) if method_.per_tensor else [], sparsity / 100
    )
    return _finish_all(
        net, hists, job, model_outs, metrics_outs, resume, curves_outs=curves_outs,
        arch=loaded[0][1]["arch"], method=method, schedule=pruner, sparsity=sparsity,
        layer_targets=layer_targets,
    )  # fmt: skip


def train_imp(
    *,
    data: str | Path,
    seeds: Sequence[int],
    model_outs: Mapping[int, Paths],
    metrics_outs: Mapping[int, Paths],
    arch: Mapping[str, Any],
    hp: Mapping[str, Any],
    norm: Mapping[str, Any],
    imp: Mapping[str, Any],
    settings: Settings = None,
    curves_outs: Mapping[int, Paths] | None = None,
    tensorboard_dirs: Paths | None = None,
) -> dict[int, list[dict[str, Any]]]:
    """Sup IMP with weight rewinding (:mod:`prunelens.methods.imp`) to every
    sparsity (%) of ``model_outs``, in one job: the rounds pass through the
    lower targets on their way to the highest.

    ``imp``: ``rewind_epoch`` (0 = initialisation, < ``hp["epochs"]``) and
    ``fraction`` (of the remaining weights per round). Round 0 is the dense
    ``hp`` training; each later round retrains epochs ``rewind_epoch`` ..
    ``epochs - 1`` of the same lr schedule. Each target's ``model.pt`` and
    ``metrics.json`` (schedule ``imp``) are those after the round that ends
    at it; its metrics count every round up to it (``history`` rows carry
    their ``round``). Resume: see :func:`_imp_rounds`. ``curves_outs`` (per
    sparsity, per seed) get the curves of the rounds up to their target (a
    ``round`` column; steps count on across rounds); ``tensorboard_dirs``
    (per seed) one curve of every round.
    """
    sparsities = _imp_outputs(
        seeds, tensorboard_dirs,
        model=model_outs, metrics=metrics_outs, curves=curves_outs,
    )  # fmt: skip
    cfg = SGDConfig.from_dict(hp)
    plan = _ImpPlan.of(imp, cfg.epochs, sparsities)
    job = _Job.start(data, seeds, norm, settings)
    arch = {**arch, "n_classes": job.n_classes}  # saved with the model
    models, gens = job.seeded(lambda _: build_classifier(arch))
    k = len(models)
    net = _stack_classifiers(models, job.settings.device)
    every = prune_targets(net) if k == 1 else stacked_prune_targets(net)
    views = _crop_flip(hp["augment"])

    def make_run(lr_at: Callable[[int], float], after: AfterEpoch) -> Run:
        return Run(
            net, list(net.parameters()), views, _ce, lr_at, _sparsity(net, k),
            after_epoch=after,
        )  # fmt: skip

    def write(
        t: int, model: nn.Module, hists: list[History], extra: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return _finish_models(
            model, hists, job, model_outs[t], metrics_outs[t], [extra] * k,
            None if curves_outs is None else curves_outs[t],
            arch=arch, method="sup", schedule="imp", sparsity=t,
        )  # fmt: skip

    base = job.key(
        [data], stage="sup-imp", arch=arch, hp=hp, norm=norm, imp=imp,
        sparsities=sparsities,
    )  # fmt: skip
    return _imp_rounds(
        net, [(m, n) for m, n in every if n == "weight"], gens, job, plan, cfg,
        make_run=make_run, lr_at=cfg.lr_at, write=write,
        resume=resume_path(model_outs[sparsities[0]][0]), key=base, stage="sup",
        curves=Curves(tensorboard_dirs),
    )  # fmt: skip


# What an IMP target's outputs record of its run (_ImpPlan.extra).
IMP_KEYS = ("imp_round", "imp_fraction", "imp_rewind_epoch")
# Run.after_epoch: called with the number of epochs done.
AfterEpoch = Callable[[int], None] | None


@dataclass(frozen=True)
class _ImpPlan:
    """An IMP job's rounds: the cumulative sparsity after each (1-based; round
    0 is the dense training) and the round that ends at each target (%)."""

    rewind_epoch: int
    fraction: float
    sparsities: list[int]
    schedule: list[float]
    ends: dict[int, int]

    @classmethod
    def of(cls, imp: Mapping[str, Any], epochs: int, sparsities: list[int]) -> _ImpPlan:
        rewind_epoch, fraction = _imp_options(imp, epochs)
        schedule = imp_schedule([t / 100 for t in sparsities], fraction)
        ends = {t: rounds_to(schedule, t / 100) for t in sparsities}
        return cls(rewind_epoch, fraction, sparsities, schedule, ends)

    def extra(self, t: int) -> dict[str, Any]:
        """What a target's outputs record of its IMP run."""
        values = (self.ends[t], self.fraction, self.rewind_epoch)
        return dict(zip(IMP_KEYS, values, strict=True))


def _imp_outputs(
    seeds: Sequence[int],
    tensorboard_dirs: Paths | None,
    **outs: Mapping[int, Paths] | None,
) -> list[int]:
    """The IMP targets (%) of a job: the keys of its per-sparsity outputs
    (the first named is its main output; None: not asked for), all the same
    and each with one path per seed."""
    (main, first), *rest = outs.items()
    assert first is not None
    sparsities = sorted(first)
    if not sparsities or not all(
        isinstance(t, int) and 0 < t < 100 for t in sparsities
    ):
        raise ValueError(
            f"IMP sparsities must be percentages in 1..99, got {sparsities}"
        )
    for name, other in rest:
        if other is not None and sorted(other) != sparsities:
            raise ValueError(
                f"{main} and {name} outputs for different sparsities: "
                f"{sparsities} and {sorted(other)}"
            )
    for t in sparsities:
        per_seed = [o[t] for o in outs.values() if o is not None]
        _check_outputs(seeds, *per_seed, tensorboard_dirs)
    return sparsities


def _imp_rounds(
    net: nn.Module,
    targets: list[Target],
    gens: Sequence[torch.Generator],
    job: _Job,
    plan: _ImpPlan,
    cfg: SGDConfig,
    *,
    make_run: Callable[[Callable[[int], float], AfterEpoch], Run],
    lr_at: Callable[[int], float],
    write: Callable[[int, nn.Module, list[History], dict[str, Any]], _T],
    resume: Path,
    key: str,
    stage: str,
    curves: Curves,
) -> dict[int, _T]:
    """The IMP rounds of one job (Sup's or a contrastive pre-training's), then
    ``write(target, model, histories, extra)`` for each target.

    ``targets``: the weights IMP prunes (per model, globally over them);
    ``make_run(lr_at, after_epoch)``: the stage's :class:`Run` on ``net``;
    ``lr_at``: the dense training's lr per epoch (a retraining round goes on
    from the rewind epoch). The masks are installed here. ``model`` is a copy
    of ``net`` after the round that ends at ``target`` (masks still
    installed); ``histories`` chain every round up to it, one per model.
    ``curves``: one TensorBoard curve per model over every round (steps
    counting on across rounds; a resumed job's finished rounds rewritten).

    Resume: ``train``'s ``resume.pt`` within a round (``key``/round<r>), and
    ``resume.imp.pt`` (the rewind point, the model after the last finished
    round, the histories) and one ``resume.imp-s<target>.pt`` per target
    reached, beside ``resume``, all fingerprinted ``key``; all deleted once
    every target is written.
    """
    k = len(gens)
    rewind_epoch = plan.rewind_epoch
    install_masks(targets)
    state_file = resume.with_name("resume.imp.pt")

    def snapshot(t: int) -> Path:
        return resume.with_name(f"resume.imp-s{t}.pt")

    state = load_resume(state_file, key, job.settings.device) or {
        "round": -1,  # the last finished round
        "rewind": None,
        "net": None,
        "histories": [],  # per finished round, one History per model
    }
    if state["net"] is not None:
        net.load_state_dict(state["net"])
    if state["rewind"] is None and rewind_epoch == 0:
        state["rewind"] = capture(net, gens)

    def keep_rewind(done: int) -> None:
        if done == rewind_epoch:
            state["rewind"] = capture(net, gens)
            save_resume(state_file, key, state)

    for done in state["histories"]:  # a resumed job's finished rounds
        curves.write([h.steps for h in done], [h.epochs for h in done])
        curves.offset += done[0].step
    for r in range(state["round"] + 1, len(plan.schedule) + 1):
        round_cfg, round_lr = cfg, lr_at
        if r > 0:
            prune_to(targets, k, plan.schedule[r - 1])
            rewind(net, targets, gens, state["rewind"])
            round_cfg = replace(cfg, epochs=cfg.epochs - rewind_epoch)
            round_lr = lambda e: lr_at(e + rewind_epoch)  # noqa: E731
        run = make_run(round_lr, keep_rewind if r == 0 else None)
        hists = train(
            run, job.images, job.labels, round_cfg, gens, job.norm,
            settings=job.settings, resume=resume, key=f"{key}/round{r}",
            desc=job.desc(stage, f"imp-round{r}", plan.sparsities[-1]), curves=curves,
        )  # fmt: skip
        curves.offset += hists[0].step
        state["histories"].append(hists)
        for t in plan.sparsities:
            if plan.ends[t] == r:
                save_resume(snapshot(t), key, {"model": net.state_dict()})
        # Dropping the round's resume file first: a kill before the state
        # is saved reruns this round (the same result), never resumes the
        # next round from this one's file.
        resume.unlink(missing_ok=True)
        state.update(round=r, net=net.state_dict())
        save_resume(state_file, key, state)
    curves.close()

    out = {}
    refresh_weights(targets)  # no autograd graph left: the net can be copied
    for t in plan.sparsities:
        snap = load_resume(snapshot(t), key, job.settings.device)
        if snap is None:
            raise RuntimeError(
                f"IMP model of s{t} {snapshot(t)} is missing or unreadable; "
                f"delete {state_file} to rerun IMP from the start"
            )
        model = copy.deepcopy(net)  # writing bakes in the masks
        model.load_state_dict(snap["model"])
        r = plan.ends[t]
        hists = [
            _chain([h[j] for h in state["histories"][: r + 1]], rewind_epoch)
            for j in range(k)
        ]
        out[t] = write(t, model, hists, plan.extra(t))
    for t in plan.sparsities:
        snapshot(t).unlink(missing_ok=True)
    state_file.unlink(missing_ok=True)
    return out


def _imp_options(imp: Mapping[str, Any], epochs: int) -> tuple[int, float]:
    missing = sorted({"rewind_epoch", "fraction"} - set(imp))
    if missing:
        raise ValueError(f"imp needs {', '.join(missing)}")
    rewind_epoch, fraction = imp["rewind_epoch"], imp["fraction"]
    if not isinstance(rewind_epoch, int) or not 0 <= rewind_epoch < epochs:
        raise ValueError(
            f"imp.rewind_epoch must be an integer in [0, {epochs}) (the training "
            f"epochs), got {rewind_epoch!r}"
        )
    if not 0 < fraction < 1:
        raise ValueError(f"imp.fraction must be in (0, 1), got {fraction!r}")
    return rewind_epoch, float(fraction)


def _chain(rounds: Sequence[History], rewind_epoch: int) -> History:
    """One model's histories of consecutive IMP rounds as one; rows get their
    round, the epoch of the lr schedule (a retraining round starts after
    the rewind epoch) and the step counted from the first round's start."""
    out = History()
    for i, h in enumerate(rounds):
        shift = rewind_epoch if i else 0

        def moved(row: Mapping[str, Any], i: int = i, shift: int = shift) -> dict:
            at = {"step": row["step"] + out.step} if "step" in row else {}
            return {**row, "epoch": row["epoch"] + shift, "round": i, **at}

        out.epochs += [moved(row) for row in h.epochs]
        out.steps += [moved(row) for row in h.steps]
        out.step += h.step
        out.wall_time_s += h.wall_time_s
        out.images_seen += h.images_seen
    return out


def pretrain_supcon(
    *,
    data: str | Path,
    seeds: Sequence[int],
    encoder_outs: Paths,
    arch: Mapping[str, Any],
    hp: Mapping[str, Any],
    norm: Mapping[str, Any],
    gmp: Mapping[str, Any] | None,
    sparsity: int,
    schedule: str,
    settings: Settings = None,
    objective: str = "supcon",
    curves_outs: Paths | None = None,
    tensorboard_dirs: Paths | None = None,
) -> list[dict[str, Any]]:
    """Contrastive pre-training of encoder + projection head (§4.2).

    ``objective``: "supcon" (SCL: SupCon loss, positives share a label) or
    "simclr" (SimCLR: NT-Xent, labels unused; ``hp`` has no base_temperature).
    GMP, when ``sparsity`` > 0, prunes the encoder's convolutions only; the
    projection head is never pruned and is dropped after this stage.
    Writes each encoder (masks permanent) with its training history and the
    per-tensor sparsity of the encoder and projection head (``layers``,
    ``projection_head_layers``).
    """
    loss = _contrastive(objective, hp)  # an unknown objective fails first
    _check_outputs(seeds, encoder_outs, curves_outs, tensorboard_dirs)
    job = _Job.start(data, seeds, norm, settings)
    net, gens, k = _supcon_networks(job, arch)
    cfg = SGDConfig.from_dict(hp)
    sched = gmp_schedule(sparsity, gmp)
    run = Run(
        net,
        list(net.parameters()),
        _two_views(hp["augment"]),
        loss,
        _pretrain_lr(cfg, hp),
        _sparsity(net.encoder, k),
        _gmp(sched, net.encoder, k, linears=False),
        accuracy=False,
    )
    resume = resume_path(encoder_outs[0])
    stage = f"{_METHOD_OF[objective]}-pretrain"
    key = job.key(
        [data], stage=stage, objective=objective, arch=arch, hp=hp, norm=norm,
        gmp=gmp, sparsity=sparsity,
    )  # fmt: skip
    curves = Curves(tensorboard_dirs)
    hists = train(
        run, job.images, job.labels, cfg, gens, job.norm,
        settings=job.settings, resume=resume, key=key,
        desc=job.desc(stage, schedule, sparsity), curves=curves,
    )  # fmt: skip
    curves.close()
    states = _write_encoders(
        net, hists, job, encoder_outs, sched=sched, curves_outs=curves_outs,
        arch=arch, schedule=schedule, sparsity=sparsity, objective=objective,
    )  # fmt: skip
    resume.unlink(missing_ok=True)
    return states


def pretrain_imp(
    *,
    data: str | Path,
    seeds: Sequence[int],
    encoder_outs: Mapping[int, Paths],
    arch: Mapping[str, Any],
    hp: Mapping[str, Any],
    norm: Mapping[str, Any],
    imp: Mapping[str, Any],
    settings: Settings = None,
    objective: str = "supcon",
    curves_outs: Mapping[int, Paths] | None = None,
    tensorboard_dirs: Paths | None = None,
) -> dict[int, list[dict[str, Any]]]:
    """IMP with weight rewinding over contrastive pre-training (SCL, SimCLR)
    to every sparsity (%) of ``encoder_outs``, in one job.

    As :func:`train_imp` for Sup, with :func:`pretrain_supcon`'s network,
    objective and cosine lr (``hp``: the method's ``pretrain`` section; a
    retraining round goes on from the rewind epoch). IMP prunes the
    encoder's convolution weights, globally per model; the projection head
    is never pruned (it is rewound with the rest). Each target's
    ``encoder.pt`` is :func:`pretrain_supcon`'s file with schedule ``imp``,
    ``imp_round``, ``imp_fraction`` and ``imp_rewind_epoch``; its history,
    steps and wall time count every round up to it. Resume: see
    :func:`_imp_rounds` (``resume.imp*.pt`` beside the first output).
    Curves as :func:`train_imp`'s (``encoder_curves.csv`` per target).
    """
    loss = _contrastive(objective, hp)  # an unknown objective fails first
    sparsities = _imp_outputs(
        seeds, tensorboard_dirs, encoder=encoder_outs, curves=curves_outs
    )
    cfg = SGDConfig.from_dict(hp)
    plan = _ImpPlan.of(imp, cfg.epochs, sparsities)
    job = _Job.start(data, seeds, norm, settings)
    net, gens, k = _supcon_networks(job, arch)
    convs = (prune_targets if k == 1 else stacked_prune_targets)(
        net.encoder, linears=False
    )
    views = _two_views(hp["augment"])

    def make_run(lr_at: Callable[[int], float], after: AfterEpoch) -> Run:
        return Run(
            net, list(net.parameters()), views, loss, lr_at,
            _sparsity(net.encoder, k), after_epoch=after, accuracy=False,
        )  # fmt: skip

    def write(
        t: int, model: nn.Module, hists: list[History], extra: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return _write_encoders(
            model, hists, job, encoder_outs[t], extra,
            curves_outs=None if curves_outs is None else curves_outs[t],
            arch=arch, schedule="imp", sparsity=t, objective=objective,
        )  # fmt: skip

    stage = f"{_METHOD_OF[objective]}-pretrain"
    base = job.key(
        [data], stage=f"{_METHOD_OF[objective]}-imp", objective=objective,
        arch=arch, hp=hp, norm=norm, imp=imp, sparsities=sparsities,
    )  # fmt: skip
    return _imp_rounds(
        net, [(m, n) for m, n in convs if n == "weight"], gens, job, plan, cfg,
        make_run=make_run, lr_at=_pretrain_lr(cfg, hp), write=write,
        resume=resume_path(encoder_outs[sparsities[0]][0]), key=base, stage=stage,
        curves=Curves(tensorboard_dirs, accuracy=False),
    )  # fmt: skip


def _supcon_networks(
    job: _Job, arch: Mapping[str, Any]
) -> tuple[Any, list[torch.Generator], int]:
    """Encoder + projection head per seed (stacked for K > 1), on the device."""
    nets, gens = job.seeded(lambda _: SupConNetwork(build_encoder(arch)))
    k = len(nets)
    net = nets[0] if k == 1 else StackedSupConNetwork.from_models(nets)
    return net.to(job.settings.device, memory_format=torch.channels_last), gens, k


def _pretrain_lr(cfg: SGDConfig, hp: Mapping[str, Any]) -> Callable[[int], float]:
    """Pre-training's cosine annealing over ``cfg.epochs``."""
    eta_min = hp["lr"] * hp["eta_min_factor"]
    return lambda e: cosine_lr(cfg.lr, eta_min, cfg.epochs, e)


def _write_encoders(
    net: Any,
    hists: list[History],
    job: _Job,
    encoder_outs: Paths,
    extra: Mapping[str, Any] | None = None,
    *,
    sched: GMPSchedule | None = None,
    curves_outs: Paths | None = None,
    arch: Mapping[str, Any],
    schedule: str,
    sparsity: int,
    objective: str,
) -> list[dict[str, Any]]:
    """Write each encoder of a (stacked) SupCon network, masks baked in
    (``net`` loses its hooks), with its history and per-tensor sparsity:
    ``encoder.pt`` of the README, plus ``extra`` keys. ``sched``: the GMP
    that pruned the encoder, for the per-tensor targets of ``layers`` (None:
    no per-tensor target, e.g. IMP's global count); ``curves_outs``: each
    encoder's ``encoder_curves.csv``."""
    k = len(hists)
    make_permanent(net)
    head_sparsity = _sparsity(net.head, k)()
    singles = [net] if k == 1 else net.unstack()
    encoder_targets = _gmp_targets(sched, singles[0].encoder, linears=False)
    states = []
    for single, seed, hist, out, head_sp, curves_out in zip(
        singles, job.seeds, hists, encoder_outs, head_sparsity,
        curves_outs or [None] * k, strict=True,
    ):  # fmt: skip
        state = {
            "arch": dict(arch),
            "state_dict": {n: v.cpu() for n, v in single.encoder.state_dict().items()},
            "meta": {
                "schedule": schedule,
                "sparsity": sparsity,
                "seed": seed,
                "objective": objective,
            },
            "history": hist.epochs,
            "steps": hist.step,
            "wall_time_s": hist.wall_time_s,
            # two augmented views of every image go through the network
            "image_views_per_s": 2 * hist.images_seen / max(hist.wall_time_s, 1e-9),
            "sparsity_measured": measured_sparsity(single.encoder),
            "projection_head_sparsity": head_sp,
            "layers": layer_sparsity(single.encoder, encoder_targets),
            "projection_head_layers": layer_sparsity(single.head),
            "versions": versions(),
            **(extra or {}),
        }
        with atomic_path(out) as tmp:
            torch.save(state, tmp)
        if curves_out is not None:
            write_curves(curves_out, hist.steps, hist.epochs, accuracy=False)
        log.info("seed %d: encoder sparsity %.4f", seed, state["sparsity_measured"])
        states.append(state)
    return states


def fit_linear_head(
    *,
    data: str | Path,
    encoders: Paths,
    seeds: Sequence[int],
    model_outs: Paths,
    metrics_outs: Paths,
    hp: Mapping[str, Any],
    augment_cfg: Mapping[str, Any],
    norm: Mapping[str, Any],
    gmp: Mapping[str, Any] | None,
    sparsity: int,
    schedule: str,
    settings: Settings = None,
    method: str = "scl",
    curves_outs: Paths | None = None,
    tensorboard_dirs: Paths | None = None,
) -> list[dict[str, Any]]:
    """Linear classifiers on the frozen encoders (§4.3); GMP on them when sparse.

    ``method``: the contrastive method the encoders were pre-trained by
    ("scl" or "simclr"), recorded in each model's metrics.

    Each encoder stays in eval mode (BN running statistics) and gets no
    gradient; the head's weight and bias are GMP-pruned when ``sparsity`` > 0.
    """
    _check_outputs(
        seeds, encoders, model_outs, metrics_outs, curves_outs, tensorboard_dirs
    )
    job = _Job.start(data, seeds, norm, settings)
    by_seed = dict(zip(job.seeds, encoders, strict=True))
    pre: dict[int, dict[str, Any]] = {}

    def build(seed: int) -> Classifier:
        pre[seed] = load_encoder(by_seed[seed])
        enc = build_encoder(pre[seed]["arch"])  # draws, as a solo run did
        enc.load_state_dict(pre[seed]["state_dict"])
        return Classifier(enc, job.n_classes)

    models, gens = job.seeded(build)
    k = len(models)
    net = _stack_classifiers(models, job.settings.device)
    assert isinstance(net, Classifier | StackedClassifier)
    net.encoder.requires_grad_(False)
    cfg = SGDConfig.from_dict(hp)
    sched = gmp_schedule(sparsity, gmp)
    lrs = chained_head_lrs(
        cfg.lr, cfg.epochs, cfg.milestones, cfg.gamma, hp["cosine_eta_min"]
    )

    def train_mode() -> None:
        net.train()
        net.encoder.eval()

    def head_only(x: Tensor) -> Tensor:
        with torch.no_grad():
            rep = net.encoder(x)
        return net.fc(rep)

    run = Run(
        net,
        list(net.fc.parameters()),
        _crop_flip(augment_cfg),
        lambda _, x, y: _ce(head_only, x, y),
        lambda e: lrs[e],
        _sparsity(net, k),
        _gmp(sched, net.fc, k, convs=False),
        train_mode,
    )
    resume = resume_path(model_outs[0])
    key = job.key(
        list(encoders), stage=f"{method}-head", hp=hp, augment=augment_cfg, norm=norm,
        gmp=gmp, sparsity=sparsity,
    )  # fmt: skip
    curves = Curves(tensorboard_dirs)
    hists = train(
        run, job.images, job.labels, cfg, gens, job.norm,
        settings=job.settings, resume=resume, key=key,
        desc=job.desc(f"{method}-head", schedule, sparsity), curves=curves,
    )  # fmt: skip
    curves.close()
    extras = [
        {
            "pretrain_wall_time_s": pre[s]["wall_time_s"],
            "pretrain_steps": pre[s]["steps"],
            "pretrain_image_views_per_s": pre[s]["image_views_per_s"],
            "encoder_sparsity": pre[s]["sparsity_measured"],
            # an IMP encoder's rounds (pretrain_imp), as Sup IMP's metrics
            **{key: pre[s][key] for key in IMP_KEYS if key in pre[s]},
        }
        for s in job.seeds
    ]
    # the encoder's targets are its pre-training's (an encoder.pt without
    # ``layers`` sets none), the head's its own GMP's
    encoder_layers = pre[job.seeds[0]].get("layers", [])
    layer_targets = {
        f"encoder.{r['tensor']}": r["target"]
        for r in encoder_layers
        if r["target"] is not None
    } | _gmp_targets(sched, models[0].fc, "fc.", convs=False)
    return _finish_all(
        net, hists, job, model_outs, metrics_outs, resume, extras, curves_outs,
        arch={**pre[job.seeds[0]]["arch"], "n_classes": job.n_classes},
        method=method, schedule=schedule, sparsity=sparsity,
        layer_targets=layer_targets,
    )  # fmt: skip
