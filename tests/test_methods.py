"""Pruning methods: the registry, random masks, layer-wise One-Shot, IMP."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_layers_match
from torch import nn

import prunelens.train as train_mod
from prunelens import augment
from prunelens.methods import PRUNERS, make_pruner, pruner_key
from prunelens.methods.imp import capture, imp_schedule, prune_to, rewind
from prunelens.models import build_classifier, load_model
from prunelens.pruning import (
    install_masks,
    make_permanent,
    measured_sparsity,
    prune_global,
    prune_targets,
)
from prunelens.stacked import StackedClassifier, stacked_prune_targets
from prunelens.train import (
    cosine_lr,
    fit_linear_head,
    oneshot_finetune,
    pretrain_imp,
    train_imp,
    train_supervised,
)

ARCH = {"depth": 10, "width": 1}
NORM = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
AUG = {"padding": 4, "hflip": True, "vflip": True}
HP = {
    "epochs": 2,
    "batch_size": 64,
    "lr": 0.05,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5e-4,
    "milestones": [1],
    "gamma": 0.1,
    "augment": AUG,
}
CPU = {"device": "cpu"}


def _toy() -> nn.Module:
    """A conv (2x1x2x2 = 8 weights) and a linear (3x4 = 12 weights, 3 biases)."""
    net = nn.Sequential(nn.Conv2d(1, 2, 2, bias=False), nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        # |w| = 1..23 over the targets, signs alternating
        values = torch.arange(1, 24, dtype=torch.float32)
        values[1::2] *= -1
        net[0].weight.copy_(values[:8].view(2, 1, 2, 2))
        net[2].weight.copy_(values[8:20].view(3, 4))
        net[2].bias.copy_(values[20:])
    return net


def _masks(targets) -> list[torch.Tensor]:
    return [getattr(m, f"{n}_mask").clone() for m, n in targets]


def _pruned(targets) -> int:
    return sum(int((getattr(m, f"{n}_mask") == 0).sum()) for m, n in targets)


def _models(seeds: list[int]):
    out = []
    for s in seeds:
        torch.manual_seed(s)
        out.append(build_classifier(ARCH))
    return out


# ------------------------------------------------------------ the registry


def test_the_registry_names_oneshot_and_random():
    assert sorted(PRUNERS) == ["oneshot", "random"]
    assert pruner_key("oneshot", make_pruner("oneshot")) == {
        "name": "oneshot",
        "scope": "global",
    }
    assert pruner_key("random", make_pruner("random", {})) == {"name": "random"}


BAD_METHODS = [
    ("magnitude", None, "unknown pruning method 'magnitude'; known: oneshot, random"),
    ("random", {"scope": "global"},
     "pruning method 'random' has no option scope; its options: none"),
    ("oneshot", {"scpe": "global"},
     "pruning method 'oneshot' has no option scpe; its options: scope"),
    ("oneshot", {"scope": "local"},
     "oneshot.scope must be one of layerwise, global, got 'local'"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "options", "message"), BAD_METHODS)
def test_a_bad_method_or_option_is_named(name, options, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make_pruner(name, options)


# ------------------------------------------------------------------ random


def test_random_masks_prune_exactly_the_target_count_of_what_remains():
    net = _toy()
    targets = prune_targets(net)  # 8 + 12 + 3 = 23 entries
    make_pruner("random").prune(targets, 1, 0.7, seeds=[0])
    assert _pruned(targets) == round(0.7 * 23) == 16
    first = _masks(targets)
    make_pruner("random").prune(targets, 1, 0.5, seeds=[1])
    assert _pruned(targets) == 16 + round(0.5 * 7) == 20
    for old, new in zip(first, _masks(targets), strict=True):
        assert torch.all(new <= old)  # pruned entries stay pruned
    for m, n in targets:  # the effective weight follows the mask
        w = getattr(m, n)
        assert torch.equal(w == 0, getattr(m, f"{n}_mask") == 0)


def test_random_masks_differ_by_seed_repeat_per_seed_and_ignore_the_weights():
    def mask(seed: int, scale: float) -> list[torch.Tensor]:
        net = _toy()
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(scale)
        targets = prune_targets(net)
        make_pruner("random").prune(targets, 1, 0.5, seeds=[seed])
        return _masks(targets)

    def same(a, b) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    assert same(mask(3, 1.0), mask(3, 1.0))
    assert same(mask(3, 1.0), mask(3, -7.5))  # other values, same mask
    assert not same(mask(3, 1.0), mask(4, 1.0))


def test_random_masks_are_global_not_per_layer():
    """Over all targets together: some seed leaves the layers unequally pruned."""
    fractions = set()
    for seed in range(20):
        targets = prune_targets(_toy())
        make_pruner("random").prune(targets, 1, 0.5, seeds=[seed])
        assert _pruned(targets) == round(0.5 * 23)
        fractions.add(int((targets[0][0].weight_mask == 0).sum()))
    assert len(fractions) > 1


def test_random_masks_of_a_stack_equal_each_models_own():
    seeds = [3, 4, 5]
    models = _models(seeds)
    stacked = StackedClassifier.from_models(models)
    targets = stacked_prune_targets(stacked)
    make_pruner("random").prune(targets, 3, 0.6, seeds=seeds)
    for i, (m, seed) in enumerate(zip(models, seeds, strict=True)):
        own = prune_targets(m)
        make_pruner("random").prune(own, 1, 0.6, seeds=[seed])
        for (sm, name), (om, on) in zip(targets, own, strict=True):
            want = getattr(om, f"{on}_mask")
            part = getattr(sm, f"{name}_mask").unflatten(0, (3, -1))[i]
            assert torch.equal(part.view_as(want), want)
    make_permanent(stacked)
    for m, back in zip(models, stacked.unstack(), strict=True):
        make_permanent(m)
        assert measured_sparsity(m) == measured_sparsity(back)


def test_random_needs_one_seed_per_model():
    with pytest.raises(ValueError, match="need one seed per model: 2 models"):
        make_pruner("random").prune(prune_targets(_toy()), 2, 0.5, seeds=[0])


# ----------------------------------------------------------------- One-Shot


def test_layerwise_oneshot_prunes_each_tensor_by_its_own_count():
    targets = prune_targets(_toy())
    make_pruner("oneshot", {"scope": "layerwise"}).prune(targets, 1, 0.5, seeds=[0])
    (conv, _), (fc, _), _ = targets
    # per tensor round(0.5 x numel), banker's rounding: 4 of 8, 6 of 12, 2 of 3
    assert [_pruned([t]) for t in targets] == [4, 6, 2]
    # the smallest |w| of each tensor: conv |w| 1..4, fc |w| 9..14, bias 21, 22
    assert conv.weight_mask.flatten().tolist() == [0] * 4 + [1] * 4
    assert fc.weight_mask.flatten().tolist() == [0] * 6 + [1] * 6
    assert fc.bias_mask.tolist() == [0, 0, 1]


def test_global_oneshot_prunes_the_smallest_over_all_tensors():
    targets = prune_targets(_toy())
    make_pruner("oneshot").prune(targets, 1, 0.5, seeds=[0])
    # round(0.5 x 23) = 12 smallest |w| (1..12): all 8 conv weights, 4 of fc's
    assert [_pruned([t]) for t in targets] == [8, 4, 0]


def test_global_oneshot_of_one_model_is_prune_global():
    a, b = _models([0, 0])
    ta, tb = prune_targets(a), prune_targets(b)
    for amount in (0.5, 0.4):
        make_pruner("oneshot").prune(ta, 1, amount, seeds=[0])
        prune_global(tb, amount)
    for x, y in zip(_masks(ta), _masks(tb), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_oneshot_of_a_stack_equals_each_models_own(scope):
    models = _models([0, 1, 2])
    stacked = StackedClassifier.from_models(models)
    targets = stacked_prune_targets(stacked)
    pruner = make_pruner("oneshot", {"scope": scope})
    pruner.prune(targets, 3, 0.7, seeds=[0, 1, 2])
    for i, m in enumerate(models):
        own = prune_targets(m)
        pruner.prune(own, 1, 0.7, seeds=[i])
        for (sm, name), (om, on) in zip(targets, own, strict=True):
            want = getattr(om, f"{on}_mask")
            part = getattr(sm, f"{name}_mask").unflatten(0, (3, -1))[i]
            assert torch.equal(part.view_as(want), want)


# -------------------------------------------------------------- IMP schedule


def test_imp_schedule_exact_values():
    got = imp_schedule([0.9, 0.5], 0.2)
    remaining = [0.8, 0.64, 0.512, 0.5, 0.4, 0.32, 0.256, 0.2048, 0.16384,
                 0.131072, 0.1048576, 0.1]  # fmt: skip
    assert got == pytest.approx([1 - r for r in remaining], abs=1e-12)
    assert got[3] == 0.5  # targets exactly, not approximately
    assert got[-1] == 0.9
    assert imp_schedule([0.75], 0.5) == [0.5, 0.75]
    assert imp_schedule([0.1], 0.2) == [0.1]  # a first round clipped
    # 1 - 0.8 x 0.8 is 0.3599999999999999 in floats: that is the target, not
    # one more round of almost nothing
    assert imp_schedule([0.36], 0.2) == pytest.approx([0.2, 0.36], abs=1e-12)
    assert imp_schedule([0.36], 0.2)[-1] == 0.36


@pytest.mark.parametrize(
    ("targets", "fraction"), [([0.5, 0.9], 0.2), ([0.3, 0.31, 0.99], 0.35)]
)
def test_imp_schedule_invariants(targets, fraction):
    s = imp_schedule(targets, fraction)
    assert all(t in s for t in targets)
    assert s[-1] == max(targets)
    prev = 0.0
    for cur in s:
        assert cur > prev
        assert (cur - prev) / (1 - prev) <= fraction + 1e-12
        prev = cur


@pytest.mark.parametrize(
    ("targets", "fraction", "message"),
    [
        ([0.5], 0.0, r"imp.fraction must be in \(0, 1\), got 0.0"),
        ([0.5], 1.0, r"imp.fraction must be in \(0, 1\), got 1.0"),
        ([1.0], 0.2, r"IMP targets must be in \(0, 1\), got \[1.0\]"),
        ([], 0.2, r"IMP targets must be in \(0, 1\), got \[\]"),
    ],
)
def test_imp_schedule_rejects_bad_values(targets, fraction, message):
    with pytest.raises(ValueError, match=message):
        imp_schedule(targets, fraction)


# ------------------------------------------------------------ IMP pruning


def test_prune_to_hits_the_cumulative_count_and_nests_masks():
    targets = [(m, n) for m, n in prune_targets(_toy()) if n == "weight"]  # 20
    prune_to(targets, 1, 0.36)
    assert _pruned(targets) == round(0.36 * 20) == 7
    # the 7 smallest |w|: the conv's 1..7
    assert targets[0][0].weight_mask.flatten().tolist() == [0] * 7 + [1]
    first = _masks(targets)
    prune_to(targets, 1, 0.5)
    assert _pruned(targets) == 10
    assert all(torch.all(b <= a) for a, b in zip(first, _masks(targets), strict=True))
    with pytest.raises(ValueError, match="already pruned"):
        prune_to(targets, 1, 0.2)


def test_prune_to_scores_the_current_weights_not_the_last_forward_pass():
    net = _toy()
    targets = [(m, n) for m, n in prune_targets(net) if n == "weight"]
    install_masks(targets)
    net(torch.ones(1, 1, 2, 3))  # the hook sets .weight from weight_orig
    with torch.no_grad():  # an optimiser step after that forward pass
        net[2].weight_orig.mul_(1e-3)  # fc |w| now below every conv weight
    prune_to(targets, 1, 0.5)
    assert _pruned(targets[1:]) == 10


def test_rewind_restores_the_checkpointed_survivors_exactly():
    torch.manual_seed(0)
    net = build_classifier(ARCH)
    targets = [(m, n) for m, n in prune_targets(net) if n == "weight"]
    install_masks(targets)
    gens = [torch.Generator().manual_seed(9)]
    point = capture(net, gens)
    want_draw = torch.rand(3, generator=torch.Generator().manual_seed(9))
    # "training": every parameter and buffer moves, the generator is used
    with torch.no_grad():
        moved = [*net.named_parameters(), *net.named_buffers()]
        for _, t in [(n, t) for n, t in moved if not n.endswith("_mask")]:
            t.add_(torch.randn(t.shape).to(t.dtype) if t.is_floating_point() else 3)
    torch.rand(5, generator=gens[0])
    prune_to(targets, 1, 0.6)
    masks = _masks(targets)
    rewind(net, targets, gens, point)
    state = net.state_dict()
    for (m, n), mask in zip(targets, masks, strict=True):
        orig = point["model"][_key(net, m, n) + "_orig"]
        assert torch.equal(getattr(m, f"{n}_mask"), mask)  # masks kept
        w = getattr(m, n)
        assert torch.equal(w[mask == 1], orig[mask == 1])  # survivors rewound
        assert torch.all(w[mask == 0] == 0)
    for key, value in point["model"].items():  # BN statistics and affine too
        if not key.endswith("_mask"):
            assert torch.equal(state[key], value), key
    assert torch.equal(torch.rand(3, generator=gens[0]), want_draw)


def _key(net: nn.Module, module: nn.Module, name: str) -> str:
    prefix = next(p for p, m in net.named_modules() if m is module)
    return f"{prefix}.{name}"


# ------------------------------------------------- the fine-tune stage

ONESHOT_HP = {
    "epochs": 2,
    "batch_size": 64,
    "lr": 1e-3,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 0.0,
}


@pytest.fixture(scope="module")
def dense(prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dense")
    train_supervised(
        data=prepared, seeds=[0], model_outs=[out / "model.pt"],
        metrics_outs=[out / "metrics.json"], arch=ARCH, hp={**HP, "epochs": 1},
        norm=NORM, gmp=None, sparsity=0, schedule="dense", settings=CPU,
    )  # fmt: skip
    return out / "model.pt"


def _finetune(prepared: Path, dense: Path, out: Path, **kw: Any) -> dict[str, Any]:
    (metrics,) = oneshot_finetune(
        data=prepared, dense_models=[dense], seeds=[0], model_outs=[out / "model.pt"],
        metrics_outs=[out / "metrics.json"], hp=ONESHOT_HP, augment_cfg=AUG,
        norm=NORM, method="sup", sparsity=90, settings=CPU, **kw,
    )  # fmt: skip
    return metrics


def test_the_finetune_stage_prunes_with_the_named_method(prepared, dense, tmp_path):
    metrics = _finetune(prepared, dense, tmp_path / "random", pruner="random")
    model, meta = load_model(tmp_path / "random" / "model.pt")
    assert meta["schedule"] == metrics["schedule"] == "random"
    total = sum(getattr(m, n).numel() for m, n in prune_targets(model))
    zeros = sum(int((getattr(m, n) == 0).sum()) for m, n in prune_targets(model))
    assert zeros == round(0.9 * total)  # masks kept through the fine-tune
    assert_layers_match(metrics["layers"], tmp_path / "random" / "model.pt")
    assert {r["target"] for r in metrics["layers"]} == {None}  # global count

    metrics = _finetune(
        prepared, dense, tmp_path / "layer", pruner_options={"scope": "layerwise"}
    )
    model, meta = load_model(tmp_path / "layer" / "model.pt")
    assert meta["schedule"] == "oneshot"
    for m, n in prune_targets(model):
        w = getattr(m, n)
        assert int((w == 0).sum()) == round(0.9 * w.numel()), n
    # each tensor's target is the sparsity, hit up to one entry's rounding
    assert_layers_match(metrics["layers"], tmp_path / "layer" / "model.pt")
    for r in metrics["layers"]:
        assert r["target"] == 0.9
        assert r["measured"] == round(0.9 * r["numel"]) / r["numel"], r["tensor"]


def test_the_method_and_its_options_are_in_the_resume_fingerprint(
    prepared, dense, tmp_path, monkeypatch, caplog
):
    out = tmp_path / "run"
    real = train_mod.save_resume

    def stop(*a: Any, **kw: Any) -> None:
        real(*a, **kw)
        raise InterruptedError

    monkeypatch.setattr(train_mod, "save_resume", stop)
    with pytest.raises(InterruptedError):
        _finetune(prepared, dense, out)
    monkeypatch.setattr(train_mod, "save_resume", real)
    with caplog.at_level("WARNING"):
        _finetune(prepared, dense, out, pruner_options={"scope": "layerwise"})
    assert "written for other settings" in caplog.text


# -------------------------------------------------------------- IMP stage

IMP = {"rewind_epoch": 1, "fraction": 0.5}
TARGETS = [50, 80]  # schedule 0.5, 0.75, 0.8: rounds 1, 2, 3 after the dense 0


def _imp(prepared: Path, out: Path, seeds=(4,), **over: Any):
    kw: dict[str, Any] = dict(
        data=prepared, seeds=list(seeds), arch=ARCH, hp=HP, norm=NORM, imp=IMP,
        model_outs={t: [out / f"s{t}" / f"seed{s}" / "model.pt" for s in seeds]
                    for t in TARGETS},
        metrics_outs={t: [out / f"s{t}" / f"seed{s}" / "metrics.json"
                          for s in seeds] for t in TARGETS},
        settings=CPU,
    )  # fmt: skip
    kw.update(over)
    return train_imp(**kw)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def straight(prepared, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """One uninterrupted IMP run, with what each round started from and the
    rewind point it kept."""
    out = tmp_path_factory.mktemp("imp")
    seen: dict[str, Any] = {"starts": [], "points": []}
    real_train, real_capture = train_mod.train, train_mod.capture

    def spy_train(run, *a: Any, **kw: Any):
        seen["starts"].append({
            "state": {k: v.clone() for k, v in run.net.state_dict().items()},
            "weights": {n: m.weight.clone() for n, m in run.net.named_modules()
                        if hasattr(m, "weight_mask")},
            "epochs": a[2].epochs,  # train(run, images, labels, cfg, ...)
        })  # fmt: skip
        return real_train(run, *a, **kw)

    def spy_capture(*a: Any, **kw: Any) -> dict[str, Any]:
        point = real_capture(*a, **kw)
        seen["points"].append(point)
        return point

    mp = pytest.MonkeyPatch()
    mp.setattr(train_mod, "train", spy_train)
    mp.setattr(train_mod, "capture", spy_capture)
    try:
        _imp(
            prepared, out, settings={**CPU, "log_every_steps": 2},
            curves_outs={t: [out / f"s{t}" / "seed4" / "curves.csv"] for t in TARGETS},
            tensorboard_dirs=[out / "tb" / "seed4"],
        )  # fmt: skip
    finally:
        mp.undo()
    return out, seen


def test_imp_curves_count_steps_across_rounds(straight):
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    from prunelens.curves import read_curves

    out, _ = straight
    for t, rounds in zip(TARGETS, [1, 3], strict=True):
        csv = read_curves(out / f"s{t}" / "seed4" / "curves.csv")
        epochs = csv[csv["level"] == "epoch"]
        # 5 steps per epoch; each later round retrains one epoch
        assert list(epochs["step"]) == [5 * (i + 1) for i in range(2 + rounds)]
        assert list(epochs["round"]) == [0, 0, *range(1, rounds + 1)]
        steps = csv[csv["level"] == "step"]
        # every 2 steps of a round: 10 in the dense round, 5 in each later one
        later = [5 * (i + 2) + d for i in range(rounds) for d in (2, 4)]
        assert list(steps["step"]) == [2, 4, 6, 8, 10, *later]
        assert list(steps["round"]) == [0] * 5 + [i for i in range(1, rounds + 1)
                                                  for _ in (2, 4)]  # fmt: skip
    # one TensorBoard run holds every round, steps counting on
    acc = EventAccumulator(str(out / "tb" / "seed4"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("epoch/loss")] == [5, 10, 15, 20, 25]


def test_imp_reaches_each_target_exactly_and_writes_the_usual_files(straight):
    out, seen = straight
    # the dense round, then 3 rounds retraining epoch 2 (after the rewind)
    assert [s["epochs"] for s in seen["starts"]] == [2, 1, 1, 1]
    zero_sets = []
    for t, rounds in zip(TARGETS, [1, 3], strict=True):
        model, meta = load_model(out / f"s{t}" / "seed4" / "model.pt")
        assert meta == {"arch": {**ARCH, "n_classes": 10}, "method": "sup",
                        "schedule": "imp", "sparsity": t, "seed": 4}  # fmt: skip
        total = sum(m.weight.numel() for m in model.modules()
                    if isinstance(m, nn.Conv2d | nn.Linear))  # fmt: skip
        assert measured_sparsity(model) == round(t / 100 * total) / total
        assert torch.all(model.fc.bias != 0)  # biases are not pruned
        zero_sets.append(
            torch.cat(
                [
                    m.weight.flatten() == 0
                    for m in model.modules()
                    if isinstance(m, nn.Conv2d | nn.Linear)
                ]
            )
        )
        metrics = json.loads((out / f"s{t}" / "seed4" / "metrics.json").read_text())
        assert metrics["imp_round"] == rounds
        assert metrics["imp_rewind_epoch"] == 1
        assert metrics["imp_fraction"] == 0.5
        # global over the weights: no per-tensor target; biases never pruned
        assert_layers_match(metrics["layers"], out / f"s{t}" / "seed4" / "model.pt")
        assert {r["target"] for r in metrics["layers"]} == {None}
        assert [r["measured"] for r in metrics["layers"] if "bias" in r["tensor"]] == [
            0.0
        ]
        assert metrics["epochs"] == 2 + rounds  # all rounds up to this one
        assert metrics["steps"] == 5 * (2 + rounds)  # 320 images, batch 64
        assert [(r["round"], r["epoch"]) for r in metrics["history"]] == [
            (0, 1), (0, 2), *((i, 2) for i in range(1, rounds + 1))
        ]  # fmt: skip
    assert torch.all(zero_sets[0] <= zero_sets[1])  # nested across targets
    assert not list(out.rglob("resume*.pt"))


def test_each_imp_round_starts_from_the_rewind_point_with_its_masks(straight):
    _, seen = straight
    # kept once, at the end of epoch 1 of the dense round (rewind_epoch 1)
    (kept,) = seen["points"]
    point, starts = kept["model"], seen["starts"]
    prev = None
    for start in starts[1:]:
        for key, value in start["state"].items():
            if not key.endswith("_mask"):
                assert torch.equal(value, point[key]), key
        masks = {k: v for k, v in start["state"].items() if k.endswith("_mask")}
        for name, w in start["weights"].items():
            mask = masks[f"{name}.weight_mask"]
            orig = point[f"{name}.weight_orig"]
            assert torch.equal(w[mask == 1], orig[mask == 1])
            assert torch.all(w[mask == 0] == 0)
        if prev is not None:
            assert all(torch.all(masks[k] <= prev[k]) for k in masks)
        prev = masks
    # and the rewind point is not the initialisation: epoch 1 was trained
    init = starts[0]["state"]
    assert not torch.equal(init["fc.weight_orig"], point["fc.weight_orig"])


def _kill_after_saves(monkeypatch: Any, saves: int, job: Any) -> None:
    """Run ``job`` until its ``saves``-th resume file is written, then kill it."""
    real = train_mod.save_resume
    done = []

    def save_then_maybe_stop(*a: Any, **kw: Any) -> None:
        real(*a, **kw)
        done.append(a[0].name)
        if len(done) == saves:
            raise InterruptedError("kill")

    monkeypatch.setattr(train_mod, "save_resume", save_then_maybe_stop)
    with pytest.raises(InterruptedError):
        job()
    monkeypatch.setattr(train_mod, "save_resume", real)


@pytest.mark.parametrize(
    "saves",
    [
        1,  # the rewind point kept, epoch 1 not yet counted as done
        2,  # in round 0, after epoch 1 of 2
        4,  # after round 0, between rounds
        6,  # in round 1: its epoch and the 50 % model saved, not its state
        9,  # after round 2, between rounds
    ],
)
def test_killed_imp_resumes_to_identical_weights(
    prepared, straight, tmp_path, monkeypatch, saves
):
    _kill_after_saves(monkeypatch, saves, lambda: _imp(prepared, tmp_path))
    assert (tmp_path / "s50" / "seed4" / "resume.imp.pt").exists()
    _imp(prepared, tmp_path)
    out, _ = straight
    for t in TARGETS:
        a = _state(out / f"s{t}" / "seed4" / "model.pt")
        b = _state(tmp_path / f"s{t}" / "seed4" / "model.pt")
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), t
        la, lb = (json.loads((o / f"s{t}" / "seed4" / "metrics.json").read_text())
                  ["history"] for o in (out, tmp_path))  # fmt: skip
        assert [r["loss"] for r in la] == [r["loss"] for r in lb]
    assert not list(tmp_path.rglob("resume*.pt"))


def test_an_imp_block_reaches_every_target_for_every_model(prepared, tmp_path):
    _imp(prepared, tmp_path, seeds=(4, 6))
    for t in TARGETS:
        for s in (4, 6):
            model, _ = load_model(tmp_path / f"s{t}" / f"seed{s}" / "model.pt")
            total = sum(m.weight.numel() for m in model.modules()
                        if isinstance(m, nn.Conv2d | nn.Linear))  # fmt: skip
            assert measured_sparsity(model) == round(t / 100 * total) / total


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"imp": {"fraction": 0.5}}, "imp needs rewind_epoch"),
        ({"imp": {**IMP, "rewind_epoch": 2}},
         r"imp.rewind_epoch must be an integer in \[0, 2\) \(the training epochs\), "
         "got 2"),
        ({"imp": {**IMP, "fraction": 1.5}}, r"imp.fraction must be in \(0, 1\)"),
        ({"model_outs": {100: ["m.pt"]}, "metrics_outs": {100: ["m.json"]}},
         r"IMP sparsities must be percentages in 1..99, got \[100\]"),
    ],
)  # fmt: skip
def test_bad_imp_settings_are_named(prepared, tmp_path, over, message):
    with pytest.raises(ValueError, match=message):
        _imp(prepared, tmp_path, **over)


# ------------------------------------------------- IMP of contrastive methods

PRETRAIN = {
    "epochs": 2,
    "batch_size": 64,  # 320 images: 5 steps per epoch
    "lr": 0.05,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5e-4,
    "eta_min_factor": 1e-3,
    "temperature": 0.5,
    "base_temperature": 0.07,
    "augment": {
        "scale": [0.2, 1.0],
        "jitter": [0.4, 0.4, 0.4, 0.1],
        "p_jitter": 0.8,
        "p_gray": 0.2,
    },
}
# pretrain_supcon's encoder.pt keys; an IMP encoder has these and IMP's
ENCODER_KEYS = {"arch", "state_dict", "meta", "history", "steps", "wall_time_s",
                "image_views_per_s", "sparsity_measured",
                "projection_head_sparsity", "layers",
                "projection_head_layers", "versions"}  # fmt: skip


def _pretrain_imp(prepared: Path, out: Path, seeds=(4,), **over: Any):
    kw: dict[str, Any] = dict(
        data=prepared, seeds=list(seeds), arch=ARCH, hp=PRETRAIN, norm=NORM,
        imp=IMP, settings=CPU,
        encoder_outs={t: [out / f"s{t}" / f"seed{s}" / "encoder.pt" for s in seeds]
                      for t in TARGETS},
    )  # fmt: skip
    kw.update(over)
    return pretrain_imp(**kw)


def _conv_total(state: dict[str, torch.Tensor]) -> int:
    return sum(v.numel() for k, v in state.items() if k.endswith("weight")
               and v.ndim == 4)  # fmt: skip


def _conv_zeros(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.flatten() == 0 for k, v in state.items()
                      if k.endswith("weight") and v.ndim == 4])  # fmt: skip


@pytest.fixture(scope="module")
def contrastive(prepared, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """One uninterrupted SCL IMP run, spied as ``straight``."""
    out = tmp_path_factory.mktemp("scl-imp")
    seen: dict[str, Any] = {"starts": [], "points": []}
    real_train, real_capture = train_mod.train, train_mod.capture

    def spy_train(run, *a: Any, **kw: Any):
        seen["starts"].append({
            "state": {k: v.clone() for k, v in run.net.state_dict().items()},
            "weights": {n: m.weight.clone() for n, m in run.net.named_modules()
                        if hasattr(m, "weight_mask")},
            "epochs": a[2].epochs,
            "lrs": [run.lr_at(e) for e in range(a[2].epochs)],
        })  # fmt: skip
        return real_train(run, *a, **kw)

    def spy_capture(*a: Any, **kw: Any) -> dict[str, Any]:
        point = real_capture(*a, **kw)
        seen["points"].append(point)
        return point

    mp = pytest.MonkeyPatch()
    mp.setattr(train_mod, "train", spy_train)
    mp.setattr(train_mod, "capture", spy_capture)
    try:
        seen["states"] = _pretrain_imp(
            prepared, out, settings={**CPU, "log_every_steps": 2},
            curves_outs={t: [out / f"s{t}" / "seed4" / "encoder_curves.csv"]
                         for t in TARGETS},
            tensorboard_dirs=[out / "tb" / "seed4"],
        )  # fmt: skip
    finally:
        mp.undo()
    return out, seen


def test_contrastive_imp_curves_have_every_round_and_no_accuracy(contrastive):
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    from prunelens.curves import read_curves, tags

    out, seen = contrastive
    per_epoch = seen["states"][TARGETS[0]][0]["steps"] // 3  # 2 + 1 round
    for t, rounds in zip(TARGETS, [1, 3], strict=True):
        csv = read_curves(out / f"s{t}" / "seed4" / "encoder_curves.csv")
        epochs = csv[csv["level"] == "epoch"]
        assert list(epochs["round"]) == [0, 0, *range(1, rounds + 1)]
        assert list(epochs["step"]) == [per_epoch * (i + 1) for i in range(2 + rounds)]
        assert csv["acc"].isna().all()  # no classifier in pre-training
    acc = EventAccumulator(str(out / "tb" / "seed4"), size_guidance={"scalars": 0})
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == sorted(tags(accuracy=False))
    assert [e.step for e in acc.Scalars("epoch/loss")] == [
        per_epoch * (i + 1) for i in range(5)
    ]


def test_contrastive_imp_prunes_the_encoder_convs_to_each_target_exactly(
    contrastive,
):
    out, seen = contrastive
    assert [s["epochs"] for s in seen["starts"]] == [2, 1, 1, 1]
    # the cosine schedule of the 2 pre-training epochs; a round goes on from 1
    full = [cosine_lr(0.05, 5e-5, 2, e) for e in range(2)]
    assert [s["lrs"] for s in seen["starts"]] == [full] + [full[1:]] * 3
    zero_sets = []
    for t, rounds in zip(TARGETS, [1, 3], strict=True):
        state = torch.load(out / f"s{t}" / "seed4" / "encoder.pt", weights_only=False)
        assert set(state) == ENCODER_KEYS | {
            "imp_round", "imp_fraction", "imp_rewind_epoch"
        }  # fmt: skip
        assert state["meta"] == {"schedule": "imp", "sparsity": t, "seed": 4,
                                 "objective": "supcon"}  # fmt: skip
        assert (state["imp_round"], state["imp_fraction"]) == (rounds, 0.5)
        assert state["imp_rewind_epoch"] == 1
        sd, total = state["state_dict"], _conv_total(state["state_dict"])
        zeros = _conv_zeros(sd)
        assert int(zeros.sum()) == round(t / 100 * total)  # exactly the target
        assert state["sparsity_measured"] == round(t / 100 * total) / total
        assert state["projection_head_sparsity"] == 0.0  # never pruned
        assert {(r["target"], r["measured"])
                for r in state["projection_head_layers"]} == {(None, 0.0)}  # fmt: skip
        # per tensor: the independent count; IMP's count is global, no targets
        assert_layers_match(state["layers"], out / f"s{t}" / "seed4" / "encoder.pt")
        assert {r["target"] for r in state["layers"]} == {None}
        assert not any(k.endswith("_mask") or k.endswith("_orig") for k in sd)
        assert state["steps"] == 5 * (2 + rounds)
        assert [(r["round"], r["epoch"]) for r in state["history"]] == [
            (0, 1), (0, 2), *((i, 2) for i in range(1, rounds + 1))
        ]  # fmt: skip
        assert state["image_views_per_s"] == pytest.approx(
            2 * 320 * (2 + rounds) / state["wall_time_s"]
        )
        zero_sets.append(zeros)
    assert torch.all(zero_sets[0] <= zero_sets[1])  # nested across targets
    assert seen["states"][80][0]["sparsity_measured"] == state["sparsity_measured"]
    assert not list(out.rglob("resume*.pt"))


def test_contrastive_imp_rewinds_to_the_kept_encoder_and_never_masks_the_head(
    contrastive,
):
    _, seen = contrastive
    (kept,) = seen["points"]  # at the end of epoch 1 (rewind_epoch 1)
    point, starts = kept["model"], seen["starts"]
    masks = [k for k in starts[-1]["state"] if k.endswith("_mask")]
    assert masks
    assert all(k.startswith("encoder.") for k in masks)
    assert not any(".weight_orig" in k for k in point if k.startswith("head."))
    for start in starts[1:]:
        for key, value in start["state"].items():
            if not key.endswith("_mask"):  # head and BN statistics included
                assert torch.equal(value, point[key]), key
        for name, w in start["weights"].items():
            mask = start["state"][f"{name}.weight_mask"]
            orig = point[f"{name}.weight_orig"]
            assert torch.equal(w[mask == 1], orig[mask == 1])  # the survivors
            assert torch.all(w[mask == 0] == 0)
    init = starts[0]["state"]
    assert not torch.equal(init["head.net.0.weight"], point["head.net.0.weight"])


def test_the_linear_head_of_an_imp_encoder_records_its_rounds(contrastive, prepared):
    out, _ = contrastive
    enc = out / "s50" / "seed4" / "encoder.pt"
    head = {**HP, "epochs": 1, "cosine_eta_min": 1e-4}
    (metrics,) = fit_linear_head(
        data=prepared, encoders=[enc], seeds=[4], model_outs=[out / "m.pt"],
        metrics_outs=[out / "m.json"], hp=head, augment_cfg=AUG, norm=NORM,
        gmp={"begin": 1, "end": 5, "frequency": 1, "scope": "layerwise"},
        sparsity=50, schedule="imp", settings=CPU,
    )  # fmt: skip
    assert (metrics["schedule"], metrics["method"]) == ("imp", "scl")
    assert (metrics["imp_round"], metrics["imp_fraction"]) == (1, 0.5)
    assert metrics["imp_rewind_epoch"] == 1
    assert metrics["pretrain_steps"] == 5 * 3
    encoder = torch.load(enc, weights_only=False)
    assert metrics["encoder_sparsity"] == encoder["sparsity_measured"]
    model, _ = load_model(out / "m.pt")
    fc = model.fc.weight
    assert int((fc == 0).sum()) == round(0.5 * fc.numel())  # head GMP: 50 %
    assert metrics["sparsity_measured"] == pytest.approx(0.5, abs=1e-3)
    # the encoder's targets are IMP's (none per tensor), the head's its GMP's
    assert_layers_match(metrics["layers"], out / "m.pt")
    targets = {r["tensor"]: r["target"] for r in metrics["layers"]}
    assert targets.pop("fc.weight") == targets.pop("fc.bias") == 0.5
    assert set(targets.values()) == {None}


@pytest.mark.parametrize("saves", [2, 6])  # in round 0; in round 1
def test_killed_contrastive_imp_resumes_to_the_same_encoders(
    prepared, contrastive, tmp_path, monkeypatch, saves
):
    _kill_after_saves(monkeypatch, saves, lambda: _pretrain_imp(prepared, tmp_path))
    assert (tmp_path / "s50" / "seed4" / "resume.imp.pt").exists()
    _pretrain_imp(prepared, tmp_path)
    out, _ = contrastive
    for t in TARGETS:
        a, b = (torch.load(o / f"s{t}" / "seed4" / "encoder.pt", weights_only=False)
                for o in (out, tmp_path))  # fmt: skip
        assert a["state_dict"].keys() == b["state_dict"].keys()
        assert all(torch.equal(v, b["state_dict"][k])
                   for k, v in a["state_dict"].items()), t  # fmt: skip
        assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]
    assert not list(tmp_path.rglob("resume*.pt"))


def test_a_contrastive_imp_block_equals_its_solo_runs(prepared, tmp_path, monkeypatch):
    # float64, as tests/test_blocks.py: the same masks, weights to 1e-10; on
    # 128 of the images and one target (float64 convolutions are slow)
    with np.load(prepared) as f:
        small = {k: f[k][:128] if k.startswith("train_") else f[k] for k in f.files}
    np.savez(tmp_path / "small.npz", **small)
    normalize = augment.normalize
    monkeypatch.setattr(
        augment, "normalize", lambda x, m, s: normalize(x.double(), m, s)
    )
    torch.set_default_dtype(torch.float64)
    try:
        for seeds, where in (((4,), "solo"), ((6,), "solo"), ((4, 6), "block")):
            outs = {50: [tmp_path / where / f"seed{s}.pt" for s in seeds]}
            _pretrain_imp(tmp_path / "small.npz", tmp_path, seeds=seeds,
                          encoder_outs=outs, objective="simclr")  # fmt: skip
    finally:
        torch.set_default_dtype(torch.float32)
    for s in (4, 6):
        solo, block = (torch.load(tmp_path / w / f"seed{s}.pt", weights_only=False)
                       for w in ("solo", "block"))  # fmt: skip
        assert block["meta"] == solo["meta"] == {
            "schedule": "imp", "sparsity": 50, "seed": s, "objective": "simclr"
        }  # fmt: skip
        assert block["sparsity_measured"] == solo["sparsity_measured"]
        assert block["steps"] == solo["steps"] == 2 * 3  # 128 images, batch 64
        a, b = solo["state_dict"], block["state_dict"]
        assert torch.equal(_conv_zeros(a), _conv_zeros(b)), s
        for name, x in a.items():
            if x.is_floating_point():
                assert x.dtype == torch.float64, name
                diff = (x - b[name]).abs().max()
                assert diff <= 1e-10 * x.abs().max().clamp(min=1e-30), name


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"objective": "byol"}, "unknown pre-training objective 'byol'"),
        ({"encoder_outs": {100: ["e.pt"]}},
         r"IMP sparsities must be percentages in 1..99, got \[100\]"),
        ({"imp": {**IMP, "rewind_epoch": 2}},
         r"imp.rewind_epoch must be an integer in \[0, 2\)"),
        ({"encoder_outs": {50: ["a.pt", "b.pt"]}}, "need one output path per seed"),
    ],
)  # fmt: skip
def test_bad_contrastive_imp_settings_are_named_before_training(
    tmp_path, over, message
):
    absent = tmp_path / "absent.npz"  # never read: the settings fail first
    with pytest.raises(ValueError, match=message):
        _pretrain_imp(absent, tmp_path, **over)
