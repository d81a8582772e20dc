"""The encoders (WideResNet-16-2, CIFAR ResNet-18) and the SCL heads.

WideResNet follows study-reference.md §1 (the authors' `utils/models.py`,
itself the xternalz WideResNet): pre-activation, 16 -> (32, 64, 128) channels,
strides (1, 2, 2), a BN-ReLU-GAP 128-d representation. ResNet-18 is the CIFAR
variant of He et al. (2016) most CIFAR studies use (kuangliu/pytorch-cifar,
SupContrast's resnet_big): a 3x3 stride-1 stem conv, no max-pool,
post-activation basic blocks [2, 2, 2, 2] of 64/128/256/512 channels, a 1x1
conv + BN shortcut where the shape changes, GAP -> 512-d representation.
``build_encoder`` / ``build_classifier`` build either from an ``arch``
mapping (:func:`prunelens.study.arch_spec`). ``Classifier`` is what every
later stage predicts with: ``head(encoder(x))`` for both Sup and SCL.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunelens import files as _files
from prunelens.runtime import atomic_path
from prunelens.study import arch_spec

__all__ = [
    "BasicBlock",
    "Classifier",
    "Encoder",
    "ProjectionHead",
    "ResNet18Encoder",
    "ResNetBlock",
    "SupConNetwork",
    "WideResNetEncoder",
    "build_classifier",
    "build_encoder",
    "canonical_arch",
    "count_parameters",
    "load_model",
    "save_model",
]


def _gap(x: Tensor) -> Tensor:
    return x.mean(dim=(2, 3))


class BasicBlock(nn.Module):
    """Pre-activation block; a 1x1 shortcut reads the pre-activated input."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.equal = c_in == c_out and stride == 1
        self.shortcut = (
            None if self.equal else nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False)
        )

    def forward_parts(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return (mid activation, conv2 output before the add, block output)."""
        act = F.relu(self.bn1(x))
        short = x if self.shortcut is None else self.shortcut(act)
        mid = F.relu(self.bn2(self.conv1(act)))
        out = self.conv2(mid)
        return mid, out, short + out

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_parts(x)[2]


class ResNetBlock(nn.Module):
    """Post-activation basic block: ReLU(BN(conv(ReLU(BN(conv x)))) + shortcut),
    the shortcut a 1x1 conv + BN where the shape changes, else the identity."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.equal = c_in == c_out and stride == 1
        self.shortcut = (
            None
            if self.equal
            else nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False),
                nn.BatchNorm2d(c_out),
            )
        )

    def forward_parts(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return (mid activation, residual branch before the add, block output)."""
        mid = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(mid))
        short = x if self.shortcut is None else self.shortcut(x)
        return mid, out, F.relu(short + out)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_parts(x)[2]


class Encoder(nn.Module):
    """Image -> representation: ``stem``, residual ``blocks``, ``pool``.

    ``dim`` is the representation's width, ``arch`` the canonical mapping
    that rebuilds the encoder (``build_encoder(encoder.arch)``).
    """

    dim: int
    arch: dict[str, Any]
    blocks: nn.ModuleList

    def stem(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def pool(self, x: Tensor) -> Tensor:
        """The last block's output -> the (N, dim) representation."""
        raise NotImplementedError

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.pool(x)

    def forward_probes(self, x: Tensor) -> list[Tensor]:
        """Channel-wise GAP of the prediction-depth probe points (§8.2).

        The authors' rule for WRN-16-2, for either architecture: the stem's
        output; per block the mid activation and the residual branch's output
        before the add, plus the block output for identity-shortcut blocks.
        16 probes for WRN-16-2; 22 for ResNet-18 (1 + 8 x 2 + 5 identity
        blocks), whose last probe is the representation itself (its blocks
        end in a ReLU and GAP follows; WRN's final BN-ReLU is not probed).
        """
        x = self.stem(x)
        probes = [_gap(x)]
        for block in self.blocks:
            assert isinstance(block, BasicBlock | ResNetBlock)
            mid, out, x = block.forward_parts(x)
            probes += [_gap(mid), _gap(out)]
            if block.equal:
                probes.append(_gap(x))
        return probes


class WideResNetEncoder(Encoder):
    """WRN-depth-width without the classifier: image -> representation."""

    def __init__(self, depth: int = 16, width: int = 2) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1, got {depth}")
        if width < 1:
            raise ValueError(f"WideResNet width must be >= 1, got {width}")
        self.arch = arch_spec("wrn", {"depth": depth, "width": width})
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        blocks: list[nn.Module] = []
        for g, stride in enumerate((1, 2, 2)):
            for i in range(n):
                c_in = widths[g] if i == 0 else widths[g + 1]
                blocks.append(BasicBlock(c_in, widths[g + 1], stride if i == 0 else 1))
        self.blocks = nn.ModuleList(blocks)
        self.bn = nn.BatchNorm2d(widths[3])
        self.dim = widths[3]
        self._init_weights()

    def stem(self, x: Tensor) -> Tensor:
        return self.conv1(x)

    def pool(self, x: Tensor) -> Tensor:
        return _gap(F.relu(self.bn(x)))


class ResNet18Encoder(Encoder):
    """CIFAR ResNet-18 without the classifier: 3x3 stride-1 stem conv + BN +
    ReLU (no max-pool), basic blocks [2, 2, 2, 2] of 64/128/256/512 channels
    at strides 1/2/2/2, GAP -> 512-d representation."""

    def __init__(self) -> None:
        super().__init__()
        self.arch = arch_spec("resnet18", {})
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        blocks: list[nn.Module] = []
        c_in = 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            for i in range(2):
                blocks.append(ResNetBlock(c_in, c_out, stride if i == 0 else 1))
                c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.dim = 512
        self._init_weights()

    def stem(self, x: Tensor) -> Tensor:
        return F.relu(self.bn1(self.conv1(x)))

    def pool(self, x: Tensor) -> Tensor:
        return _gap(x)


def canonical_arch(arch: Mapping[str, Any]) -> dict[str, Any]:
    """``arch`` (a ``model.pt``'s, or a job's ``arch`` param) in canonical form.

    ``name`` defaults to ``wrn`` (files written before ResNet-18 carry only
    ``depth`` and ``width``); each architecture takes exactly its own size
    keys. ValueError for an unknown name or a wrong key.
    """
    rest = {k: v for k, v in arch.items() if k != "name"}
    return arch_spec(arch.get("name", "wrn"), rest, exact=True)


def build_encoder(arch: Mapping[str, Any]) -> Encoder:
    """The encoder ``arch`` describes, e.g. ``{"depth": 16, "width": 2}``
    (WRN-16-2) or ``{"name": "resnet18"}``."""
    spec = canonical_arch(arch)
    if spec.get("name") == "resnet18":
        return ResNet18Encoder()
    return WideResNetEncoder(spec["depth"], spec["width"])


class ProjectionHead(nn.Module):
    """SupCon MLP head dim -> dim -> 128 (128 -> 128 -> 128 for WRN-16-2, §1),
    L2-normalised output."""

    def __init__(self, dim: int = 128, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, out_dim)
        )

    def forward(self, h: Tensor) -> Tensor:
        return F.normalize(self.net(h), dim=1)


