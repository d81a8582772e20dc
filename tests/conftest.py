from __future__ import annotations

import contextlib
import copy
import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from prunelens.data import CLASSES, make_synthetic_images_archive

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


@pytest.fixture
def paper_config() -> dict[str, Any]:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    # relative to the repo, as when Snakemake runs from its root
    cfg["data"]["images_archive"] = str(REPO / cfg["data"]["images_archive"])
    return cfg


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory without logging each request."""

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest output clean


@contextlib.contextmanager
def serve(
    directory: Path, handler: type[http.server.BaseHTTPRequestHandler] = QuietHandler
) -> Iterator[str]:
    """An HTTP server for ``directory`` on 127.0.0.1 (a free port) in a
    thread: its base URL, e.g. ``http://127.0.0.1:41234``."""
    bound = functools.partial(handler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), bound)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def run_snakemake(
    workdir: Path,
    *args: str,
    configfiles: list[Path],
    timeout: float = 600,
    snakefile: Path = REPO / "Snakefile",
) -> subprocess.CompletedProcess[str]:
    """Run the repo's workflow with ``workdir`` as working directory (no
    ``configfiles``: Snakemake reads ``workdir``/config.yaml)."""
    cmd = [
        SNAKEMAKE,
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
        *(["--configfile", *map(str, configfiles)] if configfiles else []),
        *args,
    ]
    env = {k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"}
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir
    )


# 120 training images: 4 steps per epoch at batch 32
TINY = {
    "data": {"images_sha256": None},
    "model": {"depth": 10, "width": 2},
    "seeds": [0, 1],
    "schedules": {
        "sup": {"gmp": [50], "oneshot": [50]},
        "scl": {"gmp": [50], "delayed_gmp": [50], "oneshot": [50]},
        "simclr": {"gmp": [50], "delayed_gmp": [50], "oneshot": [50]},
    },
    "sup": {"epochs": 1, "batch_size": 32, "lr": 0.05, "milestones": []},
    "scl": {
        "pretrain": {"epochs": 2, "batch_size": 32},
        "head": {"epochs": 1, "batch_size": 32, "milestones": []},
    },
    "simclr": {
        "pretrain": {"epochs": 2, "batch_size": 32},
        "head": {"epochs": 1, "batch_size": 32, "milestones": []},
    },
    "gmp": {
        "sup": {"begin": 1, "end": 4, "frequency": 1},
        "scl": {"begin": 1, "end": 4, "frequency": 1},
        "scl_delayed": {"begin": 5, "end": 8, "frequency": 1},
        "scl_head": {"begin": 1, "end": 4, "frequency": 1},
        "simclr": {"begin": 1, "end": 4, "frequency": 1},
        "simclr_delayed": {"begin": 5, "end": 8, "frequency": 1},
        "simclr_head": {"begin": 1, "end": 4, "frequency": 1},
    },
    "oneshot": {"epochs": 1, "batch_size": 32},
    # 30 of the 60 test images, evenly spaced: 3 per class
    "analysis": {"depth": {"models": 2}, "umap": {"max_examples": 30}},
    "eval_batch_size": 256,
    "logging": {"every_steps": 2},  # 2 curve rows per epoch of 4 steps
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole workflow run once on a synthetic archive (tests/test_workflow.py,
    tests/test_dag.py): (working dir, its overlay, the config files)."""
    work = tmp_path_factory.mktemp("wf")
    archive = work / "tiny-images.tar.gz"
    make_synthetic_images_archive(archive, n_train_per_class=12, n_test_per_class=6)
    overlay = work / "tiny.yaml"
    cfg = {**TINY, "data": {**TINY["data"], "images_archive": str(archive)}}
    overlay.write_text(yaml.safe_dump(cfg))
    files = [REPO / "config.yaml", overlay]
    proc = run_snakemake(work, "-c2", "all", configfiles=files)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return work, overlay, files


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Path:
    """A tiny prepared file: class-coloured noise images, 10 classes."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "cifar10.npz"

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % 10
        base = (labels[:, None] * 25).astype(np.float64)
        img = base[:, None, None, :] + rng.normal(0, 20, (n, 32, 32, 3))
        return np.clip(img, 0, 255).astype(np.uint8), labels.astype(np.int64)

    tr, trl = split(320)
    te, tel = split(100)
    np.savez(
        path,
        train_images=tr,
        train_labels=trl,
        train_index=np.arange(320),
        test_images=te,
        test_labels=tel,
        test_index=np.arange(100),
        classes=np.array(CLASSES),
    )
    return path


def metrics_json(**over: Any) -> dict[str, Any]:
    """A metrics.json payload with every key of its contract."""
    return {
        "test_acc": 0.5,
        "sparsity_measured": 0.0,
        "epochs": 1,
        "steps": 10,
        "wall_time_s": 1.5,
        "train_images_per_s": 100.0,
        "device": "cpu",
        "torch": "2.0",
        "history": [],
        **over,
    }


def depth_arrays(pd: Any, n_layers: int = 16) -> dict[str, np.ndarray]:
    """One model's depth file (every array of its contract) with depths ``pd``:
    examples 0..N-1 of class 0, every probe predicting class 0."""
    n = len(pd)
    return {
        "index": np.arange(n),
        "label": np.zeros(n, np.int64),
        "final_pred": np.zeros(n, np.int64),
        "probe_preds": np.zeros((n_layers, n), np.int8),
        "pd": np.asarray(pd, np.int64),
        "pd_baldock": np.zeros(n, np.int64),
    }


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table of a dry run."""
    counts: dict[str, int] = {}
    in_table = False
    for line in dry_run_output.splitlines():
        if line.startswith("Job stats:"):
            in_table = True
            continue
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if in_table and m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
        elif in_table and line.strip().startswith("total"):
            break
    return counts


def zeros_per_tensor(path: Path) -> dict[str, tuple[int, float]]:
    """An independent count from a saved network's ``state_dict``: per conv
    weight (4-D), linear weight (2-D) and linear bias (beside a 2-D weight),
    its (numel, zeros / numel). BatchNorm's 1-D weights and biases are not
    prunable."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    out = {}
    for key, v in state.items():
        stem, _, leaf = key.rpartition(".")
        weight = state.get(f"{stem}.weight" if stem else "weight")
        linear_bias = leaf == "bias" and weight is not None and weight.ndim == 2
        if (leaf == "weight" and v.ndim in (2, 4)) or linear_bias:
            out[key] = (v.numel(), int((v == 0).sum()) / v.numel())
    return out


def assert_layers_match(layers: list[dict[str, Any]], path: Path) -> None:
    """A ``layers`` record (metrics.json, encoder.pt) equals the independent
    count from the network file ``path``: the same tensors, exact values."""
    assert {r["tensor"]: (r["numel"], r["measured"]) for r in layers} == (
        zeros_per_tensor(path)
    )
