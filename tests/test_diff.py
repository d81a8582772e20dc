"""``prunelens diff A B``: exact Markdown on hand-made results folders, and two
tiny runs that differ in one hyper-parameter (``oneshot.lr``)."""

from __future__ import annotations

import csv
import json
import shutil
import tomllib

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, job_counts, metrics_json, run_snakemake

from prunelens import cli, diff
from prunelens.config import record_config
from prunelens.data import make_synthetic_images_archive
from prunelens.runtime import versions

T1_HEADER = (
    "method,schedule,sparsity,n_models,pie,ties,acc_mean,acc_std,paper_pie,"
    "paper_acc_mean,paper_acc_std,pie_ci_low,pie_ci_high,pie_half,pie_noise_floor"
)
CLAIMS_HEADER = (
    "claim,statement,cell,paper,estimate,ci_low,ci_high,side,null,n_models,"
    "verdict,ci_method,notes"
)


def _pie_csv(path, pies):
    """A PIE file of 8 examples, PIEs at ``pies`` (pruned mode 1, dense 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        f"{i},0,0,{int(i in pies)},{i in pies},False" for i in range(8)
    ]  # fmt: skip
    path.write_text("index,label,dense_mode,pruned_mode,pie,tie\n" + "\n".join(rows))


def _folder(root, *, lr, torch_version, table1, claims, pies):
    res = root / "results"
    record_config(res / "config.yaml", {"seeds": [0, 1], "sup": {"lr": lr}})
    (res / "scale.txt").write_text("quick\n")
    model = res / "models/sup/dense/s0/seed0"
    model.mkdir(parents=True)
    v = {"python": "3.11.7", "torch": torch_version, "numpy": "2.4.6"}
    (model / "metrics.json").write_text(json.dumps(metrics_json(versions=v)))
    (res / "tables").mkdir()
    (res / "tables/table1.csv").write_text(T1_HEADER + "\n" + table1)
    if claims is not None:
        (res / "tables/claims.csv").write_text(CLAIMS_HEADER + "\n" + claims)
    for cell, ids in pies.items():
        _pie_csv(res / "pie" / f"{cell}.csv", ids)
    return root


@pytest.fixture
def two_folders(tmp_path):
    a = _folder(
        tmp_path / "a",
        lr=0.05,
        torch_version="2.14.1",
        table1=(
            "sup,dense,0,2,,,90.0,1.0,,90.58,0.38,,,,\n"
            "sup,gmp,50,2,10,1,89.5,0.5,179,90.4,0.34,8.0,12.0,,\n"
            "sup,oneshot,50,2,4,0,88.0,,95,90.37,0.37,,,,\n"
        ),
        claims=(
            'C1,"more PIEs",scl/gmp/s90 | sup/gmp/s90,475,3,1,5,>,0,n,holds,bca,\n'
            "C4,fewer,sup/oneshot/s50 vs sup/gmp/s50,-84,-6,-9,-2,<,0,n,holds,bca,\n"
        ),
        pies={"sup/gmp/s50": {1, 2, 3}, "sup/oneshot/s50": {4}},
    )
    b = _folder(
        tmp_path / "b",
        lr=0.02,
        torch_version="2.15.0",
        table1=(
            "sup,dense,0,2,,,90.0,1.0,,90.58,0.38,,,,\n"
            "sup,gmp,50,2,12,1,89.25,0.5,179,90.4,0.34,9.0,15.0,,\n"
            "sup,random,50,2,30,0,50.0,2.0,,,,,,,\n"
        ),
        claims=(
            'C1,"more PIEs",scl/gmp/s90 | sup/gmp/s90,475,3,1,5,>,0,n,holds,bca,\n'
            "C4,fewer,sup/oneshot/s50 vs sup/gmp/s50,-84,-1,-4,2,<,0,n,"
            "inconclusive,bca,\n"
        ),
        pies={"sup/gmp/s50": {2, 3, 5, 6, 7, 0, 4}, "sup/random/s50": {0}},
    )
    return a, b


EXPECTED = """\
# prunelens diff: A = `{a}/results`, B = `{b}/results`

**Summary:** 1 config value differs; package versions differ: torch; \
Table 1: 3 of 4 rows changed; claims: 1 of 2 rows changed (1 verdict); \
PIEs: 3 of 3 cells changed (+5 gained, −1 lost).

