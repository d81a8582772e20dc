"""The study's vocabulary and grid: one home, consistent with the schema."""

from __future__ import annotations

import yaml
from conftest import SCHEMA

from prunelens import study
from prunelens.study import Grid


def test_the_schema_allows_exactly_the_vocabulary():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["$defs"]["method"]["enum"] == list(study.METHODS)
    # every schedule name per method; the config checks refuse the pairings
    # outside METHOD_SCHEDULES (tests/test_wire.py)
    props = schema["$defs"]["method_schedules"]["properties"]
    assert list(props) == list(study.PRUNED_SCHEDULES)
    for method in study.METHOD_SCHEDULES:
        ref = schema["properties"]["schedules"]["properties"][method]["$ref"]
        assert ref == "#/$defs/method_schedules"


def test_every_gmp_schedule_has_a_section_and_a_label():
    for (method, schedule), section in study.GMP_SECTION.items():
        assert (method, schedule) in study.GROUP_LABELS
        assert section in study.GMP_LOOP
    assert set(study.HEAD_GMP_SECTION.values()) <= set(study.GMP_LOOP)
    assert study.group_label("scl", "delayed_gmp") == "SCL / ΔGMP"
    assert study.group_label("sup", "dense") == "Sup dense"


def test_grid_cells_follow_the_per_schedule_sparsities():
    grid = Grid.from_config(
        {
            "methods": ["sup", "scl"],
            "schedules": {
                "sup": {"gmp": [90, 30], "oneshot": []},
                "scl": {"delayed_gmp": [50]},
            },
        }
    )
    assert grid.cells("sup") == [("dense", 0), ("gmp", 30), ("gmp", 90)]
    assert grid.cells("scl") == [("dense", 0), ("delayed_gmp", 50)]
    assert grid.pruned_schedules("sup") == ["gmp"]
    assert not grid.has("sup", "oneshot")
    assert grid.has("scl", "delayed_gmp", 50)
    assert not grid.has("scl", "delayed_gmp", 90)
    assert grid.shared_sparsities("gmp") == []
    assert grid.all_sparsities() == [30, 50, 90]
    # figures: the requested sparsity, else the largest trained one below it
    assert grid.nearest(95, [("sup", "gmp")]) == 90
    assert grid.nearest(10, [("sup", "gmp")]) == 30
    assert grid.nearest(50, [("sup", "gmp"), ("scl", "delayed_gmp")]) == 50
    assert grid.nearest(50, [("sup", "gmp"), ("scl", "delayed_gmp")], common=True) == 0


def test_a_method_left_out_has_no_cells():
    grid = Grid.from_config(
        {"methods": ["scl"], "schedules": {"sup": {"gmp": [50]}, "scl": {}}}
    )
    assert grid.cells("sup") == []
    assert grid.cells("scl") == [("dense", 0)]
    assert list(grid.all_cells()) == [("scl", "dense", 0)]
