"""Batched image augmentations driven by an explicit ``torch.Generator``.

Re-implements the two CIFAR-10 train transforms of study-reference.md §2 on
whole batches of float tensors in [0, 1], shape (N, 3, H, W), on any device:

* :func:`crop_flip` - RandomCrop(32, padding=4) -> RandomVerticalFlip ->
  RandomHorizontalFlip (the "supervised" transform);
* :func:`simclr_view` / :func:`two_views` - RandomResizedCrop(32, (0.2, 1)) ->
  RandomHorizontalFlip -> RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), 0.8) ->
  RandomGrayscale(0.2), applied twice (the SupCon transform).

Every random draw comes from the ``generator`` argument (never the global RNG),
one :func:`uniform` call per function, so that a checkpoint holding the
generator state resumes bit-identically. The generator may live on the CPU
while the images live on a GPU: draws are made where the generator is and
copied to the images' device, so one seed gives the same augmentations on
every device. Parameters are drawn per image, with
the same distributions as torchvision. Differences from torchvision + PIL:

* The random stream differs (same distributions, different draws).
* Pixels stay float throughout; torchvision's PIL path rounds to uint8 after
  every colour op (and takes PIL's rounded integer mean in ``contrast``).
* Luma weights are ITU-R 601-2 (0.299, 0.587, 0.114) as in PIL's
  ``convert("L")``, which is what the PIL pipeline uses; torchvision's tensor
  path uses 0.2989 for red.
* The resized crop keeps the input's size (RandomResizedCrop(32) on 32 x 32
  CIFAR images). The crop is never larger than the image, so the resize only
  ever upsamples, where PIL's bilinear filter and ``grid_sample`` coincide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["crop_flip", "normalize", "simclr_view", "to_unit_float", "two_views"]

# ITU-R 601-2 luma, the weights of PIL's convert("L").
_LUMA = (0.299, 0.587, 0.114)

# torchvision's RandomResizedCrop tries this many boxes before its fallback.
_BOX_TRIES = 10

# ColorJitter op ids, as in torchvision's ColorJitter.forward (brightness is 0).
_CONTRAST, _SATURATION, _HUE = 1, 2, 3


def uniform(
    shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str
) -> Tensor:
    """U[0, 1) draws from ``generator``'s own device, delivered on ``device``.

    Drawing on the generator's device (the CPU in training) makes the stream
    independent of where the model runs; the copy to a GPU goes through pinned
    memory so that it does not wait for the GPU's queue to drain.
    """
    u = torch.rand(shape, generator=generator, device=generator.device)
    return to_device(u, device)


def permutation(
    n: int, generator: torch.Generator, device: torch.device | str
) -> Tensor:
    """A random permutation of 0..n-1 from ``generator``, delivered on ``device``."""
    return to_device(
        torch.randperm(n, generator=generator, device=generator.device), device
    )


def to_device(x: Tensor, device: torch.device | str) -> Tensor:
    device = torch.device(device)
    if x.device == device:
        return x
    if x.device.type == "cpu" and device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def _check_images(x: Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(
            "expected float images of shape (N, 3, H, W), "
            f"got {x.dtype} of shape {tuple(x.shape)}"
        )


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {p}")


def to_unit_float(images_uint8_nhwc: Tensor) -> Tensor:
    """(N, H, W, 3) uint8 -> contiguous (N, 3, H, W) float32 in [0, 1] (ToTensor)."""
    x = images_uint8_nhwc
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 images of shape (N, H, W, 3), "
            f"got {x.dtype} of shape {tuple(x.shape)}"
        )
    # Reorder while still 1 byte per value: the copy is 4x cheaper than in float.
    return x.permute(0, 3, 1, 2).contiguous().to(torch.float32).div_(255.0)


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Per-channel ``(x - mean) / std`` on (N, C, H, W), as torchvision Normalize."""
    if x.ndim != 4 or not len(mean) == len(std) == x.shape[1]:
        raise ValueError(
            f"need (N, C, H, W) input with C = len(mean) = len(std); got shape "
            f"{tuple(x.shape)}, {len(mean)} means, {len(std)} stds"
        )
    if any(s <= 0 for s in std):
        raise ValueError(f"std must be positive, got {list(std)}")
    # Per channel with Python scalars: a mean/std tensor built from the lists
    # would be a blocking host-to-device copy (a sync) on every CUDA batch.
    channels = [(c - m) / s for c, m, s in zip(x.unbind(1), mean, std, strict=True)]
    return torch.stack(channels, dim=1)


