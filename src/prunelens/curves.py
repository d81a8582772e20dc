"""Training curves and progress: what :func:`prunelens.train.train` logs.

Every ``every_steps`` optimiser steps and after every epoch the loop records
one row per model (loss, accuracy, lr, sparsity, images/s) in its
:class:`~prunelens.train.History`, so the rows travel in ``resume.pt`` and a
resumed job's curves are exactly an uninterrupted job's. :class:`Curves`
mirrors the rows live into one TensorBoard run directory per model (tags
``train/<scalar>`` per step row, ``epoch/<scalar>`` per epoch row; x axis:
the job's optimiser step); :func:`write_curves` writes them as the CSV
beside ``metrics.json`` (``curves.csv``) or ``encoder.pt``
(``encoder_curves.csv``). :class:`Progress` paces the rule log's progress
lines inside an epoch.

None of it touches what training computes: rows are read from the loss and
count tensors the loop accumulates anyway, at logging points only (one
device sync per logging point).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("prunelens.curves")

__all__ = [
    "COLUMNS",
    "SCALARS",
    "Curves",
    "Progress",
    "curve_rows",
    "read_curves",
    "tags",
    "write_curves",
]

# The scalars of a row, in CSV column order; TensorBoard tags are
# train/<name> (step rows) and epoch/<name> (epoch rows). ``acc`` is the
# training accuracy (none in contrastive pre-training: no classifier yet).
SCALARS = ("loss", "acc", "lr", "sparsity", "images_per_s")
# ``level``: "step" (every N steps; loss, acc and images/s over the images
# since the previous row of the epoch) or "epoch" (the epoch's means);
# ``round``: IMP round (empty for every other stage).
COLUMNS = ("level", "round", "epoch", "step", *SCALARS)
EVENTS_GLOB = "events.out.tfevents.*"
Row = Mapping[str, Any]


def tags(accuracy: bool = True) -> list[str]:
    """The TensorBoard scalar tags of a training (``accuracy``: whether the
    objective has one)."""
    names = [s for s in SCALARS if accuracy or s != "acc"]
    return [f"{level}/{s}" for level in ("train", "epoch") for s in names]


def _epoch_scalars(row: Row) -> dict[str, Any]:
    """An epoch row of ``History.epochs`` in the curves' names (``train_acc``
    of metrics.json is ``acc`` here)."""
    return {
        "loss": row["loss"],
        "acc": row.get("train_acc"),
        "lr": row["lr"],
        "sparsity": row["sparsity"],
        "images_per_s": row["images_per_s"],
    }


def curve_rows(
    steps: Iterable[Row], epochs: Iterable[Row], accuracy: bool = True
) -> list[dict[str, Any]]:
    """One model's step and epoch rows as curve rows in training order (an
    epoch row after the step rows of its epoch; ties: the step row first)."""
    out = [{"level": "step", **r} for r in steps]
    out += [{"level": "epoch", **r, **_epoch_scalars(r)} for r in epochs]
    rows = [
        {c: r.get(c) for c in COLUMNS} | ({} if accuracy else {"acc": None})
        for r in out
    ]
    order = {"step": 0, "epoch": 1}
    return sorted(
        rows,
        key=lambda r: (r["round"] or 0, r["step"] or 0, order[r["level"]]),
    )


def write_curves(
    path: str | Path, steps: Iterable[Row], epochs: Iterable[Row], accuracy: bool
) -> None:
    """Write one model's curves CSV (columns :data:`COLUMNS`) atomically."""
    import pandas as pd

    from prunelens.runtime import write_csv

    rows = curve_rows(steps, epochs, accuracy)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    write_csv(path, frame.astype({"epoch": "Int64", "step": "Int64"}))


def read_curves(path: str | Path) -> Any:
    """A curves CSV as a DataFrame (``round`` as nullable integers)."""
    import pandas as pd

    frame = pd.read_csv(path)
    missing = sorted(set(COLUMNS) - set(frame.columns))
    if missing:
        raise ValueError(f"{path}: not a curves file, missing {', '.join(missing)}")
    return frame.astype({"round": "Int64"})


class Curves:
    """The TensorBoard run directories of one training job, one per model.

    Opened lazily: the first write deletes the event files an earlier run of
    the job left (a rerun or a resumed job rewrites the whole curve: see
    :meth:`write`). ``offset`` is added to the loop's step (IMP: the steps
    of the finished rounds); ``accuracy``: whether the training has one (the
    default of :meth:`write`). No directories: every call is a no-op.
    """

    def __init__(
        self, dirs: Sequence[str | Path] | None = None, accuracy: bool = True
    ) -> None:
        self.dirs = [Path(d) for d in dirs or ()]
        self.accuracy = accuracy
        self.offset = 0
        self._writers: list[Any] | None = None

    def __bool__(self) -> bool:
        return bool(self.dirs)

    def _open(self) -> list[Any]:
        if self._writers is None:
            from torch.utils.tensorboard import SummaryWriter

            for d in self.dirs:
                for old in d.glob(EVENTS_GLOB):
                    old.unlink()
            self._writers = [SummaryWriter(str(d), flush_secs=30) for d in self.dirs]
        return self._writers

    def write(
        self,
        steps: Sequence[Sequence[Row]],
        epochs: Sequence[Sequence[Row]],
        accuracy: bool | None = None,
    ) -> None:
        """Write step and epoch rows (as in ``History``), per model: the
        rows of a logging point, or those a resumed job recorded earlier. A
        None or NaN scalar is not written."""
        if not self.dirs:
            return
        acc = self.accuracy if accuracy is None else accuracy
        for writer, s, e in zip(self._open(), steps, epochs, strict=True):
            for r in curve_rows(s, e, acc):
                prefix = "train" if r["level"] == "step" else "epoch"
                for name in SCALARS:
                    v = r[name]
                    if v is not None and math.isfinite(v):
                        writer.add_scalar(
                            f"{prefix}/{name}", v, r["step"] + self.offset
                        )

    def flush(self) -> None:
        for w in self._writers or ():
            w.flush()

    def close(self) -> None:
        for w in self._writers or ():
            w.close()
        self._writers = None


class Progress:
    """When the loop logs a progress line inside an epoch: at least every
    ``every_s`` seconds of ``clock`` (0: after every step)."""

    def __init__(
        self, every_s: float, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.every_s = every_s
        self.clock = clock
        self._last = clock()

    def due(self) -> bool:
        now = self.clock()
        if now - self._last >= self.every_s:
            self._last = now
            return True
        return False


def eta(seconds: float) -> str:
    """``seconds`` as h:mm:ss."""
    if not math.isfinite(seconds):
        return "?"
    s = round(max(seconds, 0.0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
