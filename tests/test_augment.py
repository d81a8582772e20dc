"""Batched augmentations: invariants, reproducibility, torchvision parity."""

from __future__ import annotations

import colorsys
import itertools

import pytest
import torch
import torch.nn.functional as F

from prunelens import augment
from prunelens.augment import (
    crop_flip,
    normalize,
    simclr_view,
    to_unit_float,
    two_views,
)

TF = pytest.importorskip("torchvision.transforms.functional")
RandomResizedCrop = pytest.importorskip("torchvision.transforms").RandomResizedCrop

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

SIMCLR_DEFAULTS = {
    "scale": (0.2, 1.0),
    "ratio": (3 / 4, 4 / 3),
    "jitter": (0.4, 0.4, 0.4, 0.1),
    "p_jitter": 0.8,
    "p_gray": 0.2,
    "hflip": True,
}

# simclr_view settings under which it should be the identity
NO_OP_VIEW = {
    "scale": (1.0, 1.0),
    "ratio": (1.0, 1.0),
    "p_jitter": 0.0,
    "p_gray": 0.0,
    "hflip": False,
}


def _gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _images(n: int, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=_gen(seed)).to(device)


def _view_params(n: int, seed: int) -> augment._ViewParams:
    """simclr_view's parameters for n 32 x 32 images with the default settings."""
    return augment._sample_view(
        n, 32, 32, _gen(seed), torch.device("cpu"), **SIMCLR_DEFAULTS
    )


def _n_distinct(x: torch.Tensor) -> int:
    return torch.unique(x.flatten(1), dim=0).shape[0]


def test_to_unit_float() -> None:
    raw = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8)
    x = to_unit_float(raw)
    assert x.shape == (5, 3, 32, 32)
    assert x.dtype == torch.float32
    assert x.is_contiguous()
    torch.testing.assert_close(x, raw.permute(0, 3, 1, 2).float() / 255)
    with pytest.raises(ValueError, match="uint8"):
        to_unit_float(raw.float())
    with pytest.raises(ValueError, match="uint8"):
        to_unit_float(raw.permute(0, 3, 1, 2))


