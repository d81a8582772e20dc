"""Training loops with pruning, per-epoch checkpoints and bit-identical resume.

One generic loop (``fit``) serves every stage; the stage functions below it
(``train_supervised``, ``oneshot_finetune``) only choose the model, the
trainable parameters, the loss and the pruning driver.

Resume contract: ``fit`` writes ``resume.pt`` (model, optimiser, pruning
state, the data/augmentation RNG, history) atomically after every epoch and
continues from it when it exists, so a killed job re-run by Snakemake picks
up where it stopped and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from prunelens import augment
from prunelens.data import load_prepared
from prunelens.evaluate import accuracy, predict
from prunelens.losses import supcon_loss
from prunelens.models import (
    Classifier,
    ProjectionHead,
    WideResNetEncoder,
    build_classifier,
    load_model,
    save_model,
)
from prunelens.pruning import (
    GMP,
    GMPSchedule,
    make_permanent,
    measured_sparsity,
    prune_global,
    prune_targets,
)
from prunelens.runtime import atomic_path, keep_freed_memory, pick_device, write_json

log = logging.getLogger("prunelens.train")

# (images uint8 NHWC batch, labels, generator) -> (loss, number correct); the
# count stays a tensor so that a GPU step never waits for the host.
BatchLoss = Callable[[Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]

__all__ = [
    "SGDConfig",
    "TrainingDiverged",
    "chained_head_lrs",
    "cosine_lr",
    "fit",
    "fit_linear_head",
    "gmp_schedule",
    "oneshot_finetune",
    "pretrain_supcon",
    "train_supervised",
    "train_tensors",
]


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


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    step: int = 0
    wall_time_s: float = 0.0
    images_seen: int = 0


@dataclass(frozen=True)
class Normalisation:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalisation:
        return cls(tuple(d["mean"]), tuple(d["std"]))


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def fit(
    model: nn.Module,
    params: Sequence[nn.Parameter],
    images: Tensor,
    labels: Tensor,
    cfg: SGDConfig,
    batch_loss: BatchLoss,
    *,
    checkpoint: Path,
    generator: torch.Generator,
    gmp: GMP | None = None,
    lr_at: Callable[[int], float] | None = None,
    set_mode: Callable[[], None] | None = None,
    pruned: nn.Module | None = None,
    precision: str = "fp32",
    desc: str = "train",
) -> History:
    """Train ``params`` for ``cfg.epochs`` epochs over (images, labels).

    ``precision="bf16"`` runs the forward pass under bfloat16 autocast (on CPUs
    with AVX512-BF16 and on GPUs about twice as fast); weights, optimiser and
    loss stay in float32.
    """
    opt = torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )
    hist = History()
    start = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=images.device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"].cpu())  # set_state wants a CPU tensor
        if gmp is not None:
            gmp.load_state_dict(state["gmp"])
        hist = state["history"]
        start = len(hist.epochs)
        log.info("resumed from %s at epoch %d/%d", checkpoint, start, cfg.epochs)
    lr_fn = lr_at or cfg.lr_at
    n = len(labels)
    for epoch in range(start, cfg.epochs):
        lr = lr_fn(epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        (set_mode or model.train)()
        t0 = time.perf_counter()
        perm = augment.permutation(n, generator, images.device)
        total_loss = torch.zeros((), device=images.device)
        correct = torch.zeros((), dtype=torch.long, device=images.device)
        bar = tqdm(
            range(0, n, cfg.batch_size), desc=f"{desc} {epoch + 1}", disable=None
        )
        for i in bar:
            hist.step += 1
            if gmp is not None:
                gmp.step(hist.step)
            idx = perm[i : i + cfg.batch_size]
            with torch.autocast(
                images.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"
            ):
                loss, n_right = batch_loss(images[idx], labels[idx], generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.detach() * len(idx)
            correct += n_right
        mean_loss = float(total_loss) / n
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(
                f"{desc}: loss is {mean_loss} in epoch {epoch + 1} (lr {lr:g}); "
                "lower the learning rate or check the data"
            )
        dt = time.perf_counter() - t0
        hist.wall_time_s += dt
        hist.images_seen += n
        row = {
            "epoch": epoch + 1,
            "loss": mean_loss,
            "train_acc": int(correct) / n,
            "lr": lr,
            "sparsity": measured_sparsity(pruned or model),
            "images_per_s": n / dt,
        }
        hist.epochs.append(row)
        log.info(
            "%s epoch %d/%d loss %.4f train_acc %.4f lr %.2e sparsity %.4f %.0f img/s",
            desc,
            epoch + 1,
            cfg.epochs,
            row["loss"],
            row["train_acc"],
            lr,
            row["sparsity"],
            row["images_per_s"],
        )
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "generator": generator.get_state(),
            "gmp": gmp.state_dict() if gmp is not None else None,
            "history": hist,
        }
        _save_checkpoint(checkpoint, state)
    return hist


# ---------------------------------------------------------------- stages


def _setup(threads: int, device: str, seed: int) -> tuple[str, torch.Generator]:
    torch.set_num_threads(max(1, threads))
    keep_freed_memory()
    dev = pick_device(device)
    # Model initialisation (global RNG, CPU: parameters are built on the CPU
    # and then moved), data order and augmentation (a CPU generator whose
    # draws are copied to the device): the same on CPU and GPU.
    torch.manual_seed(seed)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return dev, gen


def train_tensors(data: str | Path, device: str) -> tuple[Tensor, Tensor]:
    """The training split as uint8 images and labels, once, on ``device``."""
    train = load_prepared(data, "train")
    return (
        torch.from_numpy(train.images).to(device),
        torch.from_numpy(train.labels).to(device),
    )


def gmp_schedule(sparsity: int, gmp: Mapping[str, Any] | None) -> GMPSchedule | None:
    """The GMP schedule to ``sparsity`` percent, None for a dense model."""
    if sparsity == 0:
        return None
    if gmp is None:
        raise ValueError(f"sparsity {sparsity}% needs a GMP schedule")
    return GMPSchedule(final=sparsity / 100, **gmp)


def _supervised_loss(
    model: nn.Module, norm: Normalisation, aug: Mapping[str, Any]
) -> BatchLoss:
    def batch_loss(x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        x = augment.crop_flip(augment.to_unit_float(x), gen, **aug)
        x = augment.normalize(x, norm.mean, norm.std)
        # channels_last: ~20% faster convolutions on CPU, and on GPU tensor cores
        logits = model(x.contiguous(memory_format=torch.channels_last))
        return F.cross_entropy(logits, y), (logits.argmax(1) == y).sum()

    return batch_loss


def finish_training(
    model: Classifier,
    hist: History,
    *,
    data: str | Path,
    norm: Normalisation,
    device: str,
    eval_batch_size: int,
    model_out: str | Path,
    metrics_out: str | Path,
    checkpoint: Path,
    arch: Mapping[str, int],
    method: str,
    schedule: str,
    sparsity: int,
    seed: int,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Make masks permanent, test, write ``model.pt`` and ``metrics.json``.

    The one ending of every classifier training (Sup, One-Shot, the SCL
    head, a stacked block's models): the metrics keys are the file contract
    of docs/data-format.md. Removes the resume ``checkpoint``.
    """
    meta = {
        "arch": dict(arch),
        "method": method,
        "schedule": schedule,
        "sparsity": sparsity,
        "seed": seed,
    }
    make_permanent(model)
    test = load_prepared(data, "test")
    logits, _ = predict(
        model, test.images, norm.mean, norm.std, device=device, batch=eval_batch_size
    )
    metrics = {
        **meta,
        "test_acc": accuracy(logits, test.labels),
        "sparsity_measured": measured_sparsity(model),
        "epochs": len(hist.epochs),
        "steps": hist.step,
        "wall_time_s": hist.wall_time_s,
        "train_images_per_s": hist.images_seen / max(hist.wall_time_s, 1e-9),
        "device": device,
        "torch": torch.__version__,
        "history": hist.epochs,
        **(extra or {}),
    }
    save_model(model_out, model, meta)
    write_json(metrics_out, metrics)
    checkpoint.unlink(missing_ok=True)
    log.info(
        "test accuracy %.4f, sparsity %.4f",
        metrics["test_acc"],
        metrics["sparsity_measured"],
    )
    return metrics


