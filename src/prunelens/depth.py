"""Prediction depth from k-NN probes on intermediate activations (§8).

Pipeline for one model: ``probe_activations`` on the training and the test
images, ``probe_predictions`` fits a k-NN (k = 30) on the training activations of
each probe and classifies the test activations, and ``prediction_depth`` turns the
(L, N) probe predictions into one depth per test example.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from .knn import knn_predict
from .models import Encoder

__all__ = ["prediction_depth", "probe_activations", "probe_predictions"]


def probe_activations(
    encoder: Encoder,
    images: Tensor,
    *,
    batch: int = 1024,
    device: torch.device | str | None = None,
) -> list[np.ndarray]:
    """GAP'd probe activations of ``encoder.forward_probes``, one (N, C_l) array each.

    ``images`` are normalised (N, 3, H, W) floats on any device; they are moved to
    ``device`` batch by batch. The encoder is moved to ``device`` (default: where
    its parameters are) and run in eval mode, so BatchNorm uses its running
    statistics and examples in a batch do not interact; its train/eval mode is
    restored afterwards. On CUDA the convolutions follow torch's cuDNN TF32
    setting (on by default), so activations differ from CPU ones by ~1e-3 relative.
    Returns float32 arrays in probe order (16 for WRN-16-2, 22 for ResNet-18).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is empty")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    dev = next(encoder.parameters()).device if device is None else torch.device(device)
    was_training = encoder.training
    encoder.to(dev).eval()
    parts: list[list[np.ndarray]] = []
    try:
        with torch.no_grad():
            for start in range(0, images.shape[0], batch):
                x = images[start : start + batch].to(dev, torch.float32)
                probes = encoder.forward_probes(x)
                if not parts:
                    parts = [[] for _ in probes]
                for acc, p in zip(parts, probes, strict=True):
                    acc.append(p.float().cpu().numpy())
    finally:
        encoder.train(was_training)
    return [np.concatenate(acc) for acc in parts]


def probe_predictions(
    train_acts: Sequence[np.ndarray],
    train_y: np.ndarray,
    test_acts: Sequence[np.ndarray],
    *,
    k: int = 30,
    n_classes: int = 10,
    device: torch.device | str | None = None,
    chunk: int = 1024,
) -> np.ndarray:
    """k-NN prediction of every test example at every probe, shape (L, N_test).

    Probe l's k-NN is fit on ``train_acts[l]`` with labels ``train_y`` (true labels,
    as the authors do) and classifies ``test_acts[l]``; see ``knn_predict``.
    """
    if len(train_acts) != len(test_acts):
        raise ValueError(
            f"{len(train_acts)} training probes but {len(test_acts)} test probes"
        )
    if len(train_acts) == 0:
        raise ValueError("need at least one probe")
    dev = torch.device("cpu" if device is None else device)
    labels = torch.as_tensor(np.asarray(train_y), dtype=torch.int64, device=dev)
    n_test = test_acts[0].shape[0]
    out = np.empty((len(test_acts), n_test), dtype=np.int64)
    for layer, (tr, te) in enumerate(zip(train_acts, test_acts, strict=True)):
        if te.shape[0] != n_test:
            raise ValueError(f"probe {layer} has {te.shape[0]} test rows, not {n_test}")
        preds = knn_predict(
            torch.as_tensor(tr, device=dev),
            labels,
            torch.as_tensor(te, device=dev),
            k=k,
            n_classes=n_classes,
            chunk=chunk,
        )
        out[layer] = preds.cpu().numpy()
    return out


def prediction_depth(
    probe_preds: np.ndarray,
    target: np.ndarray,
    *,
    definition: Literal["corti", "baldock"] = "corti",
) -> np.ndarray:
    """Prediction depth of each example from its (L, N) probe predictions.

    ``definition="corti"`` (the authors' code, the default; §8.2): ``target`` is
    the true label. PD = 1 + (0-based index of the LAST probe whose prediction
    differs from the target), and PD = 1 if no probe is wrong. Range [1, L]; an
    example wrong only at probe 0 also gets 1, and one wrong at the last probe
    gets L.

    ``definition="baldock"`` (Baldock et al. 2021; §8.1): ``target`` is the
    network's final prediction. Depth = the smallest 0-based l such that probes
    l, ..., L-1 all equal the target, i.e. the number of leading probes before the
    probe prediction settles on the target for good: 0 when every probe agrees,
    L when the last probe disagrees. Range [0, L]. Baldock et al. also probe the
    input and the softmax; pass such probes as rows if wanted (a softmax probe
    always agrees with the final prediction, so the depth is then < L).

    Returns int64 depths of shape (N,).
    """
    preds = np.asarray(probe_preds)
    target = np.asarray(target)
    if preds.ndim != 2 or preds.shape[0] == 0:
        raise ValueError(f"probe_preds must be (L, N) with L >= 1, got {preds.shape}")
    if target.shape != (preds.shape[1],):
        raise ValueError(
            f"target must have shape ({preds.shape[1]},), got {target.shape}"
        )
    n_layers = preds.shape[0]
    wrong = preds != target[None, :]
    any_wrong = wrong.any(axis=0)
    # Index of the last wrong probe: argmax finds the first True of the reversed
    # rows. Meaningless where nothing is wrong, which is masked by any_wrong.
    last_wrong = n_layers - 1 - wrong[::-1].argmax(axis=0)
    if definition == "corti":
        depth = np.where(any_wrong, last_wrong + 1, 1)
    elif definition == "baldock":
        depth = np.where(any_wrong, last_wrong + 1, 0)
    else:
        raise ValueError(f"definition must be 'corti' or 'baldock', got {definition!r}")
    return depth.astype(np.int64)