def test_normalize() -> None:
    x = _images(4)
    mean, std = (0.4915, 0.4823, 0.4468), (0.2047, 0.2435, 0.2616)
    want = torch.stack([TF.normalize(img, mean, std) for img in x])
    torch.testing.assert_close(normalize(x, mean, std), want)
    with pytest.raises(ValueError, match="positive"):
        normalize(x, mean, (0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="len"):
        normalize(x, mean[:2], std[:2])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fn", [crop_flip, simclr_view])
def test_keeps_shape_dtype_device_and_range(fn, dtype, device: str) -> None:
    # Extreme pixels and the strongest jitter are where clamping matters.
    x = torch.randint(0, 2, (64, 3, 32, 32), generator=_gen(1)).to(device, dtype)
    kw = {"jitter": (1.0, 1.0, 1.0, 0.5), "p_jitter": 1.0} if fn is simclr_view else {}
    y = fn(x, _gen(0, device), **kw)
    assert y.shape == x.shape
    assert y.dtype == dtype
    assert y.device == x.device
    assert y.min() >= 0
    assert y.max() <= 1


@pytest.mark.parametrize("fn", [crop_flip, simclr_view])
def test_parameters_differ_per_image(fn) -> None:
    x = _images(1).expand(32, -1, -1, -1)
    assert _n_distinct(fn(x, _gen(0))) >= 24


@pytest.mark.parametrize("fn", [crop_flip, simclr_view])
def test_generator_alone_decides(fn) -> None:
    x = _images(16)
    torch.manual_seed(0)  # the global RNG must not matter
    a = fn(x, _gen(5))
    torch.manual_seed(1)
    torch.testing.assert_close(fn(x, _gen(5)), a, rtol=0, atol=0)
    assert not torch.equal(fn(x, _gen(6)), a)


def test_generator_state_resumes() -> None:
    """Checkpointing the generator state reproduces the next batches exactly."""
    x = _images(8)
    g = _gen(3)
    crop_flip(x, g)
    state = g.get_state()
    first = (crop_flip(x, g), *two_views(x, g))
    g.set_state(state)
    second = (crop_flip(x, g), *two_views(x, g))
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_two_views_are_independent() -> None:
    x = _images(8)
    v1, v2 = two_views(x, _gen(0))
    assert v1.shape == v2.shape == x.shape
    assert not torch.equal(v1, v2)
    # the two views are two successive simclr_view calls on one generator
    g = _gen(0)
    torch.testing.assert_close(v1, simclr_view(x, g), rtol=0, atol=0)
    torch.testing.assert_close(v2, simclr_view(x, g), rtol=0, atol=0)


def test_crop_flip_without_padding_or_flips_is_identity() -> None:
    x = _images(8)
    y = crop_flip(x, _gen(0), padding=0, hflip=False, vflip=False)
    torch.testing.assert_close(y, x, rtol=0, atol=0)


def test_crop_flip_outputs_are_shifted_flipped_copies() -> None:
    # Every pixel (and channel) distinct, so a match pins down the transform.
    pattern = (torch.arange(3 * 32 * 32, dtype=torch.float32) + 1) / (3 * 32 * 32)
    x = pattern.view(1, 3, 32, 32).expand(64, -1, -1, -1)
    out = crop_flip(x, _gen(0))
    padded = F.pad(x[0], (4, 4, 4, 4))
    candidates = []
    for top, left, vflip, hflip in itertools.product(
        range(9), range(9), [False, True], [False, True]
    ):
        c = padded[:, top : top + 32, left : left + 32]
        c = c.flip(1) if vflip else c
        candidates.append(c.flip(2) if hflip else c)
    cand = torch.stack(candidates).flatten(1)
    matches = (out.flatten(1)[:, None, :] == cand[None]).all(dim=2)
    assert matches.sum(dim=1).eq(1).all()
    assert matches.any(dim=0).sum() >= 40  # many different transforms used


def test_crop_flip_parameter_distribution() -> None:
    p = augment._sample_crop_flip(8192, 4, True, True, _gen(0), torch.device("cpu"))
    for offsets in (p.top, p.left):
        counts = torch.bincount(offsets, minlength=9)
        assert counts.shape == (9,)
        assert counts.min() > 8192 / 9 * 0.85
    for flips in (p.vflip, p.hflip):
        assert abs(flips.float().mean().item() - 0.5) < 0.03
    off = augment._sample_crop_flip(64, 4, False, False, _gen(0), torch.device("cpu"))
    assert not off.vflip.any()
    assert not off.hflip.any()


def test_crop_flip_matches_torchvision() -> None:
    x = _images(32)
    p = augment._sample_crop_flip(32, 4, True, True, _gen(1), torch.device("cpu"))
    got = augment._apply_crop_flip(x, p, 4)
    for i in range(32):
        want = TF.crop(TF.pad(x[i], [4]), int(p.top[i]), int(p.left[i]), 32, 32)
        want = TF.vflip(want) if p.vflip[i] else want
        want = TF.hflip(want) if p.hflip[i] else want
        torch.testing.assert_close(got[i], want, rtol=0, atol=0)


def test_simclr_no_op_settings_are_identity() -> None:
    x = _images(8)
    torch.testing.assert_close(simclr_view(x, _gen(0), **NO_OP_VIEW), x)


def test_simclr_fallback_box_when_nothing_fits() -> None:
    # No box of area > the image fits, so every image takes the central fallback,
    # which for a square image and ratio range around 1 is the whole image.
    x = _images(8)
    view = simclr_view(x, _gen(0), **{**NO_OP_VIEW, "scale": (1.5, 2.0)})
    torch.testing.assert_close(view, x)


@pytest.mark.parametrize(
    ("height", "width", "ratio"),
    [
        (32, 32, (3 / 4, 4 / 3)),
        (32, 32, (2.0, 3.0)),
        (32, 32, (0.3, 0.5)),
        (20, 32, (0.9, 1.1)),
    ],
)
def test_fallback_box_matches_torchvision(height, width, ratio) -> None:
    img = torch.zeros(3, height, width)
    # scale > 1 makes all ten of torchvision's tries fail
    want = RandomResizedCrop.get_params(img, [5.0, 6.0], list(ratio))
    assert augment._fallback_box(height, width, ratio) == want


def test_box_distribution_matches_torchvision() -> None:
    n = 4000
    scale, ratio = list(SIMCLR_DEFAULTS["scale"]), list(SIMCLR_DEFAULTS["ratio"])
    p = _view_params(n, seed=0)
    ours = torch.stack([p.top, p.left, p.height, p.width], dim=1).double()
    torch.manual_seed(0)
    img = torch.zeros(3, 32, 32)
    theirs = torch.tensor(
        [RandomResizedCrop.get_params(img, scale, ratio) for _ in range(n)]
    ).double()
    assert (ours[:, 2:] >= 1).all()
    assert (ours[:, :2] + ours[:, 2:] <= 32).all()
    torch.testing.assert_close(ours.mean(0), theirs.mean(0), rtol=0.03, atol=0.2)
    torch.testing.assert_close(ours.std(0), theirs.std(0), rtol=0.05, atol=0.2)
    area = ours[:, 2] * ours[:, 3] / 1024
    assert area.min() >= 0.15  # scale 0.2 minus rounding of h and w
    assert abs(p.jitter.double().mean().item() - 0.8) < 0.03
    assert abs(p.gray.double().mean().item() - 0.2) < 0.03
    assert abs(p.hflip.double().mean().item() - 0.5) < 0.03
    assert _n_distinct(p.order) == 24  # every ColorJitter op order occurs
    lo = torch.tensor([0.6, 0.6, 0.6, -0.1], dtype=torch.float32)
    assert (p.factors >= lo).all()
    assert (p.factors <= -lo + torch.tensor([2.0, 2.0, 2.0, 0.0])).all()


def test_simclr_matches_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same sampled parameters, torchvision's tensor ops one image at a time."""
    # torchvision's tensor path uses these luma weights, ours PIL's (0.299, ...)
    monkeypatch.setattr(augment, "_LUMA", (0.2989, 0.587, 0.114))
    n = 48
    x = _images(n)
    p = _view_params(n, seed=2)
    got = augment._apply_view(x, p)
    # indexed by op id, as in torchvision's ColorJitter.forward
    ops = [
        TF.adjust_brightness,
        TF.adjust_contrast,
        TF.adjust_saturation,
        TF.adjust_hue,
    ]
    for i in range(n):
        top, left, h, w = (int(t[i]) for t in p[:4])
        want = TF.resized_crop(x[i], top, left, h, w, [32, 32], antialias=False)
        want = TF.hflip(want) if p.hflip[i] else want
        if p.jitter[i]:
            for op in p.order[i].tolist():
                want = ops[op](want, p.factors[i, op].item())
        if p.gray[i]:
            want = TF.rgb_to_grayscale(want, num_output_channels=3)
        torch.testing.assert_close(got[i], want, rtol=0, atol=1e-5)


def test_hue_matches_colorsys() -> None:
    x = _images(4, seed=3)[:, :, :4, :4]
    x[0, :, 0, 0] = 0.5  # grey pixel: hue undefined, must stay grey
    shift = torch.tensor([0.1, -0.1, 0.5, -0.37])
    got = augment._adjust_hue(x, shift)
    for i, r, c in itertools.product(range(4), range(4), range(4)):
        h, s, v = colorsys.rgb_to_hsv(*x[i, :, r, c].tolist())
        want = colorsys.hsv_to_rgb((h + shift[i].item()) % 1.0, s, v)
        torch.testing.assert_close(
            got[i, :, r, c], torch.tensor(want), atol=1e-6, rtol=0
        )


def test_grayscale_always_gives_equal_channels() -> None:
    y = simclr_view(_images(16), _gen(0), p_gray=1.0)
    torch.testing.assert_close(y[:, 0], y[:, 1], rtol=0, atol=0)
    torch.testing.assert_close(y[:, 0], y[:, 2], rtol=0, atol=0)


def test_full_jitter_changes_every_image() -> None:
    x = _images(16)
    y = simclr_view(x, _gen(0), **{**NO_OP_VIEW, "p_jitter": 1.0})
    assert ((y - x).abs().amax(dim=(1, 2, 3)) > 1e-3).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale": (0.0, 1.0)},
        {"scale": (0.8, 0.2)},
        {"ratio": (4 / 3, 3 / 4)},
        {"jitter": (0.4, -0.1, 0.4, 0.1)},
        {"jitter": (0.4, 0.4, 0.4, 0.6)},
        {"p_jitter": 1.5},
        {"p_gray": -0.1},
    ],
)
def test_simclr_bad_arguments_raise(kwargs) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies per case
        simclr_view(_images(2), _gen(0), **kwargs)