## Config values that differ

| key | A | B |
|---|---|---|
| sup.lr | 0.05 | 0.02 |

## Package versions recorded with the models

Versions found in 1 model files of A and 1 of B (`metrics.json`, `encoder.pt`; \
count in brackets).

| package | A | B |
|---|---|---|
| python | 3.11.7 (1) | 3.11.7 (1) |
| **torch** | **2.14.1 (1)** | **2.15.0 (1)** |
| numpy | 2.4.6 (1) | 2.4.6 (1) |

## Table 1 (B − A)

| cell | PIEs A [CI] | PIEs B [CI] | Δ PIEs | acc A (%) | acc B (%) | Δ acc | changed |
|---|---|---|---|---|---|---|---|
| sup/dense/s0 | – | – | – | 90 ± 1 | 90 ± 1 | 0 |  |
| sup/gmp/s50 | 10 [8, 12] | 12 [9, 15] | +2 | 89.50 ± 0.5 | 89.25 ± 0.5 | -0.25 | \
pie, acc_mean, pie_ci_low, pie_ci_high |
| sup/oneshot/s50 | 4 | only in A | – | 88 | only in A | – | only in A |
| sup/random/s50 | only in B | 30 | – | only in B | 50 ± 2 | – | only in B |

## Claims (B − A)

| claim | cell | verdict A | verdict B | estimate [CI] A | estimate [CI] B | \
Δ estimate | changed |
|---|---|---|---|---|---|---|---|
| C1 | scl/gmp/s90 \\| sup/gmp/s90 | holds | holds | 3 [1, 5] | 3 [1, 5] | 0 |  |
| C4 | sup/oneshot/s50 vs sup/gmp/s50 | holds | inconclusive | -6 [-9, -2] | \
-1 [-4, 2] | +5 | **verdict** |

## PIEs gained and lost per cell

Gained: PIEs of B that are not PIEs of A; lost: the reverse (test-split indices, \
the first 5).

| cell | PIEs A | PIEs B | gained | lost | first gained | first lost |
|---|---|---|---|---|---|---|
| sup/gmp/s50 | 3 | 7 | 5 | 1 | 0, 4, 5, 6, 7 | 1 |
| sup/oneshot/s50 | 1 | only in A | – | – |  |  |
| sup/random/s50 | only in B | 1 | – | – |  |  |
"""


def test_hand_made_folders_give_exact_markdown(two_folders, capsys):
    a, b = two_folders
    assert diff.main([str(a), str(b)]) == 0
    assert capsys.readouterr().out == EXPECTED.format(a=a, b=b)


def test_the_console_command_dispatches_to_diff(two_folders, capsys):
    """``prunelens diff`` (cli.main) prints what ``diff.main`` prints, and
    pyproject's [project.scripts] names cli.main."""
    a, b = two_folders
    assert cli.main(["diff", str(a / "results"), str(b)]) == 0
    assert capsys.readouterr().out == EXPECTED.format(a=a, b=b)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert scripts["scripts"] == {"prunelens": "prunelens.cli:main"}
    assert cli.main(["nonsense"]) == 2
    assert "diff" in capsys.readouterr().err


def test_markdown_cells_escape_pipes_and_stay_on_one_line():
    assert diff.md_cell("a | b\nc") == "a \\| b c"
    assert diff.md_table(["x|y"], [["1|2"]]) == "| x\\|y |\n|---|\n| 1\\|2 |"
    assert diff.md_cell(float("nan")) == "–"


def test_missing_pieces_are_said_not_crashed_on(two_folders, capsys):
    a, b = two_folders
    (b / "results/tables/claims.csv").unlink()
    (a / "results/tables/table1.csv").write_text("cell,x\n1,2\n")
    (b / "results/config.yaml").unlink()
    (b / "results/pie/sup/gmp/s50.csv").write_text("index,label\n0,0\n")
    assert diff.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "**Summary:** config not recorded in B;" in out
    assert "B has no `config.yaml`" in out
    assert "Configs not compared." in out
    assert "B has no `tables/claims.csv`." in out
    assert (
        "A's `tables/table1.csv` is unreadable (no column method, schedule, "
        "sparsity).\n" in out
    )
    assert "| sup/gmp/s50 | only in B | 12 [9, 15] |" in out
    # every claim of A is only in A, so none has B's verdict
    assert "| C4 | sup/oneshot/s50 vs sup/gmp/s50 | holds | only in A |" in out
    assert "| sup/gmp/s50 | 3 | unreadable | – | – |  |  |" in out
    assert "sup/gmp/s50: " in out
    assert "missing columns" in out


