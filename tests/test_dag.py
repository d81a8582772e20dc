"""Rerun only what a change affects (dry runs against a finished tiny run):
untracked values plan no job, tracked ones exactly their dependants; a run
copied elsewhere plans nothing; one scale never overwrites another's results."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml
from conftest import REPO, job_counts, run_snakemake

from prunelens.data import make_synthetic_images_archive

pytestmark = pytest.mark.slow

TRAINING = {"train_supervised", "pretrain_supcon", "fit_linear_head", "prune_oneshot"}
# Every table and figure that shows the prediction depth of one definition.
SHOWS_DEPTH = {"claims": 1, "table6": 1, "fig3": 1, "all": 1}


def plan(tiny_run, tmp_path, overlay=None, *args):
    """Job counts of a dry run of `all` with ``overlay`` merged on top."""
    work, _, files = tiny_run
    if overlay:
        extra = tmp_path / "change.yaml"
        extra.write_text(yaml.safe_dump(overlay))
        files = [*files, extra]
    proc = run_snakemake(work, "-n", "all", *args, configfiles=files)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    counts = job_counts(out)
    assert counts or "Nothing to be done" in out, out[-3000:]
    return counts, out


@pytest.mark.parametrize(
    ("overlay", "args"),
    [
        ({"eval_batch_size": 64}, ()),
        ({"device": "cpu"}, ()),
        ({"compile": True}, ()),
        ({"logging": {"every_steps": 7, "progress_s": 5}}, ()),  # curves cadence
        (None, ("--config", "device=cuda", "eval_batch_size=8")),
        (None, ("--set-threads", "train_supervised=2", "predict=2")),
        (None, ("--set-resources", "predict:eval_batch_size=16")),
    ],
)
def test_an_untracked_value_plans_no_job(tiny_run, tmp_path, overlay, args):
    counts, out = plan(tiny_run, tmp_path, overlay, *args)
    assert counts == {}, out[-3000:]


def test_the_depth_definition_replans_only_what_shows_it(tiny_run, tmp_path):
    counts, out = plan(
        tiny_run, tmp_path, {"analysis": {"depth": {"definition": "baldock"}}}
    )
    assert counts == SHOWS_DEPTH, out[-3000:]
    assert not TRAINING & set(counts)
    assert "probe_depth" not in counts


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        (  # Sup models, their One-Shot fine-tunes and everything reading them
            {"sup": {"lr": 0.02}},
            {
                "train_supervised": 4, "prune_oneshot": 2, "predict": 3,
                "probe_depth": 3, "score_q": 3, "vote_pies": 2, "embed_umap": 1,
                "claims": 1, "table1": 1, "table3": 1, "table5": 1, "table6": 1,
                "pie_overlap": 1, "sparsity_table": 1, "fig1": 1, "fig2": 1,
                "fig3": 1, "fig4": 1, "fig5": 1, "fig7": 1, "fig_curves": 1,
                "all": 1,
            },
        ),
        (  # SCL heads (not the encoders), SCL One-Shot and what reads them
            {"scl": {"head": {"lr": 0.05}}},
            {
                "fit_linear_head": 6, "prune_oneshot": 2, "predict": 4,
                "probe_depth": 4, "score_q": 4, "vote_pies": 3, "embed_umap": 1,
                "claims": 1, "table1": 1, "table4": 1, "table6": 1,
                "pie_overlap": 1, "sparsity_table": 1, "fig1": 1, "fig2": 1,
                "fig3": 1, "fig4": 1, "fig5": 1, "fig6": 1, "fig7": 1,
                "fig_curves": 1, "all": 1,
            },
        ),
        (  # every probe, then what shows depth
            {"analysis": {"depth": {"k": 5}}},
            {"probe_depth": 7, **SHOWS_DEPTH},
        ),
        (  # the bootstrap: the claims and Table 1's PIE CIs
            {"claims": {"n_resamples": 1500}},
            {"claims": 1, "table1": 1, "all": 1},
        ),
    ],
)  # fmt: skip
def test_a_tracked_value_replans_exactly_its_dependants(
    tiny_run, tmp_path, overlay, expected
):
    counts, out = plan(tiny_run, tmp_path, overlay)
    assert counts == expected, out[-3000:]
    assert "Params have changed since last execution" in out


def test_a_finished_run_copied_elsewhere_plans_nothing(tiny_run, tmp_path):
    """The README's way: the workflow and its results/ in one folder, moved
    (times kept, as `cp -a` or `mv` do)."""
    work, overlay, _ = tiny_run
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("Snakefile", "config.yaml", "workflow", "envs"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, moved / name)
    for name in ("results", ".snakemake"):
        shutil.copytree(work / name, moved / name, symlinks=True)
    proc = run_snakemake(
        moved,
        "-n",
        "all",
        configfiles=[moved / "config.yaml", overlay],
        snakefile=moved / "Snakefile",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Nothing to be done" in out, out[-3000:]


def test_grouped_jobs_agree_on_their_string_resources(tmp_path):
    """Snakemake refuses a group job whose members disagree on a string
    resource: every group of profiles/slurm holds rules that all take the
    untracked ones, or none does."""
    profile = (REPO / "profiles/slurm/profile.yaml").read_text()
    groups: dict[str, set[str]] = {}
    section = profile[profile.index("\ngroups:\n") :].split("\ngroup-components:")[0]
    for rule, group in re.findall(r"^  (\w+): (\w+)$", section, flags=re.M):
        groups.setdefault(group, set()).add(rule)
    assert set(groups) == {"model", "population", "report"}
    archive = tmp_path / "a.tar.gz"
    make_synthetic_images_archive(archive, n_train_per_class=2, n_test_per_class=1)
    overlay = tmp_path / "o.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {"data": {"images_archive": str(archive), "images_sha256": None}}
        )
    )
    proc = run_snakemake(
        tmp_path, "-n", "all", configfiles=[REPO / "config.yaml", overlay]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    device = {}  # rule -> its device resource (None: none)
    for rule, res in re.findall(
        r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", proc.stdout, flags=re.M
    ):
        found = re.search(r"\bdevice=(\w+)", res)
        device.setdefault(rule, found.group(1) if found else None)
    assert device["predict"] == device["train_supervised"] == "auto"
    for group, rules in groups.items():
        seen = {device[r] for r in rules if r in device}
        assert len(seen) == 1, (group, {r: device.get(r) for r in rules})


def test_block_rules_take_their_stage_resources_and_the_untracked_values(tmp_path):
    """A block rule's own runtime gives way to --set-resources of its stage
    (it used to fail: "got multiple values for keyword argument 'runtime'")."""
    make_synthetic_images_archive(
        tmp_path / "a.tar.gz", n_train_per_class=2, n_test_per_class=1
    )
    files = _archive_and_overlay(tmp_path, "blocks", seeds_per_job=2, device="cpu")
    proc = run_snakemake(
        tmp_path,
        "-n",
        "results/models/sup/dense/s0/seed0/model.pt",
        "--set-resources",
        "train_supervised:runtime=600",
        "train_supervised:eval_batch_size=32",
        configfiles=files,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    block = proc.stdout[proc.stdout.index("rule train_supervised_seeds0_1:") :]
    resources = re.search(r"^    resources: (.*)$", block, flags=re.M).group(1)
    assert {"runtime=600", "device=cpu", "compile=False", "eval_batch_size=32"} <= set(
        resources.split(", ")
    ), resources


def _archive_and_overlay(tmp_path, name, **config):
    overlay = tmp_path / f"{name}.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "images_archive": str(tmp_path / "a.tar.gz"),
                    "images_sha256": None,
                    **config.pop("data", {}),
                },
                **config,
            }
        )
    )
    return [REPO / "config.yaml", overlay]


def test_one_scale_never_overwrites_another_unasked(tmp_path):
    make_synthetic_images_archive(
        tmp_path / "a.tar.gz", n_train_per_class=2, n_test_per_class=1
    )
    quick = _archive_and_overlay(
        tmp_path, "quick", scale="quick", data={"subset_test": 10}
    )
    paper = _archive_and_overlay(tmp_path, "paper")  # config.yaml: scale paper
    target = "results/data/cifar10.npz"
    marker = tmp_path / "results/scale.txt"
    proc = run_snakemake(tmp_path, "-c1", target, configfiles=quick)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert marker.read_text() == "quick\n"
    made = (tmp_path / target).stat().st_mtime_ns

    expected = (
        "results/scale.txt: results/ holds the 'quick' scale's results and this "
        "run is the 'paper' scale, whose jobs would overwrite them; add "
        "--config replace_scale=True to replace them, or keep both by running "
        "in another folder (--directory DIR)"
    )
    # a dry run shows the plan and warns; a run stops before its first job
    dry = run_snakemake(tmp_path, "-n", target, configfiles=paper)
    assert dry.returncode == 0
    assert [ln for ln in dry.stderr.splitlines() if expected in ln] == [
        f"Warning: {expected}"
    ]
    assert job_counts(dry.stdout) == {"prepare_cifar10": 1}
    run = run_snakemake(tmp_path, "-c1", target, configfiles=paper)
    assert run.returncode == 1
    out = run.stdout + run.stderr
    assert [ln for ln in out.splitlines() if ln == expected] == [expected], out
    assert (tmp_path / target).stat().st_mtime_ns == made
    assert marker.read_text() == "quick\n"

    # asked: the paper scale replaces the quick results
    run = run_snakemake(
        tmp_path, "-c1", target, "--config", "replace_scale=True", configfiles=paper
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert marker.read_text() == "paper\n"
    assert (tmp_path / target).stat().st_mtime_ns != made
    again = run_snakemake(tmp_path, "-n", target, configfiles=paper)
    assert "Warning" not in again.stderr