# --------------------------------------------------------------------------
# RandomCrop(padding) + RandomVerticalFlip + RandomHorizontalFlip


class _CropFlipParams(NamedTuple):
    top: Tensor  # (N,) int64, first row of the crop in the padded image
    left: Tensor  # (N,) int64, first column of the crop in the padded image
    vflip: Tensor  # (N,) bool
    hflip: Tensor  # (N,) bool


def _sample_crop_flip(
    n: int,
    padding: int,
    vflip: bool,
    hflip: bool,
    generator: torch.Generator,
    device: torch.device,
) -> _CropFlipParams:
    u = uniform((n, 4), generator, device)
    # A crop of the input's size from the padded image starts at 0..2 * padding.
    # rand < 1, but u * k can round up to k in float32, hence the clamp.
    offsets = (u[:, :2] * (2 * padding + 1)).long().clamp_(max=2 * padding)
    return _CropFlipParams(
        top=offsets[:, 0],
        left=offsets[:, 1],
        vflip=(u[:, 2] < 0.5) & vflip,
        hflip=(u[:, 3] < 0.5) & hflip,
    )


def _apply_crop_flip(x: Tensor, p: _CropFlipParams, padding: int) -> Tensor:
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    # A flipped crop is the crop read backwards, so both flips fold into the
    # gather index and no flipped copy of the batch is ever made.
    rows = torch.where(p.vflip[:, None], h - 1 - rows, rows) + p.top[:, None]
    cols = torch.where(p.hflip[:, None], w - 1 - cols, cols) + p.left[:, None]
    flat = (rows[:, :, None] * padded.shape[-1] + cols[:, None, :]).view(n, 1, h * w)
    out = padded.reshape(n, c, -1).gather(2, flat.expand(n, c, h * w))
    return out.view(n, c, h, w)


def crop_flip(
    x: Tensor,
    generator: torch.Generator,
    *,
    padding: int = 4,
    hflip: bool = True,
    vflip: bool = True,
) -> Tensor:
    """RandomCrop(size of x, padding, zero fill) -> RandomVerticalFlip(0.5) ->
    RandomHorizontalFlip(0.5), with independent parameters per image.

    Zero padding is black in [0, 1] space, as torchvision pads the PIL image.
    The output is exactly what torchvision gives for the same parameters.
    """
    _check_images(x)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    params = _sample_crop_flip(x.shape[0], padding, vflip, hflip, generator, x.device)
    return _apply_crop_flip(x, params, padding)


# --------------------------------------------------------------------------
# RandomResizedCrop + RandomHorizontalFlip + ColorJitter + RandomGrayscale


class _ViewParams(NamedTuple):
    top: Tensor  # (N,) int64, box in input pixels
    left: Tensor  # (N,) int64
    height: Tensor  # (N,) int64
    width: Tensor  # (N,) int64
    hflip: Tensor  # (N,) bool
    jitter: Tensor  # (N,) bool, whether ColorJitter is applied
    factors: Tensor  # (N, 4) brightness, contrast, saturation factors; hue shift
    order: Tensor  # (N, 4) int64, a permutation of the four jitter op ids
    gray: Tensor  # (N,) bool


