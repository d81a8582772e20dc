"""K models trained as one grouped network equal K separate models.

Tolerances, and why:

* Forward pass: 1e-5 of the largest logit on CPU. The grouped convolutions
  compute the same sums as K plain ones (bit-identical here in
  channels_last), the batched head sums in another order than ``nn.Linear``:
  measured <= 3e-7. On CUDA 1e-3 (see the test).
* Training in float64: 1e-12 relative per tensor, masks identical. This
  checks the semantics (initialisation, data order, augmentation, loss,
  optimiser, GMP) free of rounding noise; measured ~5e-15. Two seeds only:
  float64 convolutions are slow on CPU.
* Training in float32: the backward of a grouped convolution sums the weight
  gradient in another order than a plain one (~4e-6 relative at the first
  step), BatchNorm's backward on 32-image batches of noise images cancels
  enough to amplify that to ~1e-3 of some gradients, and SGD compounds it.
  Storing the solo model contiguously instead of channels_last (a change
  that means nothing) moves its weights 5-10x more than stacking does. So:
  dense, relative L2 distance of all parameters <= 1e-3 at lr 0.01 (measured
  <= 1.6e-4 over 12 seeds). With GMP a weight within rounding noise of a
  pruning threshold can fall on either side, after which the runs differ by
  that weight (a near-tie swaps: one entry pruned in each run); measured over
  12 seeds <= 16 of 77,000 prunable weights differ (0.02%) and relative L2
  <= 1.6e-2, hence masks agree on >= 99.9% and relative L2 <= 5e-2.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import assert_layers_match
from torch.nn.utils import prune

from prunelens import augment
from prunelens.models import Classifier, build_classifier, load_model
from prunelens.pruning import (
    install_masks,
    make_permanent,
    measured_sparsity,
    prune_global,
    prune_targets,
)
from prunelens.stacked import (
    StackedClassifier,
    prune_stacked,
    stacked_prune_targets,
    stacked_sparsity,
)
from prunelens.train import train_supervised

ARCH = {"depth": 10, "width": 1}
NORM = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
HP = {
    "epochs": 2,
    "batch_size": 32,
    "lr": 0.01,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5e-4,
    "milestones": [1],
    "gamma": 0.1,
    "augment": {"padding": 4, "hflip": True, "vflip": True},
}
GMP = {"begin": 2, "end": 18, "frequency": 2, "scope": "layerwise"}
SEEDS = [0, 1, 2]


def _models(seeds: list[int]) -> list[Classifier]:
    out = []
    for s in seeds:
        torch.manual_seed(s)
        out.append(build_classifier(ARCH))
    return out


def _assert_same_state(a: Classifier, b: Classifier) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def _common(
    prepared: Path, sparsity: int, hp: dict[str, Any], precision: str = "fp32"
) -> dict[str, Any]:
    return dict(
        data=prepared,
        arch=ARCH,
        hp=hp,
        norm=NORM,
        gmp=GMP if sparsity else None,
        sparsity=sparsity,
        schedule="gmp" if sparsity else "dense",
        settings={"device": "cpu", "threads": 1, "precision": precision},
    )


def _outs(out: Path, seeds: list[int]) -> dict[str, Any]:
    return {
        "seeds": seeds,
        "model_outs": [out / f"seed{s}" / "model.pt" for s in seeds],
        "metrics_outs": [out / f"seed{s}" / "metrics.json" for s in seeds],
    }


def _block(
    prepared: Path, out: Path, seeds: list[int], sparsity: int, hp: dict[str, Any]
) -> list[dict[str, Any]]:
    return train_supervised(**_outs(out, seeds), **_common(prepared, sparsity, hp))


def _solo(
    prepared: Path, out: Path, seeds: list[int], sparsity: int, hp: dict[str, Any]
) -> None:
    for s in seeds:
        train_supervised(**_outs(out, [s]), **_common(prepared, sparsity, hp))


def _flat(model: Classifier) -> torch.Tensor:
    """All trained parameters (not BN statistics), float64."""
    return torch.cat([p.detach().double().flatten() for p in model.parameters()])


def _pruned(model: Classifier) -> torch.Tensor:
    return torch.cat([(m.weight == 0).flatten() for m, _ in _weights(model)])


def _weights(model: Classifier) -> list[tuple[torch.nn.Module, str]]:
    return [(m, n) for m, n in prune_targets(model) if n == "weight"]


# ------------------------------------------------------------- the model


def test_stack_unstack_round_trip_is_exact():
    models = _models([3, 4, 5])
    x = torch.randn(8, 3, 32, 32)
    for m in models:
        m(x)  # training-mode pass: running statistics and counters move
    back = StackedClassifier.from_models(models).unstack()
    for a, b in zip(models, back, strict=True):
        _assert_same_state(a, b)


def test_stacking_refuses_what_it_cannot_represent():
    models = _models([0, 1])
    models[0](torch.randn(4, 3, 32, 32))  # one BN counter ahead of the other
    with pytest.raises(ValueError, match="num_batches_tracked"):
        StackedClassifier.from_models(models)
    wider = build_classifier({"depth": 10, "width": 2})
    with pytest.raises(ValueError, match="arch, classes"):
        StackedClassifier.from_models([_models([0])[0], wider])
    pruned = _models([0])[0]
    prune.identity(pruned.fc, "weight")
    with pytest.raises(ValueError, match="make_permanent"):
        StackedClassifier.from_models([pruned])


CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    ],
)


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_stacked_forward_equals_separate_forwards(device, k, fmt, mode, monkeypatch):
    # cuDNN's default TF32 convolutions would differ from each other by ~1e-3.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    # cuDNN picks its algorithm per shape (Winograd and FFT ones among them,
    # ~1e-4 relative error in float32), so grouped and plain convolutions may
    # differ by that much; a wrong channel mapping would differ by O(1).
    tol = 1e-5 if device == "cpu" else 1e-3
    stacked = StackedClassifier.from_models(_models(list(range(k))))
    stacked = stacked.to(device, memory_format=fmt)
    if mode == "eval":  # non-trivial running statistics first
        stacked(torch.randn(8, 3 * k, 32, 32, device=device))
        stacked.eval()
    models = [m.to(memory_format=fmt).train(mode == "train") for m in stacked.unstack()]
    xs = [torch.randn(16, 3, 32, 32, device=device) for _ in range(k)]
    with torch.no_grad():
        logits = stacked(torch.cat(xs, dim=1).contiguous(memory_format=fmt))
        assert logits.shape == (k, 16, 10)
        for m, x, got in zip(models, xs, logits, strict=True):
            want = m(x.contiguous(memory_format=fmt))
            assert (got - want).abs().max() <= tol * want.abs().max()


# ---------------------------------------------------------------- pruning


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_per_model_pruning_equals_pruning_each_model(scope):
    models = [m.to(memory_format=torch.channels_last) for m in _models([0, 1, 2])]
    stacked = StackedClassifier.from_models(models).to(
        memory_format=torch.channels_last
    )
    targets = stacked_prune_targets(stacked)
    for m in models:
        # as GMP does; l1_unstructured cannot start from a channels_last weight
        install_masks(prune_targets(m))
    for amount in (0.5, 0.4):  # the second prunes a fraction of what remains
        prune_stacked(targets, 3, amount, scope)
        for m in models:
            if scope == "global":
                prune_global(prune_targets(m), amount)
            else:
                for module, name in prune_targets(m):
                    prune.l1_unstructured(module, name, amount=amount)
    for (sm, name), *singles in zip(
        targets, *(prune_targets(m) for m in models), strict=True
    ):
        masks = getattr(sm, f"{name}_mask").unflatten(0, (3, -1))
        for part, (m, n) in zip(masks, singles, strict=True):
            want = getattr(m, f"{n}_mask")
            assert torch.equal(part.view_as(want), want)
    assert stacked_sparsity(stacked, 3) == [measured_sparsity(m) for m in models]
    make_permanent(stacked)
    for m, back in zip(models, stacked.unstack(), strict=True):
        make_permanent(m)
        _assert_same_state(m, back)


# --------------------------------------------------------------- training


def test_block_in_float64_equals_solo_runs_exactly(prepared, tmp_path, monkeypatch):
    """Semantics without rounding noise: GMP at test_train's lr (0.05)."""
    torch.set_default_dtype(torch.float64)
    normalize = augment.normalize
    monkeypatch.setattr(
        augment, "normalize", lambda x, m, s: normalize(x.double(), m, s)
    )
    try:
        hp = {**HP, "lr": 0.05}
        _solo(prepared, tmp_path / "solo", SEEDS[:2], 70, hp)
        _block(prepared, tmp_path / "block", SEEDS[:2], 70, hp)
    finally:
        torch.set_default_dtype(torch.float32)
    for s in SEEDS[:2]:
        # the saved tensors: load_model would rebuild in float32
        a, b = (
            torch.load(tmp_path / d / f"seed{s}" / "model.pt")["state_dict"]
            for d in ("solo", "block")
        )
        assert a.keys() == b.keys()
        assert a["fc.weight"].dtype == torch.float64
        for name, x in a.items():
            if name.endswith("weight") and x.ndim > 1:  # identical masks
                assert torch.equal(x == 0, b[name] == 0), name
            if x.is_floating_point():
                assert (x - b[name]).abs().max() <= 1e-12 * x.abs().max(), name