class SupConNetwork(nn.Module):
    """Encoder plus projection head, used only during contrastive pre-training."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = ProjectionHead(encoder.dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


class Classifier(nn.Module):
    """Encoder plus linear head; ``forward`` gives logits, ``represent`` the rep."""

    def __init__(self, encoder: Encoder, n_classes: int = 10) -> None:
        super().__init__()
        self.encoder = encoder
        self.fc = nn.Linear(encoder.dim, n_classes)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.encoder(x))

    def represent(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return (logits, representation) from one pass."""
        rep = self.encoder(x)
        return self.fc(rep), rep


def build_classifier(
    arch: Mapping[str, Any], n_classes: int | None = None
) -> Classifier:
    """``build_encoder(arch)`` plus a linear head of ``n_classes``: given, or
    the ``n_classes`` a ``model.pt``'s ``arch`` carries (files without it: 10)."""
    encoder = {k: v for k, v in arch.items() if k != "n_classes"}
    if n_classes is None:
        n_classes = int(arch.get("n_classes", 10))
    return Classifier(build_encoder(encoder), n_classes)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_model(path: str | Path, model: Classifier, meta: Mapping[str, Any]) -> None:
    """Save a classifier (masks already permanent) with what rebuilds it."""
    state = {
        "arch": dict(meta["arch"]),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


# The checked loader lives with the other file contracts (prunelens.files).
load_model = _files.load_model
