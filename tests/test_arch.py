"""model.arch: the CIFAR ResNet-18 beside WRN, from config to saved files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import REPO, SCHEMA, TINY, deep_merge, job_counts, run_snakemake
from torch import nn

from prunelens.config import ConfigError, check
from prunelens.files import FileContractError, load_encoder, load_model
from prunelens.models import (
    Classifier,
    ResNet18Encoder,
    SupConNetwork,
    build_classifier,
    build_encoder,
    canonical_arch,
    count_parameters,
    save_model,
)
from prunelens.pruning import prune_targets
from prunelens.stacked import (
    StackedClassifier,
    StackedSupConNetwork,
    stacked_prune_targets,
)
from prunelens.study import arch_params

RESNET = {"name": "resnet18"}
# (in, out, stride) of the eight basic blocks
BLOCKS = [
    (64, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 1),
    (128, 256, 2), (256, 256, 1), (256, 512, 2), (512, 512, 1),
]  # fmt: skip


def _expected_parameters(n_classes: int) -> int:
    """ResNet-18's parameters from its layer shapes (BN: weight + bias)."""
    conv = 3 * 64 * 3 * 3  # stem
    bn = 2 * 64
    for c_in, c_out, stride in BLOCKS:
        conv += c_in * c_out * 9 + c_out * c_out * 9
        bn += 2 * (2 * c_out)
        if c_in != c_out or stride != 1:  # 1x1 conv + BN shortcut
            conv += c_in * c_out
            bn += 2 * c_out
    return conv + bn + 512 * n_classes + n_classes


# ------------------------------------------------------------ the network


def test_resnet18_has_the_known_parameter_count():
    model = build_classifier(RESNET)
    assert count_parameters(model) == _expected_parameters(10) == 11_173_962
    assert count_parameters(build_classifier(RESNET, n_classes=100)) == (
        _expected_parameters(100)
    )
    assert isinstance(model.encoder, ResNet18Encoder)
    assert model.fc.in_features == model.encoder.dim == 512
    # no max-pool: 3x3 stride-1 stem, so a 32x32 image ends as 4x4 maps
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    stem = model.encoder.conv1
    assert (stem.kernel_size, stem.stride, stem.padding) == ((3, 3), (1, 1), (1, 1))


def test_resnet18_representation_is_512_wide_and_the_last_probe():
    model = build_classifier(RESNET).eval()
    x = torch.randn(3, 3, 32, 32)
    logits, rep = model.represent(x)
    assert logits.shape == (3, 10)
    assert rep.shape == (3, 512)
    assert (rep >= 0).all()  # the last block ends in a ReLU, then GAP
    probes = model.encoder.forward_probes(x)
    # stem; per block mid + branch; block output of the 5 identity blocks
    assert [p.shape[1] for p in probes] == (
        [64] + [64] * 6 + [128] * 5 + [256] * 5 + [512] * 5
    )
    assert all(p.shape[0] == 3 for p in probes)
    assert torch.equal(probes[-1], rep)


def test_probes_are_the_block_parts_in_order():
    enc = ResNet18Encoder().eval()
    x = torch.randn(2, 3, 32, 32)
    h = F.relu(enc.bn1(enc.conv1(x)))
    want = [h.mean(dim=(2, 3))]
    for block in enc.blocks:
        mid = F.relu(block.bn1(block.conv1(h)))
        out = block.bn2(block.conv2(mid))
        short = h if block.shortcut is None else block.shortcut(h)
        h = F.relu(out + short)
        want += [mid.mean(dim=(2, 3)), out.mean(dim=(2, 3))]
        if block.shortcut is None:
            want.append(h.mean(dim=(2, 3)))
    got = enc.forward_probes(x)
    assert len(got) == len(want) == 22
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)


def test_pruning_targets_include_the_shortcut_convs():
    model = build_classifier(RESNET)
    targets = prune_targets(model)
    convs = [m for m, _ in targets if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * 8 + 3  # stem, block convs, three 1x1 shortcuts
    shortcuts = [tuple(m.weight.shape) for m in convs if m.kernel_size == (1, 1)]
    assert shortcuts == [(128, 64, 1, 1), (256, 128, 1, 1), (512, 256, 1, 1)]
    assert [n for m, n in targets if isinstance(m, nn.Linear)] == ["weight", "bias"]
    bn = sum(
        p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d)
        for p in m.parameters()
    )  # fmt: skip
    prunable = sum(getattr(m, n).numel() for m, n in targets)
    assert prunable == count_parameters(model) - bn
    stack = StackedClassifier.from_models([build_classifier(RESNET) for _ in "ab"])
    assert len(stacked_prune_targets(stack)) == len(targets)


