from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pypdf import PdfReader

from prunelens.data import CLASSES
from prunelens.figures import (
    Cell,
    fig_curves,
    fig_dense_vs_sparse,
    fig_gallery,
    fig_pie_classes,
    fig_umap,
    gallery_group,
    save,
    seed_band,
    select_gallery,
)
from prunelens.pie import overlap_iou, pie_class_counts

N = 200
RNG_SEED = 0


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


def pie_table(rng: np.random.Generator, frac: float = 0.1) -> pd.DataFrame:
    label = np.arange(N) % 10  # fixed: tables of one test set share labels
    dense = np.where(rng.random(N) < 0.8, label, rng.integers(0, 10, N))
    pie = rng.random(N) < frac
    pruned = np.where(pie, (dense + 1) % 10, dense)
    return pd.DataFrame(
        {
            "index": np.arange(N),
            "label": label,
            "dense_mode": dense,
            "pruned_mode": pruned,
            "pie": pie,
            "tie": False,
        }
    )


def umap_table(rng: np.random.Generator, *, dense: bool) -> pd.DataFrame:
    mode = rng.integers(0, 10, N)
    return pd.DataFrame(
        {
            "index": np.arange(N),
            "x": mode + rng.normal(0, 0.3, N),
            "y": rng.normal(0, 1, N),
            "mode": mode,
            "pie": np.zeros(N, bool) if dense else rng.random(N) < 0.1,
        }
    )


def value_table(rng: np.random.Generator, column: str) -> pd.DataFrame:
    return pd.DataFrame({"index": np.arange(N), column: rng.gamma(2.0, 2.0, N)})


def check_outputs(tmp_path: Path, name: str) -> tuple[Path, Path]:
    pdf, png = tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"
    assert len(PdfReader(pdf).pages) == 1
    with Image.open(png) as im:
        im.load()
        w, h = im.size
    assert 300 <= w <= 6000
    assert 200 <= h <= 6000
    # atomic save: nothing but the two outputs is left in the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([pdf.name, png.name])
    return pdf, png


def outputs(tmp_path: Path, name: str) -> tuple[Path, Path]:
    return tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"


# ------------------------------------------------------------------ Cell


def test_cell_labels() -> None:
    assert Cell("sup", "gmp", 90).label == "Sup / GMP 90%"
    assert Cell("scl", "delayed_gmp", 95).label == "SCL / ΔGMP 95%"
    assert Cell("scl", "oneshot", 99).label == "SCL / One-Shot 99%"
    assert Cell("sup", "dense", 0).label == "Sup dense"
    assert Cell("simclr", "delayed_gmp", 50).label == "SimCLR / ΔGMP 50%"
    assert Cell("simclr", "dense", 0).label == "SimCLR dense"


@pytest.mark.parametrize(
    ("method", "schedule"), [("byol", "gmp"), ("sup", "delayed_gmp")]
)
def test_cell_rejects_unknown_populations(method: str, schedule: str) -> None:
    with pytest.raises(ValueError, match="unknown method|no 'sup' population"):
        Cell(method, schedule, 90)


# ---------------------------------------------------------------- counts


@pytest.fixture
def pie_pair() -> tuple[pd.DataFrame, pd.DataFrame]:
    # examples 0..5 with labels 0,0,1,1,2,2; PIEs {1,2,3} vs {2,3,4}
    index = np.arange(6)
    label = np.array([0, 0, 1, 1, 2, 2])

    def table(pies: set[int]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "index": index,
                "label": label,
                "dense_mode": label,
                "pruned_mode": label,
                "pie": [i in pies for i in index],
                "tie": False,
            }
        )

    return table({1, 2, 3}), table({2, 3, 4})


