"""Inference: logits and representations over a split, and the predictions file.

Predictions file (``results/predictions/.../seed{seed}.npz``): ``index``
(int64), ``label`` (int64), ``pred`` (int64), ``logits`` (float32, N x C, C classes) and
``rep`` (float32, N x 128, the encoder output before any head), in the
prepared test split's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from prunelens import augment
from prunelens.data import load_prepared
from prunelens.files import load_model
from prunelens.models import Classifier
from prunelens.runtime import atomic_path, keep_freed_memory, pick_device

__all__ = ["accuracy", "predict", "predict_files", "write_predictions"]


@torch.no_grad()
def predict(
    model: Classifier,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    device: str = "cpu",
    batch: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode (logits, representation) for uint8 NHWC ``images``."""
    model.eval()
    logits, reps = [], []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i : i + batch]).to(device)
        x = augment.normalize(augment.to_unit_float(x), mean, std)
        out, rep = model.represent(x.contiguous(memory_format=torch.channels_last))
        logits.append(out.float().cpu().numpy())
        reps.append(rep.float().cpu().numpy())
    return np.concatenate(logits), np.concatenate(reps)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def write_predictions(
    out: str | Path,
    *,
    index: np.ndarray,
    labels: np.ndarray,
    logits: np.ndarray,
    rep: np.ndarray,
) -> None:
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            index=index.astype(np.int64),
            label=labels.astype(np.int64),
            pred=logits.argmax(1).astype(np.int64),
            logits=logits.astype(np.float32),
            rep=rep.astype(np.float32),
        )


def predict_files(
    *,
    models: Sequence[str | Path],
    outs: Sequence[str | Path],
    data: str | Path,
    mean: Sequence[float],
    std: Sequence[float],
    device: str = "auto",
    batch: int = 1024,
    threads: int = 1,
) -> list[float]:
    """Write the predictions file of each saved model; returns test accuracies.

    One job serves a whole population, so the data and torch load once.
    """
    if len(models) != len(outs):
        raise ValueError(f"{len(models)} models but {len(outs)} output paths")
    torch.set_num_threads(max(1, threads))
    keep_freed_memory()
    dev = pick_device(device)
    test = load_prepared(data, "test")
    accs = []
    for model, out in zip(models, outs, strict=True):
        net, _ = load_model(model, dev)
        net = net.to(memory_format=torch.channels_last)
        logits, rep = predict(net, test.images, mean, std, device=dev, batch=batch)
        write_predictions(
            out, index=test.index, labels=test.labels, logits=logits, rep=rep
        )
        accs.append(accuracy(logits, test.labels))
    return accs