def train_supervised(
    *,
    data: str | Path,
    model_out: str | Path,
    metrics_out: str | Path,
    arch: Mapping[str, int],
    hp: Mapping[str, Any],
    norm: Mapping[str, Any],
    gmp: Mapping[str, Any] | None,
    sparsity: int,
    seed: int,
    schedule: str,
    device: str = "auto",
    threads: int = 1,
    precision: str = "fp32",
    eval_batch_size: int = 1024,
) -> dict[str, Any]:
    """Sup training from scratch: dense (sparsity 0) or with GMP to ``sparsity``%."""
    dev, gen = _setup(threads, device, seed)
    cfg = SGDConfig.from_dict(hp)
    normal = Normalisation.from_dict(norm)
    model = build_classifier(**arch).to(dev, memory_format=torch.channels_last)
    sched = gmp_schedule(sparsity, gmp)
    driver = GMP(sched, prune_targets(model)) if sched else None
    images, labels = train_tensors(data, dev)
    ckpt = Path(model_out).parent / "resume.pt"
    hist = fit(
        model,
        list(model.parameters()),
        images,
        labels,
        cfg,
        _supervised_loss(model, normal, hp["augment"]),
        checkpoint=ckpt,
        generator=gen,
        gmp=driver,
        precision=precision,
        desc=f"sup/{schedule}/s{sparsity}/seed{seed}",
    )
    return finish_training(
        model,
        hist,
        data=data,
        norm=normal,
        device=dev,
        eval_batch_size=eval_batch_size,
        model_out=model_out,
        metrics_out=metrics_out,
        checkpoint=ckpt,
        arch=arch,
        method="sup",
        schedule=schedule,
        sparsity=sparsity,
        seed=seed,
    )


