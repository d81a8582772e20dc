"""Image-steps per stage and the fidelity scale's projected wall time."""

from __future__ import annotations

import yaml
from conftest import REPO, deep_merge

from prunelens.budget import H200, image_steps, n_models, project

FIDELITY = REPO / "profiles/fidelity/fidelity.yaml"


def _fidelity(paper_config):
    return deep_merge(paper_config, yaml.safe_load(FIDELITY.read_text()))


def test_paper_grid_image_steps(paper_config):
    models = n_models(paper_config)
    # 30 seeds; Sup dense + 6 GMP cells; SCL dense + 6 GMP + 4 delayed GMP
    assert models == {
        "sup": 30 * 7,
        "sup_oneshot": 30 * 6,
        "scl_pretrain": 30 * 11,
        "scl_head": 30 * 11,
        "scl_oneshot": 30 * 6,
    }
    steps = image_steps(paper_config)
    assert steps["sup"] == 210 * 205 * 50_000
    assert steps["scl_pretrain"] == 330 * 2 * 500 * 50_000  # two views
    assert steps["scl_head"] == 330 * 100 * 50_000
    assert steps["sup_oneshot"] == steps["scl_oneshot"] == 180 * 30 * 50_000


def test_fidelity_scale_arithmetic(paper_config):
    cfg = _fidelity(paper_config)
    assert len(cfg["seeds"]) >= 8
    assert image_steps(cfg) == {
        "sup": 24 * 8 * 50_000,
        "sup_oneshot": 16 * 1 * 50_000,
        "scl_pretrain": 40 * 2 * 2 * 50_000,
        "scl_head": 40 * 2 * 50_000,
        "scl_oneshot": 16 * 1 * 50_000,
    }
    seconds = project(cfg, H200, gpu_jobs=0, cpu_jobs=0)
    assert round(seconds["sup"], 1) == round(24 * 8 * 50_000 / 51_522, 1)
    assert round(seconds["scl_pretrain"], 1) == round(8e6 / 61_096, 1)