def test_pie_class_counts_exact(pie_pair: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    counts = pie_class_counts(*pie_pair, n_classes=4)
    expected = pd.DataFrame(
        {
            "shared": [0, 2, 0, 0],  # 2 (class 1), 3 (class 1)
            "unique_a": [1, 0, 0, 0],  # 1 (class 0)
            "unique_b": [0, 0, 1, 0],  # 4 (class 2)
        },
        index=pd.RangeIndex(4, name="class"),
    )
    pd.testing.assert_frame_equal(counts, expected, check_index_type=False)


def test_pie_class_counts_rejects_label_conflicts(
    pie_pair: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    a, b = pie_pair
    b = b.assign(label=b["label"].where(b["index"] != 0, 9))
    with pytest.raises(ValueError, match="disagree"):
        pie_class_counts(a, b)


def test_overlap_iou(pie_pair: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    a, b = pie_pair
    assert overlap_iou(a, b) == 0.5
    assert overlap_iou(a, a) == 1.0
    none = a.assign(pie=False)
    assert overlap_iou(none, none) == 0.0
    assert overlap_iou(a, none) == 0.0


# ---------------------------------------------------------------- gallery


def test_select_gallery_exact() -> None:
    pie = pd.DataFrame(
        {
            "index": [7, 3, 5, 1, 9, 4],
            "label": [0, 1, 2, 3, 4, 5],
            "dense_mode": [1, 2, 2, 4, 4, 5],
            "pruned_mode": [0, 1, 0, 3, 4, 6],
            "pie": [True, True, True, True, False, True],
            "tie": False,
        }
    )
    fixed = select_gallery(pie, dense_wrong_sparse_right=True, k=2)
    assert fixed["index"].tolist() == [1, 3]  # 7 also qualifies but sorts later
    broken = select_gallery(pie, dense_wrong_sparse_right=False, k=5)
    assert broken["index"].tolist() == [4, 5]
    assert list(broken.columns) == list(pie.columns)


def test_select_gallery_takes_classes_in_turn() -> None:
    pie = pd.DataFrame(
        {
            "index": [1, 2, 3, 9],
            "label": [0, 0, 0, 1],
            "dense_mode": [5, 5, 5, 5],
            "pruned_mode": [0, 0, 0, 1],
        }
    )
    picked = select_gallery(pie, dense_wrong_sparse_right=True, k=3)
    assert picked["index"].tolist() == [1, 9, 2]


def test_gallery_group_picks_images_by_id() -> None:
    image_index = np.array([10, 11, 12])
    images = np.stack([np.full((32, 32, 3), i, np.uint8) for i in (0, 1, 2)])
    rows = pd.DataFrame(
        {"index": [12, 10], "dense_mode": [4, 1], "pruned_mode": [7, 0]}
    )
    picked, captions = gallery_group(rows, images, image_index, CLASSES)
    assert picked[:, 0, 0, 0].tolist() == [2, 0]
    assert captions == ["U: deer  S: horse", "U: automobile  S: airplane"]
    with pytest.raises(KeyError, match="99"):
        gallery_group(rows.assign(index=[99, 10]), images, image_index, CLASSES)


def test_fig_gallery(tmp_path: Path, rng: np.random.Generator) -> None:
    images = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    groups = [
        ("GMP", images, ["U: cat  S: dog"] * 10),  # capped at max_per_group
        ("One-Shot", images[:3], ["U: automobile  S: airplane"] * 3),
        ("nothing", images[:0], []),
    ]
    fig_gallery(groups, *outputs(tmp_path, "gallery"), title="gallery")
    check_outputs(tmp_path, "gallery")
    assert plt.get_fignums() == []


def test_fig_gallery_rejects_caption_mismatch(tmp_path: Path) -> None:
    images = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="2 images, 1 captions"):
        fig_gallery([("g", images, ["x"])], *outputs(tmp_path, "g"), title="t")


# ---------------------------------------------------------------- figures


def test_fig_umap_with_missing_and_blank_panels(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    panels = [
        (Cell("sup", "dense", 0), umap_table(rng, dense=True)),
        None,  # blank slot
        (Cell("sup", "gmp", 90), umap_table(rng, dense=False)),
        (Cell("sup", "oneshot", 90), None),  # "not in grid"
    ]
    fig_umap(panels, CLASSES, *outputs(tmp_path, "umap"), ncols=2, title="UMAP")
    check_outputs(tmp_path, "umap")


@pytest.mark.parametrize("column", ["q", "pd"])
def test_fig_dense_vs_sparse_counts_dropped_nans(
    tmp_path: Path, rng: np.random.Generator, column: str
) -> None:
    dense, sparse = value_table(rng, column), value_table(rng, column)
    sparse.loc[[3, 4, 5], column] = np.nan
    dense.loc[[5, 6], column] = np.nan
    panels = [
        (Cell("sup", "gmp", 90), dense, sparse, pie_table(rng)),
        (Cell("scl", "oneshot", 90), dense, dense, pie_table(rng)),
    ]
    fig_dense_vs_sparse(
        panels, column, *outputs(tmp_path, column), axis_label=column, title="t"
    )
    pdf, _ = check_outputs(tmp_path, column)
    text = PdfReader(pdf).pages[0].extract_text()
    assert "4 NaN dropped" in text  # rows 3, 4, 5, 6
    assert "2 NaN dropped" in text  # rows 5, 6 (dense on both axes)
    assert f"n = {N - 4}" in text


def test_fig_dense_vs_sparse_rejects_mismatched_examples(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    dense = value_table(rng, "q")
    panels = [(Cell("sup", "gmp", 90), dense, dense.iloc[1:], pie_table(rng))]
    with pytest.raises(ValueError, match="different examples"):
        fig_dense_vs_sparse(
            panels, "q", *outputs(tmp_path, "q"), axis_label="Q", title="t"
        )
    assert list(tmp_path.iterdir()) == []
    assert plt.get_fignums() == []  # the half-built figure was closed


def test_fig_pie_classes(tmp_path: Path, rng: np.random.Generator) -> None:
    rows = []
    for row_label in ("30%", "90%"):
        a, b = pie_table(rng), pie_table(rng)
        counts = pie_class_counts(a, b)
        iou = overlap_iou(a, b)
        panels = [
            (f"Sup / GMP (IoU {iou:.2f})", counts, "a"),
            (f"SCL / GMP (IoU {iou:.2f})", counts, "b"),
        ]
        rows.append((row_label, panels[: 1 if row_label == "90%" else 2]))
    fig_pie_classes(rows, CLASSES, *outputs(tmp_path, "pies"), title="PIEs")
    check_outputs(tmp_path, "pies")


def test_fig_pie_classes_rejects_bad_which(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    counts = pie_class_counts(pie_table(rng), pie_table(rng))
    with pytest.raises(ValueError, match="which"):
        fig_pie_classes(
            [("r", [("p", counts, "c")])], CLASSES, *outputs(tmp_path, "x"), title="t"
        )


# ------------------------------------------------------------------- save


def test_save_is_atomic_and_closes(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    pdf, png = tmp_path / "sub" / "f.pdf", tmp_path / "sub" / "f.png"
    save(fig, pdf, png)
    assert not plt.fignum_exists(fig.number)
    assert sorted(p.name for p in pdf.parent.iterdir()) == ["f.pdf", "f.png"]
    assert pdf.read_bytes().startswith(b"%PDF")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_save_failure_leaves_no_partial_files(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.set_title("$\\undefinedmacro$")  # mathtext fails at draw time
    with pytest.raises(ValueError, match="undefinedmacro"):
        save(fig, tmp_path / "f.pdf", tmp_path / "f.png")
    assert list(tmp_path.iterdir()) == []
    assert not plt.fignum_exists(fig.number)


def _curves(losses: list[float], steps: list[int], level: str = "step") -> pd.DataFrame:
    n = len(steps)
    return pd.DataFrame(
        {"level": [level] * n, "round": [pd.NA] * n, "epoch": [1] * n,
         "step": steps, "loss": losses, "acc": [float("nan")] * n,
         "lr": [0.1] * n, "sparsity": [0.5] * n, "images_per_s": [10.0] * n}
    )  # fmt: skip


def test_seed_band_is_mean_min_max_per_step() -> None:
    a = _curves([3.0, 2.0], [2, 4])
    b = _curves([1.0, 4.0], [2, 4])
    epoch_only = _curves([9.0], [4], level="epoch")  # no step rows: epoch rows
    band = seed_band([a, b, epoch_only], "loss")
    assert band.to_dict("list") == {
        "step": [2, 4],
        "mean": [2.0, 5.0],
        "min": [1.0, 2.0],
        "max": [3.0, 9.0],
    }
    assert seed_band([a], "acc").empty  # no accuracy: nothing to draw


def test_fig_curves_one_row_per_stage(tmp_path: Path) -> None:
    stages = [
        ("pre-training", {0: [_curves([5.0, 4.0], [2, 4])] * 2}),
        ("linear head", {0: [_curves([2.0, 1.0], [1, 2])],
                         50: [_curves([2.5, 1.5], [1, 2])]}),
    ]  # fmt: skip
    fig = fig_curves(stages, title="Training curves: SCL / GMP", n_seeds=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [
        "pre-training: training loss",
        "pre-training: sparsity",
        "linear head: training loss",
        "linear head: sparsity",
    ]  # fmt: skip  (no accuracy in either: placeholder panels)
    head_loss = fig.axes[3]
    assert len(head_loss.get_lines()) == 2  # one line per sparsity
    assert "mean over 2 seeds, band: min-max" in fig._suptitle.get_text()
    save(fig, tmp_path / "c.pdf", tmp_path / "c.png")
    assert len(PdfReader(tmp_path / "c.pdf").pages) == 1
