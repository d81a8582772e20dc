"""Resume only what matches (issue 13 §1), and a killed SCL block resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import prunelens.train as train_mod
from prunelens.checkpoint import fingerprint
from prunelens.train import pretrain_supcon, train_supervised

ARCH = {"depth": 10, "width": 1}
NORM = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
HP = {
    "epochs": 3,
    "batch_size": 64,
    "lr": 0.05,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5e-4,
    "milestones": [2],
    "gamma": 0.1,
    "augment": {"padding": 4, "hflip": True, "vflip": True},
}
GMP = {"begin": 2, "end": 12, "frequency": 2, "scope": "layerwise"}


def _sup(prepared: Path, out: Path, **hp: Any) -> dict[str, Any]:
    (metrics,) = train_supervised(
        data=prepared,
        seeds=[5],
        model_outs=[out / "model.pt"],
        metrics_outs=[out / "metrics.json"],
        arch=ARCH,
        hp={**HP, **hp},
        norm=NORM,
        gmp=GMP,
        sparsity=70,
        schedule="gmp",
        settings={"device": "cpu"},
    )
    return metrics


def _interrupted(monkeypatch, after_epochs: int, fn, *args, **kwargs) -> None:
    """Run ``fn`` until it has written its resume file ``after_epochs`` times."""
    real = train_mod.save_resume
    saved = []

    def save_then_maybe_stop(*a: Any, **kw: Any) -> None:
        real(*a, **kw)
        saved.append(1)
        if len(saved) == after_epochs:
            raise InterruptedError("stop")

    monkeypatch.setattr(train_mod, "save_resume", save_then_maybe_stop)
    with pytest.raises(InterruptedError):
        fn(*args, **kwargs)
    monkeypatch.setattr(train_mod, "save_resume", real)


def _same_weights(a: Path, b: Path) -> bool:
    sa, sb = (torch.load(p, weights_only=False)["state_dict"] for p in (a, b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_changed_hyperparameter_trains_afresh(
    prepared, tmp_path, monkeypatch, caplog
):
    out = tmp_path / "run"
    _interrupted(monkeypatch, 1, _sup, prepared, out)
    assert (out / "resume.pt").exists()
    with caplog.at_level("WARNING"):
        metrics = _sup(prepared, out, lr=0.02)
    assert "written for other settings" in caplog.text
    assert str(out / "resume.pt") in caplog.text
    assert (out / "resume.stale.pt").exists()  # kept aside, one generation
    assert [r["lr"] for r in metrics["history"]] == pytest.approx([0.02, 0.02, 0.002])
    _sup(prepared, tmp_path / "straight", lr=0.02)
    assert _same_weights(out / "model.pt", tmp_path / "straight" / "model.pt")


def test_fewer_epochs_than_the_checkpoint_trains_the_shorter_run(
    prepared, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    _interrupted(monkeypatch, 2, _sup, prepared, out)
    metrics = _sup(prepared, out, epochs=1)
    assert metrics["epochs"] == 1
    assert len(metrics["history"]) == 1
    assert metrics["steps"] == 5  # 320 images, batch 64
    _sup(prepared, tmp_path / "straight", epochs=1)
    assert _same_weights(out / "model.pt", tmp_path / "straight" / "model.pt")


def test_a_truncated_resume_file_is_discarded(prepared, tmp_path, monkeypatch, caplog):
    out = tmp_path / "run"
    _interrupted(monkeypatch, 1, _sup, prepared, out)
    resume = out / "resume.pt"
    with open(resume, "r+b") as fh:
        fh.truncate(os.path.getsize(resume) // 2)
    with caplog.at_level("WARNING"):
        metrics = _sup(prepared, out)
    assert f"resume file {resume} is unreadable" in caplog.text
    assert metrics["epochs"] == 3
    assert not resume.exists()
    _sup(prepared, tmp_path / "straight")
    assert _same_weights(out / "model.pt", tmp_path / "straight" / "model.pt")


def test_unchanged_settings_resume_where_they_stopped(prepared, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _interrupted(monkeypatch, 2, _sup, prepared, out)
    first = torch.load(out / "resume.pt", weights_only=False)["histories"][0].epochs
    metrics = _sup(prepared, out)
    assert metrics["history"][:2] == first  # epochs 1-2 came from the file
    _sup(prepared, tmp_path / "straight")
    assert _same_weights(out / "model.pt", tmp_path / "straight" / "model.pt")


def test_the_fingerprint_covers_settings_and_input_files(tmp_path):
    data = tmp_path / "data.npz"
    data.write_bytes(b"x")
    key = fingerprint({"lr": 0.1, "seeds": [0]}, [data])
    assert key == fingerprint({"seeds": [0], "lr": 0.1}, [data])
    assert key != fingerprint({"lr": 0.2, "seeds": [0]}, [data])
    assert key != fingerprint({"lr": 0.1, "seeds": [1]}, [data])
    data.write_bytes(b"yy")  # a re-prepared input
    assert key != fingerprint({"lr": 0.1, "seeds": [0]}, [data])


# ---------------------------------------------- SupCon block, killed mid-epoch

PRETRAIN = {
    "epochs": 3,
    "batch_size": 64,
    "lr": 0.05,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5e-4,
    "eta_min_factor": 1e-3,
    "temperature": 0.5,
    "base_temperature": 0.07,
    "augment": {
        "scale": [0.2, 1.0],
        "jitter": [0.4, 0.4, 0.4, 0.1],
        "p_jitter": 0.8,
        "p_gray": 0.2,
    },
}

_CHILD = """
import json, sys
from prunelens.train import pretrain_supcon
pretrain_supcon(**json.loads(sys.argv[1]))
"""


def _pretrain_kwargs(prepared: Path, out: Path) -> dict[str, Any]:
    seeds = [0, 1]
    return {
        "data": str(prepared),
        "seeds": seeds,
        "encoder_outs": [str(out / f"seed{s}" / "encoder.pt") for s in seeds],
        "arch": ARCH,
        "hp": PRETRAIN,
        "norm": NORM,
        "gmp": GMP,  # events in every epoch, some after the kill
        "sparsity": 80,
        "schedule": "gmp",
        "settings": {"device": "cpu"},
    }


def test_killed_supcon_block_resumes_to_identical_weights(prepared, tmp_path):
    straight = pretrain_supcon(**_pretrain_kwargs(prepared, tmp_path / "straight"))
    out = tmp_path / "resumed"
    kw = _pretrain_kwargs(prepared, out)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(kw)])
    ckpt = out / "seed0" / "resume.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)  # during epoch 2
    assert child.wait(timeout=30) == -signal.SIGKILL, "training ended before the kill"
    epochs_done = len(torch.load(ckpt, weights_only=False)["histories"][0].epochs)
    assert 1 <= epochs_done < PRETRAIN["epochs"]
    assert not list(out.rglob("encoder.pt"))

    resumed = pretrain_supcon(**kw)
    assert not ckpt.exists()
    for a, b in zip(straight, resumed, strict=True):
        assert a["history"] == [
            {**r, "images_per_s": a["history"][i]["images_per_s"]}
            for i, r in enumerate(b["history"])
        ]
        assert a["state_dict"].keys() == b["state_dict"].keys()
        for name, x in a["state_dict"].items():
            assert torch.equal(x, b["state_dict"][name]), name
        assert a["sparsity_measured"] == pytest.approx(0.8, abs=0.005)