@pytest.mark.parametrize("sparsity", [0, 70])
def test_block_equals_solo_runs_in_float32(prepared, tmp_path, sparsity):
    _solo(prepared, tmp_path / "solo", SEEDS, sparsity, HP)
    metrics = _block(prepared, tmp_path / "block", SEEDS, sparsity, HP)
    assert not list((tmp_path / "block").rglob("resume*.pt"))
    for s, m in zip(SEEDS, metrics, strict=True):
        a, meta_a = load_model(tmp_path / "solo" / f"seed{s}" / "model.pt")
        b, meta_b = load_model(tmp_path / "block" / f"seed{s}" / "model.pt")
        assert meta_a == meta_b
        assert not any("mask" in key for key in b.state_dict())
        va, vb = _flat(a), _flat(b)
        rel = float((va - vb).norm() / va.norm())
        solo = json.loads((tmp_path / "solo" / f"seed{s}" / "metrics.json").read_text())
        assert m.keys() == solo.keys()
        assert m["history"][0].keys() == solo["history"][0].keys()
        assert m["steps"] == solo["steps"] == 20
        # a block records each model's tensors as its solo run does
        assert [(r["tensor"], r["numel"], r["target"]) for r in m["layers"]] == [
            (r["tensor"], r["numel"], r["target"]) for r in solo["layers"]
        ]
        assert_layers_match(m["layers"], tmp_path / "block" / f"seed{s}" / "model.pt")
        if sparsity == 0:
            assert rel <= 1e-3
        else:
            assert rel <= 5e-2
            agree = (_pruned(a) == _pruned(b)).double().mean()
            assert agree >= 0.999
            assert abs(m["sparsity_measured"] - 0.70) <= 0.005
            assert abs(measured_sparsity(b) - 0.70) <= 0.005


