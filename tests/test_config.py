"""Every config error stops the run with one line naming the key."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO, SCHEMA, deep_merge, run_snakemake

from prunelens.config import (
    ConfigError,
    check,
    check_config_files,
    record_scale,
    scale_conflict,
)


def test_paper_and_quick_configs_are_valid(paper_config):
    check(paper_config, SCHEMA)
    quick = yaml.safe_load((REPO / "profiles/quick/quick.yaml").read_text())
    check(deep_merge(paper_config, quick), SCHEMA)


@pytest.mark.parametrize(
    ("overlay", "key", "bad"),
    [
        ({"sup": {"epochs": "ten"}}, "sup.epochs", "'ten'"),
        ({"sup": {"trian": 1}}, "sup", "'trian'"),
        ({"colour": "red"}, "<top level>", "'colour'"),
        ({"methods": ["sup", "moco"]}, "methods[1]", "'moco'"),
        ({"schedules": {"sup": {"magic": [50]}}}, "schedules.sup", "'magic'"),
        (
            {"schedules": {"sup": {"delayed_gmp": [50]}}},
            "schedules.sup.delayed_gmp",
            "delayed GMP is for SCL only",
        ),
        ({"schedules": {"sup": {"gmp": [50, 100]}}}, "schedules.sup.gmp[1]", "100"),
        ({"schedules": {"scl": {"oneshot": [-5]}}}, "schedules.scl.oneshot[0]", "-5"),
        ({"schedules": {"scl": {"gmp": [50, 50]}}}, "schedules.scl.gmp", "non-unique"),
        ({"sparsities": [50]}, "sparsities", "replaced by per-schedule lists"),
        ({"claims": {"n_resamples": 100}}, "claims.n_resamples", "100"),
        ({"claims": {"confidence": 1.5}}, "claims.confidence", "1.5"),
        ({"seeds": []}, "seeds", "[]"),
        ({"sup": {"epochs": -1}}, "sup.epochs", "-1"),
        ({"oneshot": {"epochs": -3}}, "oneshot.epochs", "-3"),
        (
            {"data": {"images_archive": "/nonexistent/c.tar.gz"}},
            "data.images_archive",
            "/nonexistent/c.tar.gz",
        ),
        ({"gmp": {"sup": {"begin": 50, "end": 10}}}, "gmp.sup.begin", "50"),
        ({"pie": {"tie_break": "random"}}, "pie.tie_break", "'random'"),
        ({"device": "tpu"}, "device", "'tpu'"),
        ({"logging": {"every_steps": -1}}, "logging.every_steps", "-1"),
        ({"logging": {"progress_s": 0.5}}, "logging.progress_s", "0.5"),
        ({"data": {"subset_train": 15}}, "data.subset_train", "15"),
        (
            {"data": {"subset_train": 50010}},
            "data.subset_train",
            "50010 exceeds the 50000 images of CIFAR-10's train split",
        ),
        (
            {"data": {"subset_test": 20000}},
            "data.subset_test",
            "20000 exceeds the 10000 images of CIFAR-10's test split",
        ),
        ({"scale": "my scale"}, "scale", "'my scale'"),
        ({"replace_scale": "yes"}, "replace_scale", "'yes'"),
        ({"schedules": {"scl": None}}, "schedules.scl", "None"),
        (
            {"gmp": {"scl_delayed": {"begin": 30000, "end": 40000}}},
            "gmp.scl_delayed.begin",
            "step 30000 is after the last training step 24500",
        ),
        ({"gmp": {"sup": {"end": 90000}}}, "gmp.sup.end", "90000"),
        ({"scl": {"pretrain": {"temperature": 0}}}, "scl.pretrain.temperature", "0"),
        ({"scl": {"head": {"milestones": [9, 3]}}}, "scl.head.milestones", "[9, 3]"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(paper_config, overlay, key, bad):
    with pytest.raises(ConfigError) as err:
        check(deep_merge(paper_config, overlay), SCHEMA)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"'{key}'" in msg
    assert bad in msg


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        (
            {"sup": {"epochs": -1}},
            "config key 'sup.epochs': -1 is less than the minimum of 0",
        ),
        (
            {"data": {"images_archive": "missing.tar.gz"}},
            "config key 'data.images_archive': no such file 'missing.tar.gz'",
        ),
    ],
)
def test_snakemake_stops_before_any_job(tmp_path, overlay, expected):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(overlay))
    archive = {
        "data": {"images_archive": str(REPO / "../shared/data/cifar10-images.tar.gz")}
    }
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(archive))
    proc = run_snakemake(
        tmp_path, "-n", configfiles=[REPO / "config.yaml", base, bad], timeout=120
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    lines = [ln for ln in out.splitlines() if expected in ln]
    assert len(lines) == 1, out
    assert not (tmp_path / "results").exists()


def test_seed_blocks_and_the_per_seed_pattern():
    import re

    from prunelens.config import seed_blocks, seed_pattern_excluding

    assert seed_blocks(range(5), 2) == [[0, 1], [2, 3], [4]]
    assert seed_blocks([7, 3], 1) == [[7], [3]]
    with pytest.raises(ValueError, match="seeds per job"):
        seed_blocks([0], 0)
    pattern = re.compile(rf"seed({seed_pattern_excluding([0, 1, 2])})/model\.pt$")
    assert [
        s
        for s in ("0", "1", "2", "3", "20", "12")
        if pattern.search(f"seed{s}/model.pt")
    ] == ["3", "20", "12"]
    assert re.fullmatch(seed_pattern_excluding([]), "5")


SGD_KEYS = ("epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay")


@pytest.mark.parametrize(
    ("overlay", "key"),
    [
        ({"sup": {"epoch": 3}}, "sup"),
        ({"scl": {"pretrain": {"epoch": 3}}}, "scl.pretrain"),
        ({"scl": {"head": {"epoch": 3}}}, "scl.head"),
        ({"oneshot": {"epoch": 3}}, "oneshot"),
    ],
)
def test_a_typo_under_the_shared_sgd_keys_names_only_the_typo(
    paper_config, overlay, key
):
    """Every section built on the shared SGD definition: its own keys and the
    definition's are known, only the misspelt one is not."""
    with pytest.raises(ConfigError) as err:
        check(deep_merge(paper_config, overlay), SCHEMA)
    assert str(err.value) == f"config key '{key}': unknown key(s) 'epoch'"
    assert not [k for k in SGD_KEYS if f"'{k}'" in str(err.value)]


