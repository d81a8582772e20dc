"""Your own question (README): the worked overlay plans the whole study, and a
non-default combination (SimCLR + Random + ResNet-18 + CIFAR-100 served on
127.0.0.1) runs to `all` on tiny data."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, job_counts, run_snakemake, serve

from prunelens.data import make_synthetic_official_archive

pytestmark = pytest.mark.slow

QUESTION = REPO / "profiles/question/question.yaml"


def test_the_worked_overlay_plans_every_cell(tmp_path):
    proc = run_snakemake(
        tmp_path, "-n", "all", configfiles=[REPO / "config.yaml", QUESTION]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    seeds = 30
    # Sup: dense + GMP 50, 90; SCL and SimCLR: the same pre-trainings + heads;
    # One-Shot and Random at 50, 90 for all three methods
    assert counts["train_supervised"] == seeds * 3
    assert counts["pretrain_supcon"] == counts["fit_linear_head"] == 2 * seeds * 3
    assert counts["prune_oneshot"] == 3 * seeds * 2 * 2
    # populations: 3 methods x (dense + GMP, One-Shot, Random at 2 sparsities)
    assert counts["predict"] == counts["probe_depth"] == 3 * (1 + 3 * 2)
    assert counts["vote_pies"] == 3 * 3 * 2
    assert "output: results/data/cifar100.npz" in proc.stdout
    assert "results/models/simclr/random/s90/seed29/model.pt" in proc.stdout


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, str]]:
    """A synthetic CIFAR-100 archive (2 train, 1 test image per class) served
    on 127.0.0.1: (its URL, its md5)."""
    root = tmp_path / "www"
    root.mkdir()
    archive = root / "cifar-100-python.tar.gz"
    md5 = make_synthetic_official_archive(
        archive, n_per_class_train=2, n_per_class_test=1, dataset="cifar100"
    )
    with serve(root) as url:
        yield f"{url}/{archive.name}", md5


def test_simclr_random_resnet18_cifar100_runs_to_all(tmp_path, server):
    url, md5 = server
    work = tmp_path / "run"
    work.mkdir()
    overlay = {
        "scale": "tiny-question",
        "data": {
            "dataset": "cifar100",
            "source": "official",
            "official_url": {"cifar100": url},
            "official_md5": {"cifar100": md5},
        },
        "model": {"arch": "resnet18"},
        "methods": ["simclr"],
        "seeds": [0, 1],
        "schedules": {
            "simclr": {"gmp": [], "delayed_gmp": [], "oneshot": [], "random": [50]}
        },
        "simclr": {
            "pretrain": {"epochs": 1, "batch_size": 50},
            "head": {"epochs": 1, "batch_size": 50, "milestones": []},
        },
        "oneshot": {"epochs": 1, "batch_size": 50},
        "analysis": {
            "depth": {"models": 2},
            "umap": {"max_examples": 50},
            "fig1_sparsity": 50,
            "gallery_sparsity": 50,
        },
        "eval_batch_size": 100,
    }
    path = work / "question.yaml"
    path.write_text(yaml.safe_dump(overlay))
    proc = run_snakemake(
        work, "-c2", "all", configfiles=[REPO / "config.yaml", path], timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    res = work / "results"

    # downloaded from 127.0.0.1, checked and prepared: 100 fine classes
    with np.load(res / "data/cifar100.npz") as z:
        assert len(z["classes"]) == 100
        assert sorted(set(z["test_labels"].tolist())) == list(range(100))
    # predictions: 100-way logits, ResNet-18's 512-d representation
    with np.load(res / "predictions/simclr/random/s50/seed1.npz") as z:
        assert z["logits"].shape == (100, 100)
        assert z["rep"].shape == (100, 512)
    for seed in (0, 1):
        metrics = json.loads(
            (res / f"models/simclr/random/s50/seed{seed}/metrics.json").read_text()
        )
        assert metrics["sparsity_measured"] == pytest.approx(0.5, abs=1e-6)

    # Table 1 has the one pruned cell; the paper's cells say they are absent
    t1 = pd.read_csv(res / "tables/table1.csv")
    cells = set(zip(t1["method"], t1["schedule"], t1["sparsity"], strict=True))
    assert ("simclr", "random", 50) in cells
    assert set(t1["method"]) == {"simclr"}
    assert "Not in this grid" in (res / "tables/table3.md").read_text()
    claims = pd.read_csv(res / "tables/claims.csv")
    assert len(claims) > 0
    assert claims["verdict"].notna().all()
    for name in ("table1", "table3", "table4", "table5", "table6", "claims"):
        for ext in ("csv", "md", "tex"):
            assert (res / f"tables/{name}.{ext}").stat().st_size > 0
    for i in range(1, 8):
        for ext in ("pdf", "png"):
            assert (res / f"figures/fig{i}.{ext}").stat().st_size > 0
