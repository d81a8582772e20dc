from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from prunelens.data import CLASSES

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


def run_snakemake(
    workdir: Path, *args: str, configfiles: list[Path], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the repo's workflow with ``workdir`` as working directory."""
    cmd = [
        SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        *map(str, configfiles),
        *args,
    ]
    env = {k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"}
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir
    )


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