def test_bf16_block_on_cpu_stays_close_to_its_solo_runs(prepared, tmp_path):
    """bf16 autocast works for the stack on a CPU as for one model; rounding
    differs (grouped versus plain convolutions), so only the losses compare."""
    common = _common(prepared, 0, {**HP, "epochs": 1}, precision="bf16")
    block = train_supervised(**_outs(tmp_path / "b", SEEDS[:2]), **common)
    for seed, got in zip(SEEDS[:2], block, strict=True):
        (solo,) = train_supervised(**_outs(tmp_path / "s", [seed]), **common)
        assert got["history"][0]["loss"] == pytest.approx(
            solo["history"][0]["loss"], rel=2e-2
        )
    with pytest.raises(ValueError, match="precision"):
        train_supervised(
            **_outs(tmp_path / "x", [0]),
            **_common(prepared, 0, HP, precision="fp16"),
        )


def test_checkpoint_of_another_block_is_set_aside(prepared, tmp_path, caplog):
    # issue 13: a resume file of other seeds is not resumed (nor an error):
    # it is moved aside and the block starts afresh
    (tmp_path / "seed0").mkdir()
    torch.save({"fingerprint": "of seeds [9]"}, tmp_path / "seed0" / "resume.pt")
    with caplog.at_level("WARNING"):
        (metrics,) = _block(prepared, tmp_path, [0], 0, {**HP, "epochs": 1})
    assert metrics["epochs"] == 1
    assert "other settings" in caplog.text
    assert (tmp_path / "seed0" / "resume.stale.pt").exists()
    with pytest.raises(ValueError, match="distinct"):
        _block(prepared, tmp_path, [1, 1], 0, HP)