def test_empty_results_folders_compare_to_nothing(tmp_path, capsys):
    for side in "ab":
        (tmp_path / side / "results").mkdir(parents=True)
        (tmp_path / side / "results/scale.txt").write_text("quick\n")
    assert diff.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "Table 1: in neither; claims: in neither; PIEs: 0 of 0 cells" in out
    assert "Neither has `tables/table1.csv`." in out
    assert "No model files in either." in out
    assert "No PIE files (`pie/`) in either." in out


@pytest.mark.parametrize("bad", ["missing", "empty", "file"])
def test_a_path_that_is_not_a_results_folder_exits_2_with_one_line(
    two_folders, tmp_path, capsys, bad
):
    a, _ = two_folders
    path = tmp_path / bad
    if bad == "empty":
        path.mkdir()
    elif bad == "file":
        path.write_text("x")
    assert diff.main([str(a), str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    reason = {
        "missing": "no such folder",
        "empty": "not a results folder (it holds no results/ and none of "
        "config.yaml, scale.txt, tables, models, pie)",
        "file": "not a folder",
    }[bad]
    assert captured.err == f"prunelens diff: {path}: {reason}\n"


def test_config_changes_are_dotted_keys_with_absent_sides():
    a = {"sup": {"lr": 0.1, "milestones": [1, 2]}, "seeds": [0], "x": {}}
    b = {"sup": {"lr": 0.1, "milestones": [1]}, "seeds": [0], "y": 1}
    assert diff.config_changes(a, b) == [
        ("sup.milestones", [1, 2], [1]),
        ("x", {}, diff.ABSENT),
        ("y", diff.ABSENT, 1),
    ]


def test_versions_names_python_the_packages_and_prunelens():
    import numpy
    import torchvision

    import prunelens

    v = versions()
    assert list(v) == ["python", "torch", "torchvision", "numpy", "prunelens"]
    assert v["torch"] == torch.__version__
    assert v["torchvision"] == torchvision.__version__
    assert v["numpy"] == numpy.__version__
    assert v["prunelens"] == prunelens.__version__


def test_the_config_record_reads_back_as_the_config(tmp_path):
    cfg = {"scale": "quick", "seeds": [0, 1], "sup": {"lr": 1e-3, "x": None}}
    record_config(tmp_path / "results/config.yaml", cfg)
    text = (tmp_path / "results/config.yaml").read_text()
    assert text.startswith("# The config of the last run that ran jobs here")
    assert yaml.safe_load(text) == cfg
    assert list(tmp_path.joinpath("results").iterdir()) == [
        tmp_path / "results/config.yaml"
    ]  # no temporary file left


@pytest.mark.slow
def test_a_dry_run_records_no_config(tmp_path):
    make_synthetic_images_archive(
        tmp_path / "a.tar.gz", n_train_per_class=2, n_test_per_class=1
    )
    overlay = tmp_path / "o.yaml"
    data = {"images_archive": str(tmp_path / "a.tar.gz"), "images_sha256": None}
    overlay.write_text(yaml.safe_dump({"data": data}))
    proc = run_snakemake(
        tmp_path, "-n", "all", configfiles=[REPO / "config.yaml", overlay]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "results").exists()


# ------------------------------------------------ two tiny runs, one change

# One-Shot's fine-tuning lr (1e-3 in config.yaml): only One-Shot cells read it.
CHANGE = {"oneshot": {"lr": 0.05}}


@pytest.fixture(scope="module")
def two_runs(tiny_run, tmp_path_factory):
    """A: the session's tiny run; B: a copy of it rerun with ``CHANGE``
    (only the One-Shot fine-tunes and what reads them run again)."""
    work, _, files = tiny_run
    b = tmp_path_factory.mktemp("wf-oneshot-lr")
    for name in ("results", ".snakemake"):
        shutil.copytree(work / name, b / name, symlinks=True)
    change = b / "change.yaml"
    change.write_text(yaml.safe_dump(CHANGE))
    proc = run_snakemake(b, "-c2", "all", configfiles=[*files, change])
    assert proc.returncode == 0, proc.stderr[-5000:]
    trained = {"train_supervised", "pretrain_supcon", "fit_linear_head"}
    counts = job_counts(proc.stderr)
    assert counts["prune_oneshot"] == 4, counts  # Sup and SCL, seeds 0 and 1
    assert not trained & set(counts), counts  # nothing else retrained
    return work / "results", b / "results"


def _pie_ids(path):
    with open(path) as fh:
        return {int(r["index"]) for r in csv.DictReader(fh) if r["pie"] == "True"}


def _row_key(rec):
    return f"{rec['method']}/{rec['schedule']}/s{rec['sparsity']}"


@pytest.mark.slow
def test_two_tiny_runs_differ_exactly_where_oneshot_lr_reaches(two_runs, capsys):
    a, b = two_runs
    c = diff.compare(a, b)
    assert c.config == [("oneshot.lr", 0.001, 0.05)]

    # every model file records this process's versions, so none differ
    here = versions()
    files = sorted(a.glob("models/**/metrics.json"))
    assert files
    for path in files:
        assert json.loads(path.read_text())["versions"] == here, path
    for path in sorted(a.glob("models/**/encoder.pt")):
        assert torch.load(path, weights_only=True)["versions"] == here, path
    assert c.versions_differ == []
    assert c.n_models_a == c.n_models_b > 0

    # Table 1: the rows that changed are One-Shot's (an independent compare)
    ta, tb = (pd.read_csv(r / "tables/table1.csv") for r in (a, b))
    assert list(ta[diff.TABLE1_KEY].itertuples()) == list(
        tb[diff.TABLE1_KEY].itertuples()
    )
    values = ta[diff.TABLE1_VALUES].compare(tb[diff.TABLE1_VALUES])
    truly_changed = {_row_key(ta.loc[i]) for i in values.index}
    assert truly_changed  # the fine-tunes did change
    assert all("/oneshot/" in k for k in truly_changed)
    keys = [
        _row_key(dict(zip(diff.TABLE1_KEY, r["key"], strict=True))) for r in c.table1
    ]
    assert keys == [_row_key(rec) for rec in ta.to_dict("records")]
    assert {
        k for k, r in zip(keys, c.table1, strict=True) if r["changed"]
    } == truly_changed

    # PIEs: gains and losses only in One-Shot cells, equal to set differences
    cells = sorted(p.relative_to(a / "pie").with_suffix("").as_posix()
                   for p in (a / "pie").rglob("*.csv"))  # fmt: skip
    assert [p.cell for p in c.pies] == cells
    for p in c.pies:
        pa, pb = _pie_ids(a / f"pie/{p.cell}.csv"), _pie_ids(b / f"pie/{p.cell}.csv")
        assert (p.gained, p.lost) == (sorted(pb - pa), sorted(pa - pb)), p.cell
        if "/oneshot/" not in p.cell:
            assert p.gained == p.lost == [], p.cell

    # claims: changed rows are those whose numbers or verdict differ
    ca, cb = (pd.read_csv(r / "tables/claims.csv") for r in (a, b))
    assert list(ca[diff.CLAIMS_KEY].itertuples()) == list(
        cb[diff.CLAIMS_KEY].itertuples()
    )
    claim_values = ca[diff.CLAIMS_VALUES].compare(cb[diff.CLAIMS_VALUES])
    assert [bool(r["changed"]) for r in c.claims] == [
        i in claim_values.index for i in range(len(ca))
    ]

    # the Markdown: the one config key, equal versions, and the diff printed
    assert diff.main([str(a.parent), str(b.parent)]) == 0
    out = capsys.readouterr().out
    assert "| oneshot.lr | 0.001 | 0.05 |" in out
    assert out.splitlines()[2].startswith(
        "**Summary:** 1 config value differs; package versions equal; "
        f"Table 1: {len(truly_changed)} of {len(ta)} rows changed;"
    )
    print(out)  # pytest -s shows it (the README's example)