def test_the_largest_subsets_are_the_whole_splits(paper_config):
    check(
        deep_merge(
            paper_config, {"data": {"subset_train": 50000, "subset_test": 10000}}
        ),
        SCHEMA,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "sup:\n  epochs: 3\n  lr: 0.1\n  epochs: 4\n",
            "key 'sup.epochs' given twice (lines 2 and 4; YAML keeps only the last)",
        ),
        (
            "seeds: [0, 1]\ngmp:\n  sup: {begin: 1, begin: 2}\n",
            "key 'gmp.sup.begin' given twice (lines 3 and 3; YAML keeps only the last)",
        ),
        ("seeds: [0, 1]\nseeds: [2]\n", "key 'seeds' given twice (lines 1 and 2;"),
        (
            "sup:\n  epochs: [1\n",
            "not valid YAML (line 3, column 1: expected ',' or ']', but got "
            "'<stream end>')",
        ),
        ("sup:\n\tepochs: 3\n", "not valid YAML (line 2, column 1:"),
        (
            "- 1\n- 2\n",
            "must be a mapping of keys to values ('key: value' lines), got a list",
        ),
        ("", "must be a mapping of keys to values ('key: value' lines), got nothing"),
        (
            "just words\n",
            "must be a mapping of keys to values ('key: value' lines), got a str",
        ),
    ],
)
def test_a_bad_config_file_gives_one_line_naming_it(tmp_path, text, expected):
    path = tmp_path / "overlay.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        check_config_files([path])
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"config file '{path}': {expected}"), msg


def test_the_shipped_config_files_are_clean():
    check_config_files([REPO / "config.yaml", *sorted(REPO.glob("profiles/*/*.yaml"))])


def test_the_scale_marker_names_both_scales(tmp_path):
    marker = tmp_path / "results/scale.txt"
    assert scale_conflict(marker, "paper") is None  # nothing there yet
    record_scale(marker, "quick")
    assert marker.read_text() == "quick\n"
    assert scale_conflict(marker, "quick") is None
    msg = scale_conflict(marker, "paper")
    assert msg == (
        f"{marker}: {marker.parent}/ holds the 'quick' scale's results and this "
        "run is the 'paper' scale, whose jobs would overwrite them; add "
        "--config replace_scale=True to replace them, or keep both by running "
        "in another folder (--directory DIR)"
    )


def _archive_overlay(tmp_path):
    archive = {
        "data": {"images_archive": str(REPO / "../shared/data/cifar10-images.tar.gz")}
    }
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(archive))
    return base


@pytest.mark.parametrize(
    ("where", "text", "expected"),
    [
        (
            "overlay",
            "sup:\n  epochs: 3\n  epochs: 4\n",
            "config file '{path}': key 'sup.epochs' given twice (lines 2 and 3; "
            "YAML keeps only the last)",
        ),
        (
            "config.yaml",
            None,  # the paper config with one key given twice
            "config file 'config.yaml': key 'seeds_per_job' given twice",
        ),
        (
            "config.yaml",
            "sup:\n  epochs: [1\n",
            "config file 'config.yaml': not valid YAML (line 3, column 1:",
        ),
        (
            "config.yaml",
            "- sup\n",
            "config file 'config.yaml': must be a mapping of keys to values",
        ),
    ],
)
def test_snakemake_names_the_bad_config_file(tmp_path, where, text, expected):
    """Files Snakemake reads itself (config.yaml in the working directory) or
    has read (--configfile): one line naming the file, before any job."""
    if where == "overlay":
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        files = [REPO / "config.yaml", _archive_overlay(tmp_path), path]
    else:
        path = tmp_path / "config.yaml"
        if text is None:
            text = (REPO / "config.yaml").read_text() + "seeds_per_job: 2\n"
        path.write_text(text)
        files = []
    proc = run_snakemake(tmp_path, "-n", configfiles=files, timeout=120)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    want = expected.format(path=path)
    lines = [ln for ln in out.splitlines() if ln.startswith(want)]
    assert len(lines) == 1, out
    assert not (tmp_path / "results").exists()


def test_bad_yaml_from_the_command_line_is_named_by_the_checker(tmp_path):
    """Snakemake reads --configfile files before the workflow starts and says
    only 'Config file is not valid JSON or YAML'; `python -m prunelens.config`
    names the file and the line (README, Configuration)."""
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("sup:\n  epochs: [1\n")
    proc = run_snakemake(
        tmp_path, "-n", configfiles=[REPO / "config.yaml", bad], timeout=120
    )
    assert proc.returncode != 0
    assert "Config file is not valid JSON or YAML" in proc.stdout + proc.stderr
    checker = subprocess.run(
        [sys.executable, "-m", "prunelens.config", str(REPO / "config.yaml"), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checker.returncode == 1
    assert checker.stderr.splitlines() == [
        f"config file '{bad}': not valid YAML (line 3, column 1: expected ',' or "
        "']', but got '<stream end>')"
    ]