def test_arch_mappings():
    assert canonical_arch({"depth": 16, "width": 2}) == {"depth": 16, "width": 2}
    assert canonical_arch({"name": "wrn", "depth": 10, "width": 1}) == {
        "depth": 10,
        "width": 1,
    }
    assert canonical_arch(RESNET) == RESNET
    assert build_encoder(RESNET).arch == RESNET
    assert build_encoder({"depth": 10, "width": 1}).arch == {"depth": 10, "width": 1}
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        build_encoder({"name": "vgg"})
    with pytest.raises(ValueError, match="'resnet18' takes no size keys"):
        build_encoder({"name": "resnet18", "depth": 16})
    with pytest.raises(ValueError, match=r"'wrn' needs \['depth', 'width'\]"):
        build_encoder({"depth": 16})
    # the jobs' param: only the chosen architecture's keys
    model = {"arch": "resnet18", "depth": 16, "width": 2}
    assert arch_params(model) == RESNET
    assert arch_params({**model, "arch": "wrn"}) == {"depth": 16, "width": 2}


# ------------------------------------------------------------- stacking


def _resnets(seeds: list[int]) -> list[Classifier]:
    out = []
    for s in seeds:
        torch.manual_seed(s)
        out.append(build_classifier(RESNET))
    return out


def _step(params: list[nn.Parameter], loss: torch.Tensor) -> None:
    loss.backward()
    with torch.no_grad():
        for p in params:
            p -= 0.01 * p.grad
            p.grad = None


def test_a_resnet18_stack_equals_its_models_forward_and_after_a_step():
    """Tolerances of tests/test_stacked.py: forward 1e-5 of the largest logit,
    float32 training relative L2 <= 1e-3."""
    k = 2
    models = _resnets([0, 1])
    stack = StackedClassifier.from_models(models)
    assert stack.arch == RESNET
    solo = stack.unstack()
    for a, b in zip(models, solo, strict=True):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[n], sb[n]) for n in sa)
    # 16x16 images keep the CPU test short; the network is size-agnostic
    xs = [torch.randn(8, 3, 16, 16) for _ in range(k)]
    ys = [torch.randint(0, 10, (8,)) for _ in range(k)]
    x = torch.cat(xs, dim=1)
    with torch.no_grad():
        logits = stack(x)
        assert logits.shape == (k, 8, 10)
        for m, xi, got in zip(solo, xs, logits, strict=True):
            want = m(xi)
            assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    # one SGD step in training mode (batch statistics, running stats move)
    before = [_flat(m) for m in solo]
    logits = stack(x)
    _step(
        list(stack.parameters()),
        sum(F.cross_entropy(lg, y) for lg, y in zip(logits, ys, strict=True)),
    )
    for m, xi, y in zip(solo, xs, ys, strict=True):
        _step(list(m.parameters()), F.cross_entropy(m(xi), y))
    for m, back, start in zip(solo, stack.unstack(), before, strict=True):
        va, vb = _flat(m), _flat(back)
        assert float((va - start).norm()) > 0  # the step moved the weights
        assert float((va - vb).norm() / va.norm()) <= 1e-3
        theirs = dict(back.named_buffers())
        for name, buf in m.named_buffers():
            assert torch.allclose(buf.double(), theirs[name].double(), atol=1e-5), name


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().double().flatten() for p in model.parameters()])


def test_a_resnet18_supcon_stack_round_trips_and_matches():
    nets = []
    for s in (0, 1):
        torch.manual_seed(s)
        nets.append(SupConNetwork(build_encoder(RESNET)))
    assert nets[0].head.net[0].in_features == 512  # head 512 -> 512 -> 128
    stack = StackedSupConNetwork.from_models(nets)
    back = stack.unstack()
    for a, b in zip(nets, back, strict=True):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[n], sb[n]) for n in sa)
    xs = [torch.randn(4, 3, 16, 16) for _ in nets]
    with torch.no_grad():
        got = stack.eval()(torch.cat(xs, dim=1))
        for n, x, g in zip(nets, xs, got, strict=True):
            assert g.shape == (4, 128)
            assert (g - n.eval()(x)).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="arch"):
        StackedSupConNetwork.from_models(
            [nets[0], SupConNetwork(build_encoder({"depth": 10, "width": 1}))]
        )
    with pytest.raises(ValueError, match="arch, classes"):
        StackedClassifier.from_models(
            [build_classifier(RESNET), build_classifier({"depth": 10, "width": 1})]
        )


# ---------------------------------------------------------------- files


