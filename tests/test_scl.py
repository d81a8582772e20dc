"""SCL stages: SupCon pre-training with (delayed) GMP, the linear head, One-Shot."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_layers_match
from torch import nn

from prunelens.models import load_model
from prunelens.pruning import GMPSchedule
from prunelens.train import (
    chained_head_lrs,
    cosine_lr,
    fit_linear_head,
    oneshot_finetune,
    pretrain_supcon,
)

ARCH = {"depth": 10, "width": 1}
NORM = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
PRETRAIN = {
    "epochs": 3,
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
HEAD = {
    "epochs": 2,
    "batch_size": 64,
    "lr": 0.1,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 0.0,
    "milestones": [1],
    "gamma": 0.2,
    "cosine_eta_min": 1e-4,
}
AUG = {"padding": 4, "hflip": True, "vflip": True}
CPU = {"device": "cpu"}
# Delayed GMP: nothing before step 6 (epoch 2), target reached at step 14.
DELAYED = {"begin": 6, "end": 14, "frequency": 2, "scope": "layerwise"}


def test_reference_lr_schedules():
    # study-reference §4.3: the chained MultiStep x Cosine head schedule
    lrs = chained_head_lrs(0.1, 100, [60, 75, 90], 0.2, 1e-4)
    expected = {0: 0.1, 30: 0.079, 59: 0.036, 60: 6.9e-3, 75: 6.0e-4, 90: 5e-5}
    for epoch, lr in expected.items():
        assert lrs[epoch] == pytest.approx(lr, rel=0.05), epoch
    # §4.2: cosine annealing from 0.05 to 5e-5 over 500 epochs
    assert cosine_lr(0.05, 5e-5, 500, 0) == pytest.approx(0.05)
    assert cosine_lr(0.05, 5e-5, 500, 250) == pytest.approx((0.05 + 5e-5) / 2)


@pytest.fixture(scope="module")
def delayed_encoder(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("scl") / "encoder.pt"
    (state,) = pretrain_supcon(
        data=prepared,
        encoder_outs=[out],
        arch=ARCH,
        hp=PRETRAIN,
        norm=NORM,
        gmp=DELAYED,
        sparsity=80,
        seeds=[3],
        schedule="delayed_gmp",
        settings=CPU,
    )
    return out, state


def test_delayed_gmp_starts_late_and_reaches_its_target(delayed_encoder):
    _, state = delayed_encoder
    assert GMPSchedule(0.8, **DELAYED).firing_steps() == [6, 8, 10, 12, 14]
    per_epoch = [row["sparsity"] for row in state["history"]]
    assert per_epoch[0] == 0.0  # steps 1-5: the delay
    assert 0 < per_epoch[1] < 0.8
    assert state["sparsity_measured"] == pytest.approx(0.80, abs=0.005)
    assert state["steps"] == 15
    assert state["projection_head_sparsity"] == 0.0  # never pruned
    # every encoder conv aims at 80 % (layer-wise); the head has no target
    assert_layers_match(state["layers"], delayed_encoder[0])
    assert {r["target"] for r in state["layers"]} == {0.8}
    assert [r["tensor"] for r in state["projection_head_layers"]] == [
        "net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"
    ]  # fmt: skip
    assert {(r["target"], r["measured"]) for r in state["projection_head_layers"]} == {
        (None, 0.0)
    }


def test_linear_head_leaves_the_encoder_untouched(prepared, delayed_encoder, tmp_path):
    encoder_path, _ = delayed_encoder
    (metrics,) = fit_linear_head(
        data=prepared,
        encoders=[encoder_path],
        model_outs=[tmp_path / "model.pt"],
        metrics_outs=[tmp_path / "metrics.json"],
        hp=HEAD,
        augment_cfg=AUG,
        norm=NORM,
        gmp={"begin": 1, "end": 10, "frequency": 1, "scope": "layerwise"},
        sparsity=80,
        seeds=[3],
        schedule="delayed_gmp",
        settings=CPU,
    )
    model, _ = load_model(tmp_path / "model.pt")
    before = torch.load(encoder_path, weights_only=False)["state_dict"]
    for name, value in model.encoder.state_dict().items():
        assert torch.equal(value, before[name]), name  # BN statistics included
    fc_zeros = float((model.fc.weight == 0).float().mean())
    assert fc_zeros == pytest.approx(0.8, abs=0.01)
    assert metrics["sparsity_measured"] == pytest.approx(0.8, abs=0.005)
    # the encoder's targets come from encoder.pt, the head's from its GMP
    assert_layers_match(metrics["layers"], tmp_path / "model.pt")
    targets = {r["tensor"]: r["target"] for r in metrics["layers"]}
    assert targets["fc.weight"] == targets["fc.bias"] == 0.8
    assert {v for k, v in targets.items() if k.startswith("encoder.")} == {0.8}


def test_scl_oneshot_prunes_encoder_and_head_together(prepared, tmp_path):
    enc = tmp_path / "encoder.pt"
    pretrain_supcon(
        data=prepared,
        encoder_outs=[enc],
        arch=ARCH,
        hp={**PRETRAIN, "epochs": 1},
        norm=NORM,
        gmp=None,
        sparsity=0,
        seeds=[1],
        schedule="dense",
        settings=CPU,
    )
    dense = tmp_path / "dense"
    fit_linear_head(
        data=prepared,
        encoders=[enc],
        model_outs=[dense / "model.pt"],
        metrics_outs=[dense / "metrics.json"],
        hp={**HEAD, "epochs": 1},
        augment_cfg=AUG,
        norm=NORM,
        gmp=None,
        sparsity=0,
        seeds=[1],
        schedule="dense",
        settings=CPU,
    )
    out = tmp_path / "oneshot"
    sgd = {k: HEAD[k] for k in ("batch_size", "momentum", "weight_decay")}
    (metrics,) = oneshot_finetune(
        data=prepared,
        dense_models=[dense / "model.pt"],
        model_outs=[out / "model.pt"],
        metrics_outs=[out / "metrics.json"],
        hp={**sgd, "epochs": 1, "lr": 1e-3, "nesterov": True},
        augment_cfg=AUG,
        norm=NORM,
        method="scl",
        sparsity=90,
        seeds=[1],
        settings=CPU,
    )
    model, meta = load_model(out / "model.pt")
    assert meta["method"] == "scl"
    assert metrics["sparsity_measured"] == pytest.approx(0.9, abs=0.005)
    conv_zero = [
        float((m.weight == 0).float().mean())
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    assert min(conv_zero) > 0  # every layer touched by the global threshold
    assert float((model.fc.weight == 0).float().mean()) > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_supcon_pretraining_losses_agree_on_cpu_and_gpu(prepared, tmp_path, precision):
    """Same seed, same augmentations (CPU generator): the same loss curve."""
    losses = {}
    for dev in ("cpu", "cuda"):
        (state,) = pretrain_supcon(
            data=prepared,
            encoder_outs=[tmp_path / dev / "encoder.pt"],
            arch=ARCH,
            hp={**PRETRAIN, "epochs": 2},
            norm=NORM,
            gmp=None,
            sparsity=0,
            seeds=[3],
            schedule="dense",
            settings={"device": dev, "precision": precision},
        )
        losses[dev] = [row["loss"] for row in state["history"]]
    # fp32 differs in summation order only (measured on an H200: 5e-4 after
    # 10 steps); bf16 also rounds differently on the two devices
    rel = 2e-3 if precision == "fp32" else 3e-2
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=rel), losses