@pytest.mark.parametrize("fn", [crop_flip, simclr_view])
@pytest.mark.parametrize(
    "x",
    [torch.zeros(2, 1, 32, 32), torch.zeros(3, 32, 32), torch.zeros(2, 3, 8, 8).byte()],
)
def test_bad_images_raise(fn, x: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        fn(x, _gen(0))


def test_negative_padding_raises() -> None:
    with pytest.raises(ValueError, match="padding"):
        crop_flip(_images(2), _gen(0), padding=-1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_for_same_parameters() -> None:
    """CUDA draws differ from CPU ones, so compare for fixed parameters."""
    x = _images(32)
    p = augment._sample_crop_flip(32, 4, True, True, _gen(0), torch.device("cpu"))
    got = augment._apply_crop_flip(x.cuda(), type(p)(*(t.cuda() for t in p)), 4)
    torch.testing.assert_close(got.cpu(), augment._apply_crop_flip(x, p, 4))
    v = _view_params(32, seed=0)
    v_cuda = type(v)(*(t.cuda() for t in v))
    got = augment._apply_view(x.cuda(), v_cuda)
    torch.testing.assert_close(got.cpu(), augment._apply_view(x, v), atol=1e-5, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cpu_generator_gives_the_same_augmentations_on_cuda() -> None:
    """Training draws from a CPU generator, so one seed means one stream."""
    x = _images(64)
    torch.testing.assert_close(
        crop_flip(x.cuda(), _gen(3)).cpu(), crop_flip(x, _gen(3)), atol=0, rtol=0
    )
    got = two_views(x.cuda(), _gen(4))
    want = two_views(x, _gen(4))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g.cpu(), w, atol=1e-5, rtol=0)
    perm = augment.permutation(1000, _gen(5), "cuda")
    assert perm.device.type == "cuda"
    assert torch.equal(perm.cpu(), augment.permutation(1000, _gen(5), "cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("gen_device", ["cpu", "cuda"])
def test_cuda_has_no_host_sync(gen_device) -> None:
    """Augmenting must not stall the host on the GPU (e.g. list -> tensor copies);
    draws from a CPU generator reach the GPU through pinned, async copies."""
    raw = torch.randint(0, 256, (16, 32, 32, 3), dtype=torch.uint8, device="cuda")
    g = _gen(0, gen_device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        x = to_unit_float(raw)
        crop_flip(x, g)
        two_views(x, g)
        augment.permutation(100, g, "cuda")
        normalize(x, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    finally:
        torch.cuda.set_sync_debug_mode("default")