def oneshot_finetune(
    *,
    data: str | Path,
    dense_model: str | Path,
    model_out: str | Path,
    metrics_out: str | Path,
    hp: Mapping[str, Any],
    augment_cfg: Mapping[str, Any],
    norm: Mapping[str, Any],
    method: str,
    sparsity: int,
    seed: int,
    device: str = "auto",
    threads: int = 1,
    precision: str = "fp32",
    eval_batch_size: int = 1024,
) -> dict[str, Any]:
    """Global magnitude pruning of a trained model, then CE fine-tuning (§5.3).

    The whole classifier (encoder and linear head) is pruned together and
    fine-tuned end to end, for Sup and SCL alike.
    """
    dev, gen = _setup(threads, device, seed)
    model, dense_meta = load_model(dense_model, dev)
    model = model.to(memory_format=torch.channels_last)
    prune_global(prune_targets(model), sparsity / 100)
    cfg = SGDConfig.from_dict(hp)
    normal = Normalisation.from_dict(norm)
    images, labels = train_tensors(data, dev)
    ckpt = Path(model_out).parent / "resume.pt"
    hist = fit(
        model,
        list(model.parameters()),
        images,
        labels,
        cfg,
        _supervised_loss(model, normal, augment_cfg),
        checkpoint=ckpt,
        generator=gen,
        precision=precision,
        desc=f"{method}/oneshot/s{sparsity}/seed{seed}",
    )
    return finish_training(
        model,
        hist,
        data=data,
        norm=normal,
        device=dev,
        eval_batch_size=eval_batch_size,
        model_out=model_out,
        metrics_out=metrics_out,
        checkpoint=ckpt,
        arch=dense_meta["arch"],
        method=method,
        schedule="oneshot",
        sparsity=sparsity,
        seed=seed,
    )


# ---------------------------------------------------------------- SCL


