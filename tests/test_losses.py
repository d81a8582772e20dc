"""SupCon loss against independent computations, gradients and bad input."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from prunelens.losses import supcon_loss

T, T_BASE = 0.5, 0.07

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ],
    ),
]


def _reference_supcon(
    features: torch.Tensor, labels: list[int] | None, t: float, t_base: float
) -> float:
    """The §4.1 formula with plain Python loops, anchors without positives skipped."""
    n, v, _ = features.shape
    z = [features[s, k].tolist() for k in range(v) for s in range(n)]
    ids = [s if labels is None else labels[s] for _ in range(v) for s in range(n)]
    losses = []
    for i in range(len(z)):
        logits = [sum(a * b for a, b in zip(z[i], zj, strict=True)) / t for zj in z]
        others = [s for j, s in enumerate(logits) if j != i]
        top = max(others)
        lse = top + math.log(sum(math.exp(s - top) for s in others))
        pos = [j for j in range(len(z)) if j != i and ids[j] == ids[i]]
        if pos:
            losses.append(-(t / t_base) * sum(logits[j] - lse for j in pos) / len(pos))
    return sum(losses) / len(losses)


def _features(n: int, v: int, d: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, v, d, generator=g, dtype=dtype), dim=-1)


@pytest.mark.parametrize("n", range(1, 9))
@pytest.mark.parametrize("v", [2, 3])
@pytest.mark.parametrize("with_labels", [False, True])
def test_matches_loop_reference(n: int, v: int, with_labels: bool) -> None:
    feats = _features(n, v, 6, seed=100 * n + v)
    labels = torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(n))
    lab = labels if with_labels else None
    got = supcon_loss(feats, lab, temperature=T, base_temperature=T_BASE)
    want = _reference_supcon(feats, labels.tolist() if with_labels else None, T, T_BASE)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(want, abs=1e-5, rel=1e-5)


@pytest.mark.parametrize(("t", "t_base"), [(0.1, 0.1), (1.0, 0.07), (0.07, 0.5)])
def test_matches_loop_reference_other_temperatures(t: float, t_base: float) -> None:
    feats = _features(6, 2, 4, seed=7)
    labels = [0, 1, 0, 2, 1, 0]
    got = supcon_loss(
        feats, torch.tensor(labels), temperature=t, base_temperature=t_base
    )
    assert got.item() == pytest.approx(_reference_supcon(feats, labels, t, t_base))


def test_label_free_equals_nt_xent() -> None:
    n, t = 8, 0.2
    feats = _features(n, 2, 16, seed=3)
    z = torch.cat([feats[:, 0], feats[:, 1]])  # NT-Xent's usual layout
    sim = (z @ z.T / t).fill_diagonal_(float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    nt_xent = F.cross_entropy(sim, partner)
    got = supcon_loss(feats, None, temperature=t, base_temperature=t)
    torch.testing.assert_close(got, nt_xent)


def test_unique_labels_equal_label_free() -> None:
    feats = _features(5, 2, 8, seed=4)
    torch.testing.assert_close(
        supcon_loss(feats, torch.tensor([4, 0, 3, 1, 2])), supcon_loss(feats)
    )


def test_invariant_to_sample_order() -> None:
    feats = _features(7, 2, 8, seed=5)
    labels = torch.tensor([0, 1, 1, 2, 0, 0, 2])
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        supcon_loss(feats, labels), supcon_loss(feats[perm], labels[perm])
    )


def test_default_temperatures_are_the_authors() -> None:
    feats = _features(4, 2, 8, seed=6)
    labels = torch.tensor([0, 1, 0, 1])
    torch.testing.assert_close(
        supcon_loss(feats, labels),
        supcon_loss(feats, labels, temperature=0.5, base_temperature=0.07),
    )


@pytest.mark.parametrize("with_labels", [False, True])
def test_gradcheck(with_labels: bool) -> None:
    raw = torch.randn(
        4, 2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(8)
    )
    labels = torch.tensor([0, 1, 0, 2]) if with_labels else None

    def loss(x: torch.Tensor) -> torch.Tensor:
        # The loss expects unit rows; normalising inside makes raw inputs valid.
        return supcon_loss(F.normalize(x, dim=-1), labels)

    assert torch.autograd.gradcheck(loss, (raw.requires_grad_(),))


def test_single_view_skips_anchors_without_positive() -> None:
    feats = _features(6, 1, 4, seed=9)
    labels = [0, 0, 1, 2, 2, 3]  # anchors 2 and 5 have no positive
    got = supcon_loss(feats, torch.tensor(labels))
    assert got.item() == pytest.approx(_reference_supcon(feats, labels, T, T_BASE))


def test_small_temperature_is_stable_in_float32() -> None:
    feats = _features(16, 2, 32, seed=10)
    labels = torch.randint(0, 4, (16,), generator=torch.Generator().manual_seed(1))
    want = supcon_loss(feats, labels, temperature=1e-3, base_temperature=1e-3)
    got = supcon_loss(feats.float(), labels, temperature=1e-3, base_temperature=1e-3)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(want.item(), rel=1e-3)


def test_half_precision_computes_in_float32() -> None:
    feats = _features(8, 2, 16, seed=11)
    got = supcon_loss(feats.to(torch.bfloat16))
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(supcon_loss(feats).item(), rel=2e-2)


@pytest.mark.parametrize(
    ("t", "t_base"), [(0.0, 0.07), (-0.5, 0.07), (0.5, 0.0), (0.5, -1.0)]
)
def test_non_positive_temperature_raises(t: float, t_base: float) -> None:
    with pytest.raises(ValueError, match="temperature"):
        supcon_loss(_features(4, 2, 3, seed=0), temperature=t, base_temperature=t_base)


@pytest.mark.parametrize("shape", [(8, 3), (2, 2, 2, 3), (6,)])
def test_features_not_3d_raise(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(N, V, D\)"):
        supcon_loss(torch.ones(shape))


@pytest.mark.parametrize("labels", [torch.zeros(3), torch.zeros(5), torch.zeros(4, 1)])
def test_label_shape_mismatch_raises(labels: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="labels must be of shape"):
        supcon_loss(_features(4, 2, 3, seed=0), labels)


def test_no_anchor_with_positive_raises() -> None:
    with pytest.raises(ValueError, match="no anchor has a positive"):
        supcon_loss(_features(4, 1, 3, seed=0), torch.arange(4))
    with pytest.raises(ValueError, match="other views"):
        supcon_loss(_features(4, 1, 3, seed=0))


def test_zero_norm_rows_raise_with_count() -> None:
    feats = _features(4, 2, 3, seed=0)
    feats[1, 0] = 0.0
    feats[3, 1] = 1e-14
    with pytest.raises(ValueError, match="2 of 8 feature rows have zero norm"):
        supcon_loss(feats, torch.tensor([0, 1, 0, 1]))


def test_non_finite_rows_raise() -> None:
    feats = _features(4, 2, 3, seed=0)
    feats[2, 1, 0] = float("nan")
    feats[0, 0, 2] = float("inf")
    with pytest.raises(ValueError, match="2 a non-finite norm"):
        supcon_loss(feats)


@pytest.mark.parametrize("device", DEVICES)
def test_device_matches_cpu(device: str) -> None:
    feats = _features(32, 2, 16, seed=12, dtype=torch.float32)
    labels = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(2))
    # labels may stay on the host; the loss moves them to the features' device
    got = supcon_loss(feats.to(device).requires_grad_(), labels)
    got.backward()
    assert got.device.type == device
    assert got.item() == pytest.approx(supcon_loss(feats, labels).item(), rel=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_checks_sync_the_host_once() -> None:
    feats = _features(32, 2, 16, seed=13, dtype=torch.float32).cuda()
    labels = torch.randint(0, 10, (32,), device="cuda")
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            supcon_loss(feats, labels)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 1, [str(w.message) for w in syncs]


def test_logits_stay_float32_under_bf16_autocast():
    """Autocast would run the similarity matmul in bf16; the loss and its
    gradient must equal the float32 ones (up to float32 rounding)."""
    torch.manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(256, 2, 128), dim=2)
    labels = torch.randint(0, 10, (256,))
    a = feats.clone().requires_grad_(True)
    want = supcon_loss(a, labels)
    (grad_want,) = torch.autograd.grad(want, a)
    b = feats.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = supcon_loss(b, labels)
    (grad_got,) = torch.autograd.grad(got, b)
    assert got.dtype == torch.float32
    assert float((got - want).abs() / want.abs()) <= 1e-6
    assert float((grad_got - grad_want).norm() / grad_want.norm()) <= 1e-5
