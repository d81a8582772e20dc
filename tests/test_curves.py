"""Training curves: TensorBoard event files and CSVs per model, exact on
resume, no effect on training; progress lines inside an epoch."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util.tensor_util import make_ndarray

import prunelens.train as train_mod
from prunelens.curves import COLUMNS, Progress, read_curves, tags
from prunelens.models import load_model
from prunelens.train import pretrain_supcon, train_supervised

ARCH = {"depth": 10, "width": 1}
NORM = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
# 320 images at batch 32: 10 steps per epoch, 30 steps
HP = {
    "epochs": 3,
    "batch_size": 32,
    "lr": 0.05,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5e-4,
    "milestones": [2],
    "gamma": 0.1,
    "augment": {"padding": 4, "hflip": True, "vflip": True},
}
GMP = {"begin": 2, "end": 20, "frequency": 4, "scope": "layerwise"}


def _sup(prepared: Path, out: Path, seeds=(7,), every=5, progress=30.0, **over):
    kw: dict[str, Any] = dict(
        data=prepared,
        seeds=list(seeds),
        model_outs=[out / f"seed{s}" / "model.pt" for s in seeds],
        metrics_outs=[out / f"seed{s}" / "metrics.json" for s in seeds],
        curves_outs=[out / f"seed{s}" / "curves.csv" for s in seeds],
        tensorboard_dirs=[out / "tb" / f"seed{s}" for s in seeds],
        arch=ARCH,
        hp=HP,
        norm=NORM,
        gmp=GMP,
        sparsity=60,
        schedule="gmp",
        settings={"device": "cpu", "log_every_steps": every, "progress_s": progress},
    )
    kw.update(over)
    return train_supervised(**kw)


def _events(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar event of every event file in ``run_dir``, raw (the
    accumulator would hide a duplicated step)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for f in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(f)).Load():
            for v in event.summary.value:
                value = float(make_ndarray(v.tensor))  # the loader's form
                out.setdefault(v.tag, []).append((event.step, value))
    return out


def test_each_model_gets_event_files_and_a_csv_equal_to_its_history(
    prepared, tmp_path, caplog
):
    with caplog.at_level(logging.INFO, logger="prunelens.train"):
        (metrics,) = _sup(prepared, tmp_path, progress=0.0)
    run_dir = tmp_path / "tb" / "seed7"
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == sorted(tags(accuracy=True))
    for tag in tags():
        want = [5, 10, 15, 20, 25, 30] if tag.startswith("train/") else [10, 20, 30]
        assert [e.step for e in acc.Scalars(tag)] == want, tag

    csv = read_curves(tmp_path / "seed7" / "curves.csv")
    assert list(csv.columns) == list(COLUMNS)
    assert list(csv["level"]) == ["step", "step", "epoch"] * 3  # epoch row last
    assert csv["round"].isna().all()
    epochs = csv[csv["level"] == "epoch"]
    for (_, row), hist in zip(epochs.iterrows(), metrics["history"], strict=True):
        assert row["epoch"] == hist["epoch"]
        assert row["step"] == hist["step"]
        for name, key in [
            ("loss", "loss"),
            ("acc", "train_acc"),
            ("lr", "lr"),
            ("sparsity", "sparsity"),
            ("images_per_s", "images_per_s"),
        ]:
            assert row[name] == pytest.approx(hist[key], rel=1e-12), name  # fmt: skip
    steps = csv[csv["level"] == "step"]
    assert list(steps["step"]) == [5, 10, 15, 20, 25, 30]
    assert list(steps["epoch"]) == [1, 1, 2, 2, 3, 3]
    assert list(steps["lr"]) == [0.05] * 4 + [pytest.approx(0.005)] * 2
    # two rows of 160 images cover each epoch: their mean is the epoch's
    for e, hist in enumerate(metrics["history"], start=1):
        rows = steps[steps["epoch"] == e]
        assert rows["loss"].mean() == pytest.approx(hist["loss"], rel=1e-6)
        assert rows["acc"].mean() == pytest.approx(hist["train_acc"], rel=1e-6)
    # GMP's sparsity as measured at each logging point, rising to the target
    assert steps["sparsity"].is_monotonic_increasing
    assert steps["sparsity"].iloc[-1] == pytest.approx(0.6, abs=0.005)
    # TensorBoard holds the CSV's values (as float32)
    for name in ("loss", "acc", "lr", "sparsity"):
        got = [e.value for e in acc.Scalars(f"train/{name}")]
        assert got == pytest.approx(list(steps[name]), rel=1e-6), name
        got = [e.value for e in acc.Scalars(f"epoch/{name}")]
        assert got == pytest.approx(list(epochs[name]), rel=1e-6), name
    # progress_s 0: a progress line after each of the 30 steps
    lines = [r.getMessage() for r in caplog.records if "left: epoch" in r.message]
    assert len(lines) == 30
    assert "epoch 1/3 step 1 (32/320 images)" in lines[0]
    assert lines[-1].endswith("left: epoch 0:00:00, training 0:00:00")


def test_logging_changes_no_weight(prepared, tmp_path):
    on, off = tmp_path / "on", tmp_path / "off"
    _sup(prepared, on, every=1, progress=0.0, hp={**HP, "epochs": 2})
    _sup(prepared, off, every=0, curves_outs=None, tensorboard_dirs=None,
         hp={**HP, "epochs": 2})  # fmt: skip
    a, _ = load_model(on / "seed7" / "model.pt")
    b, _ = load_model(off / "seed7" / "model.pt")
    for (name, x), (_, y) in zip(
        a.state_dict().items(), b.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), name
    assert not (off / "tb").exists()
    assert not (off / "seed7" / "curves.csv").exists()
    ma = json.loads((on / "seed7" / "metrics.json").read_text())["history"]
    mb = json.loads((off / "seed7" / "metrics.json").read_text())["history"]
    assert [r["loss"] for r in ma] == [r["loss"] for r in mb]


def test_a_block_of_seeds_writes_one_run_dir_and_csv_per_seed(prepared, tmp_path):
    ms = _sup(prepared, tmp_path, seeds=(3, 4), hp={**HP, "epochs": 1})
    for s, m in zip((3, 4), ms, strict=True):
        ev = _events(tmp_path / "tb" / f"seed{s}")
        assert [st for st, _ in ev["train/loss"]] == [5, 10]
        (_, loss), = ev["epoch/loss"]  # fmt: skip
        assert loss == pytest.approx(m["history"][0]["loss"], rel=1e-6)
        csv = read_curves(tmp_path / f"seed{s}" / "curves.csv")
        assert len(csv) == 3
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["seed3", "seed4"]
    assert ms[0]["history"][0]["loss"] != ms[1]["history"][0]["loss"]


def test_a_resumed_job_writes_each_step_once(prepared, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    _sup(prepared, straight)
    want = _events(straight / "tb" / "seed7")

    # killed after epoch 3's rows were logged, before its resume file was saved
    resumed = tmp_path / "resumed"
    real, calls = train_mod.save_resume, []

    def dies_at_epoch_3(*a: Any, **kw: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(*a, **kw)

    monkeypatch.setattr(train_mod, "save_resume", dies_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        _sup(prepared, resumed)
    monkeypatch.setattr(train_mod, "save_resume", real)
    partial = _events(resumed / "tb" / "seed7")
    assert [s for s, _ in partial["epoch/loss"]] == [10, 20, 30]

    _sup(prepared, resumed)
    got = _events(resumed / "tb" / "seed7")
    assert len(list((resumed / "tb" / "seed7").glob("events.*"))) == 1
    assert got.keys() == want.keys()
    for tag in want:
        assert [s for s, _ in got[tag]] == [s for s, _ in want[tag]], tag
    for tag in ("train/loss", "epoch/loss", "train/sparsity", "train/acc"):
        assert got[tag] == want[tag], tag  # resume is exact
    a = pd.read_csv(straight / "seed7" / "curves.csv")
    b = pd.read_csv(resumed / "seed7" / "curves.csv")
    pd.testing.assert_frame_equal(
        a.drop(columns="images_per_s"), b.drop(columns="images_per_s")
    )


def test_pretraining_curves_have_no_accuracy(prepared, tmp_path):
    hp = {
        "epochs": 1, "batch_size": 64, "lr": 0.05, "momentum": 0.9,
        "nesterov": False, "weight_decay": 1e-4, "eta_min_factor": 0.01,
        "temperature": 0.5, "base_temperature": 0.07,
        "augment": {"scale": [0.2, 1.0], "jitter": [0.4, 0.4, 0.4, 0.1],
                    "p_jitter": 0.8, "p_gray": 0.2},
    }  # fmt: skip
    pretrain_supcon(
        data=prepared, seeds=[0], encoder_outs=[tmp_path / "encoder.pt"],
        curves_outs=[tmp_path / "encoder_curves.csv"],
        tensorboard_dirs=[tmp_path / "tb"], arch=ARCH, hp=hp, norm=NORM,
        gmp=None, sparsity=0, schedule="dense",
        settings={"device": "cpu", "log_every_steps": 2},
    )  # fmt: skip
    ev = _events(tmp_path / "tb")
    assert sorted(ev) == sorted(tags(accuracy=False))
    assert [s for s, _ in ev["train/loss"]] == [2, 4]  # 5 steps of 64
    csv = read_curves(tmp_path / "encoder_curves.csv")
    assert csv["acc"].isna().all()
    assert list(csv["level"]) == ["step", "step", "epoch"]


def test_progress_is_due_every_interval_of_the_clock():
    now = [0.0]
    p = Progress(30.0, clock=lambda: now[0])
    due = []
    for step in range(1, 21):
        now[0] += 7.0  # a 7 s step
        if p.due():
            due.append(step)
    # 28 s is not yet due; 35 s is (and the interval restarts there)
    assert due == [5, 10, 15, 20]
