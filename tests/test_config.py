"""Every config error stops the run with one line naming the key."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO, SCHEMA, deep_merge, run_snakemake

from prunelens.config import ConfigError, check


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
            "schedules.sup",
            "'delayed_gmp'",
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
        ({"data": {"subset_train": 15}}, "data.subset_train", "15"),
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
