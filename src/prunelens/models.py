"""WideResNet-16-2 (pre-activation, Zagoruyko & Komodakis) and the SCL heads.

Follows study-reference.md §1 (the authors' `utils/models.py`, itself the
xternalz WideResNet): 16 -> (32, 64, 128) channels, strides (1, 2, 2), a
BN-ReLU-GAP 128-d representation. ``Classifier`` is what every later stage
predicts with: ``head(encoder(x))`` for both Sup and SCL.
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

__all__ = [
    "BasicBlock",
    "Classifier",
    "ProjectionHead",
    "SupConNetwork",
    "WideResNetEncoder",
    "build_classifier",
    "count_parameters",
    "load_model",
    "save_model",
]


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


class WideResNetEncoder(nn.Module):
    """WRN-depth-width without the classifier: image -> representation."""

    def __init__(self, depth: int = 16, width: int = 2) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1, got {depth}")
        if width < 1:
            raise ValueError(f"WideResNet width must be >= 1, got {width}")
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
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        for block in self.blocks:
            x = block(x)
        return F.relu(self.bn(x)).mean(dim=(2, 3))

    def forward_probes(self, x: Tensor) -> list[Tensor]:
        """Channel-wise GAP of the prediction-depth probe points (§8.2).

        Stem output; per block the mid activation and conv2 output, plus the
        residual sum for identity-shortcut blocks: 16 probes for WRN-16-2.
        """
        x = self.conv1(x)
        probes = [x.mean(dim=(2, 3))]
        for block in self.blocks:
            assert isinstance(block, BasicBlock)
            mid, out, x = block.forward_parts(x)
            probes += [mid.mean(dim=(2, 3)), out.mean(dim=(2, 3))]
            if block.equal:
                probes.append(x.mean(dim=(2, 3)))
        return probes


class ProjectionHead(nn.Module):
    """SupCon MLP head 128 -> 128 -> 128, L2-normalised output (§1)."""

    def __init__(self, dim: int = 128, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, out_dim)
        )

    def forward(self, h: Tensor) -> Tensor:
        return F.normalize(self.net(h), dim=1)


class SupConNetwork(nn.Module):
    """Encoder plus projection head, used only during contrastive pre-training."""

    def __init__(self, encoder: WideResNetEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = ProjectionHead(encoder.dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


class Classifier(nn.Module):
    """Encoder plus linear head; ``forward`` gives logits, ``represent`` the rep."""

    def __init__(self, encoder: WideResNetEncoder, n_classes: int = 10) -> None:
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
    depth: int = 16, width: int = 2, n_classes: int = 10
) -> Classifier:
    return Classifier(WideResNetEncoder(depth, width), n_classes)


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