class SupConNetwork(nn.Module):
    """Encoder plus projection head, used only during contrastive pre-training."""

    def __init__(self, encoder: WideResNetEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = ProjectionHead(encoder.dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


def _supcon_batch_loss(
    net: SupConNetwork, norm: Normalisation, hp: Mapping[str, Any]
) -> BatchLoss:
    aug = dict(hp["augment"])
    view_kw = {
        "scale": tuple(aug["scale"]),
        "jitter": tuple(aug["jitter"]),
        "p_jitter": aug["p_jitter"],
        "p_gray": aug["p_gray"],
    }

    def batch_loss(x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        v1, v2 = augment.two_views(augment.to_unit_float(x), gen, **view_kw)
        both = augment.normalize(torch.cat([v1, v2]), norm.mean, norm.std)
        z = net(both.contiguous(memory_format=torch.channels_last))
        f1, f2 = z.split(len(x))
        loss = supcon_loss(
            torch.stack([f1, f2], dim=1),
            y,
            temperature=hp["temperature"],
            base_temperature=hp["base_temperature"],
        )
        # no classifier yet: no accuracy during pre-training
        return loss, torch.zeros((), dtype=torch.long, device=x.device)

    return batch_loss


def pretrain_supcon(
    *,
    data: str | Path,
    encoder_out: str | Path,
    arch: Mapping[str, int],
    hp: Mapping[str, Any],
    norm: Mapping[str, Any],
    gmp: Mapping[str, Any] | None,
    sparsity: int,
    seed: int,
    schedule: str,
    device: str = "auto",
    threads: int = 1,
    precision: str = "fp32",
) -> dict[str, Any]:
    """SupCon pre-training of encoder + projection head (§4.2).

    GMP, when ``sparsity`` > 0, prunes the encoder's convolutions only; the
    projection head is never pruned and is dropped after this stage.
    Writes the encoder (masks permanent) and its training history.
    """
    dev, gen = _setup(threads, device, seed)
    cfg = SGDConfig.from_dict(hp)
    normal = Normalisation.from_dict(norm)
    net = SupConNetwork(WideResNetEncoder(**arch)).to(
        dev, memory_format=torch.channels_last
    )
    sched = gmp_schedule(sparsity, gmp)
    driver = GMP(sched, prune_targets(net.encoder, linears=False)) if sched else None
    eta_min = hp["lr"] * hp["eta_min_factor"]
    ckpt = Path(encoder_out).parent / "resume_pretrain.pt"
    hist = fit(
        net,
        list(net.parameters()),
        *train_tensors(data, dev),
        cfg,
        _supcon_batch_loss(net, normal, hp),
        checkpoint=ckpt,
        generator=gen,
        gmp=driver,
        lr_at=lambda e: cosine_lr(cfg.lr, eta_min, cfg.epochs, e),
        pruned=net.encoder,
        precision=precision,
        desc=f"scl-pretrain/{schedule}/s{sparsity}/seed{seed}",
    )
    make_permanent(net)
    state = {
        "arch": dict(arch),
        "state_dict": {k: v.cpu() for k, v in net.encoder.state_dict().items()},
        "meta": {"schedule": schedule, "sparsity": sparsity, "seed": seed},
        "history": hist.epochs,
        "steps": hist.step,
        "wall_time_s": hist.wall_time_s,
        # two augmented views of every image go through the network
        "image_views_per_s": 2 * hist.images_seen / max(hist.wall_time_s, 1e-9),
        "sparsity_measured": measured_sparsity(net.encoder),
        "projection_head_sparsity": measured_sparsity(net.head),
    }
    with atomic_path(encoder_out) as tmp:
        torch.save(state, tmp)
    ckpt.unlink(missing_ok=True)
    log.info("encoder sparsity %.4f", state["sparsity_measured"])
    return state


def fit_linear_head(
    *,
    data: str | Path,
    encoder: str | Path,
    model_out: str | Path,
    metrics_out: str | Path,
    hp: Mapping[str, Any],
    augment_cfg: Mapping[str, Any],
    norm: Mapping[str, Any],
    gmp: Mapping[str, Any] | None,
    sparsity: int,
    seed: int,
    schedule: str,
    device: str = "auto",
    threads: int = 1,
    precision: str = "fp32",
    eval_batch_size: int = 1024,
) -> dict[str, Any]:
    """Linear classifier on the frozen encoder (§4.3); GMP on it when sparse.

    The encoder stays in eval mode (BN running statistics) and gets no
    gradient; the head's weight and bias are GMP-pruned when ``sparsity`` > 0.
    """
    dev, gen = _setup(threads, device, seed)
    pre = torch.load(encoder, map_location=dev, weights_only=False)
    enc = WideResNetEncoder(**pre["arch"])
    enc.load_state_dict(pre["state_dict"])
    model = Classifier(enc).to(dev, memory_format=torch.channels_last)
    model.encoder.requires_grad_(False)
    cfg = SGDConfig.from_dict(hp)
    normal = Normalisation.from_dict(norm)
    sched = gmp_schedule(sparsity, gmp)
    driver = GMP(sched, prune_targets(model.fc)) if sched else None
    lrs = chained_head_lrs(
        cfg.lr, cfg.epochs, cfg.milestones, cfg.gamma, hp["cosine_eta_min"]
    )

    def set_mode() -> None:
        model.train()
        model.encoder.eval()

    def batch_loss(x: Tensor, y: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        x = augment.crop_flip(augment.to_unit_float(x), g, **augment_cfg)
        x = augment.normalize(x, normal.mean, normal.std)
        with torch.no_grad():
            rep = model.encoder(x.contiguous(memory_format=torch.channels_last))
        logits = model.fc(rep)
        return F.cross_entropy(logits, y), (logits.argmax(1) == y).sum()

    ckpt = Path(model_out).parent / "resume.pt"
    hist = fit(
        model,
        list(model.fc.parameters()),
        *train_tensors(data, dev),
        cfg,
        batch_loss,
        checkpoint=ckpt,
        generator=gen,
        gmp=driver,
        lr_at=lambda e: lrs[e],
        set_mode=set_mode,
        precision=precision,
        desc=f"scl-head/{schedule}/s{sparsity}/seed{seed}",
    )
    metrics = finish_training(
        model,
        hist,
        data=data,
        norm=normal,
        device=dev,
        eval_batch_size=eval_batch_size,
        model_out=model_out,
        metrics_out=metrics_out,
        checkpoint=ckpt,
        arch=pre["arch"],
        method="scl",
        schedule=schedule,
        sparsity=sparsity,
        seed=seed,
        extra={
            "pretrain_wall_time_s": pre["wall_time_s"],
            "pretrain_steps": pre["steps"],
            "pretrain_image_views_per_s": pre["image_views_per_s"],
            "encoder_sparsity": pre["sparsity_measured"],
        },
    )
    return metrics
