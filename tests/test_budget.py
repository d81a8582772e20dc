"""Image-steps per stage and the fidelity scale's projected wall time."""

from __future__ import annotations

import yaml
from conftest import REPO, deep_merge, job_counts, run_snakemake

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
        "sup": 24 * 6 * 50_000,
        "sup_oneshot": 16 * 1 * 50_000,
        "scl_pretrain": 40 * 2 * 2 * 50_000,
        "scl_head": 40 * 1 * 50_000,
        "scl_oneshot": 16 * 1 * 50_000,
    }
    seconds = project(cfg, H200, gpu_jobs=0, cpu_jobs=0)
    assert round(seconds["sup"], 1) == round(24 * 6 * 50_000 / 51_522, 1)
    assert round(seconds["scl_pretrain"], 1) == round(8e6 / 61_096, 1)


GPU_RULES = (
    "train",
    "pretrain",
    "fit_linear_head",
    "prune_oneshot",
    "predict",
    "probe",
)


def test_fidelity_profile_plans_its_jobs_and_fits_nine_minutes(paper_config, tmp_path):
    """The dry run of the fidelity scale through profiles/gpu's settings, and
    its projection at the measured H200 rates."""
    archive = {"data": {"images_archive": paper_config["data"]["images_archive"]}}
    local = tmp_path / "archive.yaml"
    local.write_text(yaml.safe_dump(archive))
    proc = run_snakemake(
        tmp_path,
        "-n",
        "all",
        "--config",
        "device=cuda",
        "seeds_per_job=15",  # as profiles/gpu
        configfiles=[REPO / "config.yaml", FIDELITY, local],
        timeout=300,
    )
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts == {
        "prepare_cifar10": 1,
        "train_supervised_seeds0_7": 3,  # dense, GMP 50, GMP 90
        "prune_oneshot_seeds0_7": 4,  # Sup and SCL at 50 and 90
        "pretrain_supcon_seeds0_7": 5,  # dense, GMP and delayed GMP at 50, 90
        "fit_linear_head_seeds0_7": 5,
        "predict": 12,
        "probe_depth": 12,
        "score_q": 12,
        "vote_pies": 10,
        "embed_umap": 1,
        "claims": 1,
        **{f"table{n}": 1 for n in (1, 3, 4, 5, 6)},
        "pie_overlap": 1,
        "sparsity_table": 1,
        **{f"fig{n}": 1 for n in range(1, 8)},
        "fig_curves": 1,
        "all": 1,
    }, proc.stdout[-3000:]
    gpu = sum(n for rule, n in counts.items() if rule.startswith(GPU_RULES))
    cpu = sum(counts.values()) - gpu - counts["prepare_cifar10"] - counts["all"]
    assert (gpu, cpu) == (41, 39)  # the README's numbers
    seconds = project(_fidelity(paper_config), H200, gpu_jobs=gpu, cpu_jobs=cpu)
    assert sum(seconds.values()) <= 9 * 60


def test_simclr_stages_are_projected_when_trained(paper_config):
    cfg = {**paper_config, "methods": ["sup", "scl", "simclr"]}
    cfg["simclr"] = {**cfg["simclr"], "pretrain": {**cfg["simclr"]["pretrain"]}}
    cfg["simclr"]["pretrain"]["epochs"] = 100
    models = n_models(cfg)
    assert models["simclr_pretrain"] == models["simclr_head"] == 30 * 11
    assert models["simclr_oneshot"] == 30 * 6
    steps = image_steps(cfg)
    assert steps["simclr_pretrain"] == 330 * 2 * 100 * 50_000  # two views
    assert steps["scl_pretrain"] == 330 * 2 * 500 * 50_000
    seconds = project(cfg, H200, gpu_jobs=0, cpu_jobs=0)
    assert seconds["simclr_pretrain"] == seconds["scl_pretrain"] / 5
    # without simclr in methods, no simclr stage
    assert not any(k.startswith("simclr") for k in n_models(paper_config))