def _fallback_box(
    height: int, width: int, ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """torchvision's central crop when no sampled box fits: (top, left, h, w)."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _sample_view(
    n: int,
    height: int,
    width: int,
    generator: torch.Generator,
    device: torch.device,
    *,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    jitter: tuple[float, float, float, float],
    p_jitter: float,
    p_gray: float,
    hflip: bool,
) -> _ViewParams:
    t = _BOX_TRIES
    # One draw for everything: per try area, aspect, top, left; then hflip,
    # jitter and gray coins, four jitter factors and four keys for the order.
    u = uniform((n, 4 * t + 11), generator, device)
    u_box = u[:, : 4 * t].view(n, t, 4)
    u_hflip, u_jitter, u_gray = u[:, 4 * t], u[:, 4 * t + 1], u[:, 4 * t + 2]
    u_factors, u_order = u[:, 4 * t + 3 : 4 * t + 7], u[:, 4 * t + 7 :]

    # All ten of torchvision's tries at once; each image keeps its first box
    # that fits, like the loop's early return, else the central fallback.
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * u_box[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_box[..., 1])
    w = torch.round(torch.sqrt(target * aspect))  # round half to even, as Python
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    u_top = u_box[..., 2].gather(1, first)[:, 0]
    u_left = u_box[..., 3].gather(1, first)[:, 0]
    # randint(0, H - h + 1) from a uniform; clamp as in _sample_crop_flip.
    top = torch.minimum((u_top * (height - h + 1)).floor(), height - h)
    left = torch.minimum((u_left * (width - w + 1)).floor(), width - w)
    found = fits.any(dim=1)
    fb_top, fb_left, fb_h, fb_w = _fallback_box(height, width, ratio)
    box = [
        torch.where(found, v, fallback).long()
        for v, fallback in ((top, fb_top), (left, fb_left), (h, fb_h), (w, fb_w))
    ]

    # ColorJitter factors: uniform on [max(0, 1 - a), 1 + a], hue on [-a, a];
    # from Python scalars, as a bounds tensor would cost a host-to-device sync.
    bounds = [(max(0.0, 1.0 - a), 1.0 + a) for a in jitter[:3]]
    bounds.append((-jitter[3], jitter[3]))
    factors = torch.stack(
        [lo + (hi - lo) * u_factors[:, i] for i, (lo, hi) in enumerate(bounds)], dim=1
    )
    return _ViewParams(
        *box,
        hflip=(u_hflip < 0.5) & hflip,
        jitter=u_jitter < p_jitter,
        factors=factors,
        # argsort of iid uniforms is a uniform random permutation (torch.randperm)
        order=u_order.argsort(dim=1),
        gray=u_gray < p_gray,
    )


def _resized_crop(x: Tensor, p: _ViewParams) -> Tensor:
    """Crop each box, resize it to x's size (bilinear) and flip, in one sample."""
    _, _, height, width = x.shape

    def source(size: int, start: Tensor, extent: Tensor, flip: Tensor | None) -> Tensor:
        # Half-pixel centres (PIL, and torch with align_corners=False): output
        # pixel k reads crop coordinate (k + 0.5) * extent / size - 0.5. The
        # clamp to the crop's edge pixels reproduces crop-then-resize, which
        # never reads pixels outside the box.
        k = torch.arange(size, device=x.device, dtype=torch.float32) + 0.5
        e = extent.to(torch.float32)[:, None]
        pos = (k * e / size - 0.5).clamp(min=0).minimum(e - 1)
        if flip is not None:
            pos = torch.where(flip[:, None], pos.flip(1), pos)
        # pixel index -> grid_sample's [-1, 1] (align_corners=False)
        return (2 * (start[:, None] + pos) + 1) / size - 1

    gx = source(width, p.left, p.width, p.hflip)
    gy = source(height, p.top, p.height, None)
    n = x.shape[0]
    grid = torch.stack(
        (
            gx[:, None, :].expand(n, height, width),
            gy[:, :, None].expand(n, height, width),
        ),
        dim=-1,
    ).to(x.dtype)
    return F.grid_sample(
        x, grid, mode="bilinear", padding_mode="border", align_corners=False
    )


def _luma(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _select(mask: Tensor, if_true: Tensor, if_false: Tensor) -> Tensor:
    """``torch.where`` for a bool ``mask`` broadcastable to both values.

    ``lerp`` with weight exactly 0 or 1 returns that end point exactly (for
    finite values), and on CPU it is several times faster than ``where``.
    """
    return torch.lerp(if_false, if_true, mask.to(if_true.dtype))


def _blend_step(x: Tensor, op: Tensor, factor: Tensor) -> Tensor:
    """Per image: brightness, contrast or saturation (op 0, 1, 2) by ``factor``.

    Each is torchvision's ``_blend(img, target, f) = clamp(f img + (1 - f)
    target)`` with target black, the mean luma or the luma image, computed
    as ``f x + (w luma + c)`` with per-image scalars, so no op is a full-size
    ``where``. op -1 (f = 1, w = c = 0) returns x exactly.
    """
    gray = _luma(x)
    f = torch.where(op < 0, 1.0, factor.to(x.dtype))
    w = torch.where(op == _SATURATION, 1 - f, 0.0)
    c = torch.where(op == _CONTRAST, (1 - f) * gray.mean(dim=(1, 2, 3)), 0.0)
    rest = torch.addcmul(c.view(-1, 1, 1, 1), w.view(-1, 1, 1, 1), gray)
    return torch.addcmul(rest, f.view(-1, 1, 1, 1), x).clamp_(0, 1)


def _adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue by ``shift`` turns per image, as torchvision's adjust_hue.

    A hue rotation keeps each pixel's max and min channel (HSV's v and s), so
    the RGB -> HSV -> RGB round trip reduces to finding the hue h6 in sextants
    and re-spreading the chroma around the shifted hue.
    """
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    chroma = maxc - minc
    # h6 = (g - b) / chroma, 2 + (b - r) / chroma or 4 + (r - g) / chroma when
    # red, else green, else blue is the max: torchvision's _rgb2hsv precedence.
    num = _select(
        maxc == r,
        g - b,
        _select(maxc == g, b - r + 2.0 * chroma, r - g + 4.0 * chroma),
    )
    # Grey pixels have num = chroma = 0 and any hue: divide by 1, not 0.
    h6 = num / (chroma + (chroma == 0))
    h6 = h6 + 6.0 * shift.view(-1, 1, 1).to(x.dtype)
    # HSV -> RGB without a sextant switch: channel n (5, 3, 1 for R, G, B) is
    # v - v s ramp(k), ramp(k) = clamp(min(k, 4 - k), 0, 1), k = (n + h6) mod 6,
    # and v s is the chroma. ramp is continuous with ramp(0) = ramp(6) = 0, so
    # the rounding of the floor-based mod at multiples of 6 does not matter.
    n = torch.arange(5, 0, -2, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = n + h6[:, None]
    k = k - 6.0 * torch.floor(k / 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0, 1)
    return (maxc[:, None] - chroma[:, None] * ramp).clamp_(0, 1)


def _color_jitter(x: Tensor, factors: Tensor, order: Tensor) -> Tensor:
    """ColorJitter with a per-image op order, as torchvision (randperm per call).

    The blend ops are cheap and hue is not, so hue runs once on the whole batch
    and each image's three blend ops are split around it: three slots before
    hue and three after, each image using the slots its order puts its ops in
    and no-ops (op -1) in the others.
    """
    hue_pos = (order == _HUE).long().argmax(dim=1, keepdim=True)
    slot = torch.arange(4, device=x.device).expand_as(order)
    # Drop hue from each order while keeping the others' relative order.
    rest = order.gather(1, torch.where(order == _HUE, 4, slot).argsort(dim=1)[:, :3])
    rest_factors = factors.gather(1, rest)
    for k in range(3):
        op = torch.where(hue_pos[:, 0] > k, rest[:, k], -1)
        x = _blend_step(x, op, rest_factors[:, k])
    x = _adjust_hue(x, factors[:, _HUE])
    for k in range(3):
        op = torch.where(hue_pos[:, 0] <= k, rest[:, k], -1)
        x = _blend_step(x, op, rest_factors[:, k])
    return x


def _apply_view(x: Tensor, p: _ViewParams) -> Tensor:
    x = _resized_crop(x, p)
    jittered = _color_jitter(x, p.factors, p.order)
    x = _select(p.jitter.view(-1, 1, 1, 1), jittered, x)
    x = _select(p.gray.view(-1, 1, 1, 1), _luma(x).expand_as(x), x)
    return x.clamp_(0, 1)


def simclr_view(
    x: Tensor,
    generator: torch.Generator,
    *,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
    p_jitter: float = 0.8,
    p_gray: float = 0.2,
    hflip: bool = True,
) -> Tensor:
    """One SupCon/SimCLR view per image, with independent parameters per image.

    RandomResizedCrop(size of x, scale, ratio) -> RandomHorizontalFlip(0.5, if
    ``hflip``) -> RandomApply(ColorJitter(*jitter), p_jitter) ->
    RandomGrayscale(p_gray). ColorJitter applies its four ops in a random
    order per image, like torchvision. See the module docstring for the
    (small) differences from torchvision + PIL.
    """
    _check_images(x)
    if not 0 < scale[0] <= scale[1]:
        raise ValueError(f"need 0 < scale[0] <= scale[1], got {scale}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"need 0 < ratio[0] <= ratio[1], got {ratio}")
    if min(jitter) < 0 or jitter[3] > 0.5:
        raise ValueError(f"jitter must be >= 0 with hue <= 0.5, got {jitter}")
    _check_probability("p_jitter", p_jitter)
    _check_probability("p_gray", p_gray)
    n, _, height, width = x.shape
    params = _sample_view(
        n,
        height,
        width,
        generator,
        x.device,
        scale=scale,
        ratio=ratio,
        jitter=jitter,
        p_jitter=p_jitter,
        p_gray=p_gray,
        hflip=hflip,
    )
    return _apply_view(x, params)


def two_views(
    x: Tensor,
    generator: torch.Generator,
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """Two independent :func:`simclr_view` s of every image (TwoCropTransform)."""
    return simclr_view(x, generator, **kwargs), simclr_view(x, generator, **kwargs)