_CHILD = """
import json, sys
from prunelens.train import train_supervised
train_supervised(**json.loads(sys.argv[1]))
"""


def test_killed_block_resumes_to_identical_weights(prepared, tmp_path):
    # Killed after the first of three epochs, with GMP events still to come.
    hp = {**HP, "epochs": 3, "milestones": [2]}
    seeds = SEEDS[:2]
    _block(prepared, tmp_path / "straight", seeds, 70, hp)

    out = tmp_path / "resumed"
    kw = json.loads(
        json.dumps({**_outs(out, seeds), **_common(prepared, 70, hp)}, default=str)
    )
    child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(kw)])
    ckpt = out / f"seed{seeds[0]}" / "resume.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL, "training ended before the kill"
    epochs_done = len(torch.load(ckpt, weights_only=False)["histories"][0].epochs)
    assert 1 <= epochs_done < hp["epochs"]
    assert not list(out.rglob("model.pt"))

    _block(prepared, out, seeds, 70, hp)
    assert not ckpt.exists()
    for s in seeds:
        a, _ = load_model(tmp_path / "straight" / f"seed{s}" / "model.pt")
        b, _ = load_model(out / f"seed{s}" / "model.pt")
        _assert_same_state(a, b)
        hist = [
            json.loads((d / f"seed{s}" / "metrics.json").read_text())["history"]
            for d in (tmp_path / "straight", out)
        ]
        assert [r["loss"] for r in hist[0]] == [r["loss"] for r in hist[1]]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_block_trains_and_resumes_on_cuda(prepared, tmp_path, monkeypatch):
    """bf16 + GMP on the GPU; an interrupted block resumes (CUDA RNG states).

    cuDNN's backward is not deterministic, so the weights are not compared.
    """
    import prunelens.train as stacked_mod

    kw = {
        **_common(prepared, 70, HP),
        "settings": {"device": "cuda", "precision": "bf16"},
    }
    paths = _outs(tmp_path, SEEDS[:2])
    calls = []
    real = stacked_mod.stacked_sparsity

    def fail_in_epoch_two(model, k):
        calls.append(1)
        if len(calls) == 2:
            raise InterruptedError("stop")  # after epoch 1's checkpoint
        return real(model, k)

    monkeypatch.setattr(stacked_mod, "stacked_sparsity", fail_in_epoch_two)
    with pytest.raises(InterruptedError, match="stop"):
        train_supervised(**paths, **kw)
    assert (tmp_path / f"seed{SEEDS[0]}" / "resume.pt").exists()
    monkeypatch.setattr(stacked_mod, "stacked_sparsity", real)
    metrics = train_supervised(**paths, **kw)
    for m in metrics:
        assert m["device"].startswith("cuda")
        assert len(m["history"]) == HP["epochs"]
        assert abs(m["sparsity_measured"] - 0.70) <= 0.005