def test_resnet18_model_and_encoder_files_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_classifier(RESNET).eval()
    meta = {"arch": RESNET, "method": "sup", "schedule": "dense", "sparsity": 0}
    path = tmp_path / "results/models/sup/dense/s0/seed0/model.pt"
    save_model(path, model, meta)
    assert torch.load(path)["arch"] == RESNET
    again, meta2 = load_model(path)
    assert meta2 == meta
    assert isinstance(again.encoder, ResNet18Encoder)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), again.eval()(x))
    # WRN weights under a ResNet-18 arch (or an unknown one) are caught
    wrn = build_classifier({"depth": 10, "width": 1})
    torch.save({"arch": RESNET, "state_dict": wrn.state_dict(), "meta": {}}, path)
    with pytest.raises(FileContractError, match="state_dict lacks 83 tensors"):
        load_model(path)
    torch.save({"arch": {"name": "vgg"}, "state_dict": {}, "meta": {}}, path)
    with pytest.raises(FileContractError, match="unknown architecture 'vgg'"):
        load_model(path)
    enc = tmp_path / "results/models/scl/dense/s0/seed0/encoder.pt"
    enc.parent.mkdir(parents=True)
    torch.save(
        {
            "arch": RESNET,
            "state_dict": model.encoder.state_dict(),
            "meta": {},
            "steps": 1,
            "wall_time_s": 1.0,
            "image_views_per_s": 1.0,
            "sparsity_measured": 0.0,
        },
        enc,
    )
    assert load_encoder(enc)["arch"] == RESNET


# --------------------------------------------------------------- config


def test_model_arch_config(paper_config):
    check(deep_merge(paper_config, {"model": {"arch": "resnet18"}}), SCHEMA)
    alone = {**paper_config, "model": {"arch": "resnet18"}}  # no depth/width
    check(alone, SCHEMA)
    cases = [
        ({"arch": "vgg", "depth": 16, "width": 2}, "config key 'model.arch': 'vgg'"),
        (
            {"arch": "wrn", "depth": 15, "width": 2},
            "config key 'model.depth': WideResNet depth must be 6n+4 "
            "(10, 16, 22, 28, ...), got 15",
        ),
        ({"arch": "wrn", "width": 2}, "config key 'model': 'depth' is a required"),
        ({"depth": 16, "width": 2}, "config key 'model': 'arch' is a required"),
    ]
    for model, message in cases:
        with pytest.raises(ConfigError) as err:
            check({**paper_config, "model": model}, SCHEMA)
        assert str(err.value).startswith(message), str(err.value)


def test_a_resnet18_dry_run_plans_the_whole_study(tmp_path):
    from prunelens.data import make_synthetic_images_archive

    archive = tmp_path / "tiny-images.tar.gz"
    make_synthetic_images_archive(archive, n_train_per_class=12, n_test_per_class=6)
    cfg = deep_merge(
        TINY, {"data": {"images_archive": str(archive)}, "model": {"arch": "resnet18"}}
    )
    overlay = tmp_path / "resnet18.yaml"
    overlay.write_text(yaml.safe_dump(cfg))
    files = [REPO / "config.yaml", overlay]
    proc = run_snakemake(tmp_path, "-n", "all", configfiles=files, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout + proc.stderr)
    # 2 seeds: Sup dense + GMP, SCL dense + GMP + delayed GMP, One-Shot of both
    assert counts["train_supervised"] == 4
    assert counts["pretrain_supcon"] == 6
    assert counts["prune_oneshot"] == 4
    assert counts["all"] == 1
    assert not (tmp_path / "results").exists()


def test_a_resnet18_model_trains_and_predicts_512_wide(prepared, tmp_path):
    from prunelens.evaluate import predict
    from prunelens.train import train_supervised

    hp = {
        "epochs": 1, "batch_size": 64, "lr": 0.01, "momentum": 0.9,
        "nesterov": False, "weight_decay": 5e-4, "milestones": [], "gamma": 0.1,
        "augment": {"padding": 4, "hflip": True, "vflip": False},
    }  # fmt: skip
    norm = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    out = tmp_path / "seed0"
    (metrics,) = train_supervised(
        data=prepared, seeds=[0], model_outs=[out / "model.pt"],
        metrics_outs=[out / "metrics.json"], arch=RESNET, hp=hp, norm=norm,
        gmp=None, sparsity=0, schedule="dense",
        settings={"device": "cpu", "threads": 1, "precision": "fp32"},
    )  # fmt: skip
    # the data set's classes are saved with the model (CIFAR-10 here)
    assert metrics["arch"] == {**RESNET, "n_classes": 10}
    model, meta = load_model(out / "model.pt")
    assert meta["arch"] == {**RESNET, "n_classes": 10}
    images = np.load(prepared)["test_images"][:5]
    _, rep = predict(model, images, norm["mean"], norm["std"], device="cpu")
    assert rep.shape == (5, 512)
