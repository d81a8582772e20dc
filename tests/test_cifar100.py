"""CIFAR-100 (``data.dataset: cifar100``): a synthetic archive in the official
layout, served on 127.0.0.1, downloaded, prepared and loaded; its faults."""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import serve

from prunelens import data
from prunelens.data import (
    DATASETS,
    ArchiveLayoutError,
    ChecksumError,
    CorruptArchiveError,
    PreparedFileError,
    load_prepared,
    prepare,
    prepare_from_official,
)

N_TRAIN, N_TEST = 3, 2  # per class
C100 = DATASETS["cifar100"]
NAME = "cifar-100-python.tar.gz"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("c100") / NAME
    md5 = data.make_synthetic_official_archive(
        path,
        n_per_class_train=N_TRAIN,
        n_per_class_test=N_TEST,
        seed=3,
        dataset="cifar100",
    )
    return path, md5


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        out = {}
        for m in tar.getmembers():
            if m.isfile():
                f = tar.extractfile(m)
                assert f is not None
                out[m.name] = f.read()
        return out


def _pickles(path: Path) -> dict[str, dict[bytes, object]]:
    return {
        Path(k).name: pickle.loads(v, encoding="bytes")
        for k, v in _members(path).items()
    }


def _write_tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


def _edited(src: Path, dst: Path, member: str, edit) -> Path:  # type: ignore[no-untyped-def]
    """A copy of ``src`` whose pickle ``member`` went through ``edit``
    (returning None drops the member)."""
    members = _members(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    key = f"cifar-100-python/{member}"
    content = edit(pickle.loads(members[key], encoding="bytes"))
    if content is None:
        del members[key]
    else:
        members[key] = pickle.dumps(content, protocol=4)
    _write_tar(dst, members)
    return dst


@pytest.fixture
def server(archive: tuple[Path, str]) -> Iterator[str]:
    with serve(archive[0].parent) as url:
        yield url


def _one_line(exc: pytest.ExceptionInfo[BaseException], path: Path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    return msg


def test_dataset_table() -> None:
    assert C100.n_classes == 100
    assert len(set(C100.classes)) == 100
    assert list(C100.classes) == sorted(C100.classes)  # the archive's label order
    assert len(C100.superclasses) == 20
    # five classes per superclass, as on the CIFAR page
    assert np.bincount(C100.superclass_of).tolist() == [5] * 20
    assert C100.superclasses[C100.superclass_of[C100.classes.index("apple")]] == (
        "fruit_and_vegetables"
    )
    assert DATASETS["cifar10"].n_classes == 10


def test_download_prepare_load(
    server: str, archive: tuple[Path, str], tmp_path: Path
) -> None:
    src, md5 = archive
    got = tmp_path / "results/data" / NAME
    data.download(f"{server}/{NAME}", got, md5=md5, timeout=5, backoff=0.01)
    assert got.read_bytes() == src.read_bytes()
    out = tmp_path / "results/data/cifar100.npz"
    prepare("official", got, out, sha256=None, md5=md5, dataset="cifar100")
    raw = _pickles(src)
    for split in ("train", "test"):
        s = load_prepared(out, split, "cifar100")
        batch = raw[split]
        n = 100 * (N_TRAIN if split == "train" else N_TEST)
        assert s.images.shape == (n, 32, 32, 3)
        # fine labels are the labels, in the archive's order
        assert s.labels.tolist() == batch[b"fine_labels"]
        assert s.index.tolist() == list(range(n))
        rows = np.asarray(batch[b"data"]).reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
        np.testing.assert_array_equal(s.images, rows)
        assert s.classes == C100.classes
        assert s.n_classes == 100
        assert s.superclasses == C100.superclasses
        # the coarse labels of the archive are the classes' superclasses
        coarse = np.asarray(s.superclass_of)[s.labels]
        assert coarse.tolist() == batch[b"coarse_labels"]
    with np.load(out) as z:
        assert z["classes"].tolist() == list(C100.classes)
        assert z["superclasses"].tolist() == list(C100.superclasses)
        assert z["class_superclass"].tolist() == list(C100.superclass_of)


def test_subset_is_per_class(archive: tuple[Path, str], tmp_path: Path) -> None:
    out = tmp_path / "sub.npz"
    prepare_from_official(
        archive[0], out, md5=None, dataset="cifar100", subset_train=200, subset_test=100
    )
    train = load_prepared(out, "train")
    assert np.bincount(train.labels).tolist() == [2] * 100
    assert np.bincount(load_prepared(out, "test").labels).tolist() == [1] * 100
    with pytest.raises(ValueError, match="positive multiple of 100, got 150"):
        prepare_from_official(
            archive[0], out, md5=None, dataset="cifar100", subset_train=150
        )


def test_md5_mismatch(server: str, archive: tuple[Path, str], tmp_path: Path) -> None:
    out = tmp_path / NAME
    with pytest.raises(ChecksumError) as exc:
        data.download(f"{server}/{NAME}", out, md5="0" * 32, timeout=5, backoff=0.01)
    assert "md5 mismatch" in _one_line(exc, out)
    assert not out.exists()
    with pytest.raises(ChecksumError) as exc:
        prepare_from_official(
            archive[0], tmp_path / "p.npz", md5="f" * 32, dataset="cifar100"
        )
    _one_line(exc, archive[0])


def test_truncated_archive(archive: tuple[Path, str], tmp_path: Path) -> None:
    cut = tmp_path / NAME
    cut.write_bytes(archive[0].read_bytes()[: archive[0].stat().st_size // 2])
    out = tmp_path / "p.npz"
    with pytest.raises(CorruptArchiveError) as exc:
        prepare_from_official(cut, out, md5=None, dataset="cifar100")
    assert "truncated or corrupt" in _one_line(exc, cut)
    assert not out.exists()


def test_missing_meta(archive: tuple[Path, str], tmp_path: Path) -> None:
    bad = _edited(archive[0], tmp_path / NAME, "meta", lambda m: None)
    with pytest.raises(ArchiveLayoutError) as exc:
        prepare_from_official(bad, tmp_path / "p.npz", md5=None, dataset="cifar100")
    assert "missing cifar-100-python/meta" in _one_line(exc, bad)


def test_cifar10_archive_is_not_cifar100(tmp_path: Path) -> None:
    c10 = tmp_path / "cifar-10-python.tar.gz"
    data.make_synthetic_official_archive(c10, n_per_class_train=1, n_per_class_test=1)
    with pytest.raises(ArchiveLayoutError) as exc:
        prepare_from_official(c10, tmp_path / "p.npz", md5=None, dataset="cifar100")
    msg = _one_line(exc, c10)
    assert "missing cifar-100-python/meta, cifar-100-python/test" in msg


def test_wrong_data_shape(archive: tuple[Path, str], tmp_path: Path) -> None:
    def cut_columns(b: dict[bytes, object]) -> dict[bytes, object]:
        return {**b, b"data": np.asarray(b[b"data"])[:, :1000]}

    bad = _edited(archive[0], tmp_path / NAME, "test", cut_columns)
    with pytest.raises(CorruptArchiveError) as exc:
        prepare_from_official(bad, tmp_path / "p.npz", md5=None, dataset="cifar100")
    msg = _one_line(exc, bad)
    assert "member 'test' has data uint8 (200, 1000), expected uint8 (200, 3072)" in msg


def test_labels_out_of_range(archive: tuple[Path, str], tmp_path: Path) -> None:
    def bump(b: dict[bytes, object]) -> dict[bytes, object]:
        labels = list(b[b"fine_labels"])  # type: ignore[call-overload]
        labels[0] = 100
        return {**b, b"fine_labels": labels}

    bad = _edited(archive[0], tmp_path / NAME, "train", bump)
    with pytest.raises(CorruptArchiveError) as exc:
        prepare_from_official(bad, tmp_path / "p.npz", md5=None, dataset="cifar100")
    assert "member 'train' has labels not in 0..99" in _one_line(exc, bad)


def test_wrong_names_and_coarse_labels(
    archive: tuple[Path, str], tmp_path: Path
) -> None:
    def rename(m: dict[bytes, object]) -> dict[bytes, object]:
        return {**m, b"coarse_label_names": [b"x"] * 20}

    bad = _edited(archive[0], tmp_path / NAME, "meta", rename)
    with pytest.raises(ArchiveLayoutError) as exc:
        prepare_from_official(bad, tmp_path / "p.npz", md5=None, dataset="cifar100")
    assert "names coarse_label_names" in _one_line(exc, bad)

    def shift(b: dict[bytes, object]) -> dict[bytes, object]:
        coarse = [(c + 1) % 20 for c in b[b"coarse_labels"]]  # type: ignore[attr-defined]
        return {**b, b"coarse_labels": coarse}

    bad = _edited(archive[0], tmp_path / "b" / NAME, "test", shift)
    with pytest.raises(ArchiveLayoutError) as exc:
        prepare_from_official(bad, tmp_path / "p.npz", md5=None, dataset="cifar100")
    assert "coarse_labels that do not match" in _one_line(exc, bad)


def test_load_prepared_checks_the_dataset(
    archive: tuple[Path, str], tmp_path: Path
) -> None:
    out = tmp_path / "cifar100.npz"
    prepare_from_official(archive[0], out, md5=None, dataset="cifar100")
    with pytest.raises(PreparedFileError) as exc:
        load_prepared(out, "test", "cifar10")
    assert "are not cifar10's" in _one_line(exc, out)
    with np.load(out) as z:
        arrays = dict(z)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{**arrays, "classes": arrays["classes"][:99]})
    with pytest.raises(PreparedFileError) as exc:
        load_prepared(bad, "test")
    assert "(99) are not cifar10 or cifar100's" in _one_line(exc, bad)
    np.savez(bad, **{**arrays, "superclasses": arrays["superclasses"][::-1]})
    with pytest.raises(PreparedFileError) as exc:
        load_prepared(bad, "test")
    assert "superclasses are not cifar100's" in _one_line(exc, bad)


def test_images_source_is_cifar10_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds cifar10, not cifar100"):
        prepare(
            "images", tmp_path / "x", tmp_path / "y", sha256=None, md5=None,
            dataset="cifar100",
        )  # fmt: skip


# ------------------------------------------------- the number of classes flows


def _predictions(path: Path, n: int, c: int, shift: int = 0) -> np.ndarray:
    rng = np.random.default_rng(c)
    logits = rng.normal(size=(n, c)).astype(np.float32)
    label = (np.arange(n) * 2 + 1 + shift) % c  # 1, 3, ..., 99 for n = 50
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        index=np.arange(n, dtype=np.int64),
        label=label.astype(np.int64),
        pred=logits.argmax(1).astype(np.int64),
        logits=logits,
        rep=np.zeros((n, 4), np.float32),
    )
    return logits.argmax(1)


def test_readers_take_the_classes_from_the_files(tmp_path: Path) -> None:
    from prunelens.files import FileContractError, load_pie, load_predictions
    from prunelens.pie import load_populations, modal_labels, vote_pies

    paths = [tmp_path / f"results/predictions/sup/dense/s0/seed{i}.npz" for i in (0, 1)]
    preds = [_predictions(p, 50, 100) for p in paths]
    got = load_predictions(paths[0], arrays=())
    assert got.logits is None  # read for the number of classes, not kept
    assert got.pred.tolist() == preds[0].tolist()
    # 100-wide logits: labels and predictions up to 99 are fine ...
    assert max(got.label) == 99
    # ... but not for a reader told the data set has 10 classes
    with pytest.raises(FileContractError, match=r"\(50x10\)"):
        load_predictions(paths[0], n_classes=10)
    with pytest.raises(FileContractError, match=r"label outside 0\.\.9 "):
        load_predictions(paths[0], n_classes=10, arrays=())
    pop = load_populations([paths])[0]
    assert pop.preds.shape == (2, 50)
    mode, _ = modal_labels(pop.preds)
    assert mode.tolist() == preds[0].tolist()  # the two models agree
    # the modal label does not depend on the number of classes beyond the largest
    for rule in ("smallest", "largest"):
        for c in (None, 100, 250):
            m, t = modal_labels(np.array([[3, 97, 5], [97, 3, 5]]), c, rule)  # type: ignore[arg-type]
            assert m.tolist() == ([3, 3, 5] if rule == "smallest" else [97, 97, 5])
            assert t.tolist() == [True, True, False]
    votes = vote_pies(pop, pop)
    pie = tmp_path / "results/pie/sup/gmp/s50.csv"
    pie.parent.mkdir(parents=True)
    votes.to_csv(pie, index=False)
    assert load_pie(pie)["dense_mode"].max() > 9
    bad = votes.assign(label=votes["label"] + 1)
    bad.to_csv(pie, index=False)
    with pytest.raises(FileContractError, match=r"label outside 0\.\.99 "):
        load_pie(pie)


# -------------------------------------------------- figures with 100 classes


def _pie_table(rng: np.random.Generator, flips: np.ndarray) -> pd.DataFrame:
    n = len(flips)
    label = np.arange(n) % 100
    dense = label.copy()
    pruned = np.where(flips, (label + 1) % 100, label)
    return pd.DataFrame(
        {
            "index": np.arange(n),
            "label": label,
            "dense_mode": dense,
            "pruned_mode": pruned,
            "pie": dense != pruned,
            "tie": np.zeros(n, bool),
        }
    )


def test_class_order_groups_by_superclass() -> None:
    from prunelens.figures import class_colours, class_order

    order, spans = class_order(C100.classes, C100.superclasses, C100.superclass_of)
    assert sorted(order.tolist()) == list(range(100))
    # superclass by superclass, five classes each, classes in label order inside
    grouped = [C100.superclass_of[i] for i in order]
    assert grouped == [g for g in range(20) for _ in range(5)]
    assert [C100.classes[i] for i in order[:5]] == [
        "beaver", "dolphin", "otter", "seal", "whale",
    ]  # fmt: skip
    assert spans[0] == ("aquatic mammals", 0.0, 4.0)
    assert spans[-1] == ("vehicles 2", 95.0, 99.0)
    colours, entries, title = class_colours(
        C100.classes, C100.superclasses, C100.superclass_of
    )
    assert colours.shape == (100, 3)
    assert len(entries) == 20
    assert "superclass" in title
    # classes of one superclass share its colour
    apple, pear = C100.classes.index("apple"), C100.classes.index("pear")
    assert colours[apple].tolist() == colours[pear].tolist()
    order10, spans10 = class_order(DATASETS["cifar10"].classes)
    assert order10.tolist() == list(range(10))
    assert spans10 == []


def test_figures_render_with_100_classes(tmp_path: Path) -> None:
    from prunelens.paper import fig1, fig_pies_by_class
    from prunelens.pie import pie_class_counts

    rng = np.random.default_rng(0)
    n = 2000
    pies = {}
    for m in ("sup", "scl"):
        for s in (50, 90):
            # more PIEs in the first superclasses' classes, more at 90%
            p = (np.arange(n) % 100 < 30) * (0.1 + s / 200) + 0.02
            table = _pie_table(rng, rng.random(n) < p)
            path = tmp_path / f"{m}_oneshot_s{s}.csv"
            table.to_csv(path, index=False)
            pies[f"{m}_oneshot_s{s}"] = str(path)
    counts = pie_class_counts(
        pd.read_csv(pies["sup_oneshot_s50"]),
        pd.read_csv(pies["scl_oneshot_s50"]),
        n_classes=100,
    )
    assert counts.index.tolist() == list(range(100))
    rows = [
        (label, [(m, "oneshot", s) for s in (50, 90)])
        for m, label in (("sup", "(a) Sup"), ("scl", "(b) SCL"))
    ]
    pdf, png = tmp_path / "fig4.pdf", tmp_path / "fig4.png"
    fig_pies_by_class(
        pies, rows=rows, title="Figure 4 (CIFAR-100)", pdf=pdf, png=png,
        dataset="cifar100",
    )  # fmt: skip
    assert pdf.stat().st_size > 0
    assert png.stat().st_size > 0

    # UMAP: 100 modal classes, coloured by superclass
    frames = []
    for m, sc, s in (("sup", "dense", 0), ("sup", "gmp", 90), ("sup", "oneshot", 90)):
        mode = np.arange(500) % 100
        frames.append(
            pd.DataFrame(
                {
                    "method": m,
                    "schedule": sc,
                    "sparsity": s,
                    "index": np.arange(500),
                    "x": np.asarray(C100.superclass_of)[mode] + rng.normal(0, 0.3, 500),
                    "y": rng.normal(0, 1, 500),
                    "mode": mode,
                    "pie": (sc != "dense") & (np.arange(500) % 17 == 0),
                }
            )  # fmt: skip
        )
    emb = tmp_path / "embeddings.csv"
    pd.concat(frames).to_csv(emb, index=False)
    fig1(
        emb, methods=["sup"], sparsity=90, requested=90,
        pdf=tmp_path / "fig1.pdf", png=tmp_path / "fig1.png", dataset="cifar100",
    )  # fmt: skip
    assert (tmp_path / "fig1.png").stat().st_size > 0
    out = Path("/tmp/c100_figs")
    out.mkdir(exist_ok=True)
    for name in ("fig4.png", "fig1.png"):
        (out / name).write_bytes((tmp_path / name).read_bytes())


# ----------------------------------------------------------------- the DAG


def _overlay(tmp_path: Path, **data_keys: object) -> list[Path]:
    import yaml
    from conftest import REPO, TINY, deep_merge

    overlay = tmp_path / "c100.yaml"
    cfg = deep_merge(TINY, {"data": {"dataset": "cifar100", **data_keys}})
    overlay.write_text(yaml.safe_dump(cfg))
    return [REPO / "config.yaml", overlay]


def test_dry_run_of_cifar100(tmp_path: Path) -> None:
    from conftest import job_counts, run_snakemake

    proc = run_snakemake(
        tmp_path, "-n", "all", configfiles=_overlay(tmp_path, source="official")
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts["download_cifar10"] == 1
    assert counts["prepare_cifar10"] == 1
    assert counts["all"] == 1
    assert "output: results/data/cifar-100-python.tar.gz" in proc.stdout
    assert "output: results/data/cifar100.npz" in proc.stdout
    assert "results/data/cifar10.npz" not in proc.stdout


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"source": "images"},
            "config key 'data.source': 'images' (the JPEG archive) holds CIFAR-10 "
            "only; data.dataset cifar100 needs source: official",
        ),
        (
            {"source": "official", "subset_train": 150},
            "config key 'data.subset_train': 150 is not a multiple of CIFAR-100's "
            "100 classes (class-balanced)",
        ),
        (
            {"source": "official", "mean": [0.5, 0.5, 0.5]},
            "config key 'data.mean': one value per data set, "
            "data.mean.<cifar10|cifar100> (README, Configuration)",
        ),
    ],
)
def test_cifar100_config_errors(
    tmp_path: Path, keys: dict[str, object], message: str
) -> None:
    from conftest import run_snakemake

    proc = run_snakemake(tmp_path, "-n", "all", configfiles=_overlay(tmp_path, **keys))
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert message in out.splitlines(), out[-2000:]


# ------------------------------------------------------- 100-way classifiers


def test_training_on_cifar100_makes_100_way_models(
    archive: tuple[Path, str], tmp_path: Path
) -> None:
    import torch

    from prunelens.evaluate import predict_files
    from prunelens.files import load_model, load_predictions
    from prunelens.train import train_supervised

    prepared = tmp_path / "cifar100.npz"
    prepare_from_official(archive[0], prepared, md5=None, dataset="cifar100")
    hp = {
        "epochs": 1, "batch_size": 100, "lr": 0.05, "momentum": 0.9,
        "nesterov": False, "weight_decay": 0.0, "milestones": [], "gamma": 0.1,
        "augment": {"padding": 4, "hflip": True, "vflip": False},
    }  # fmt: skip
    out = tmp_path / "results/models/sup/dense/s0/seed0"
    (metrics,) = train_supervised(
        data=prepared,
        model_outs=[out / "model.pt"],
        metrics_outs=[out / "metrics.json"],
        arch={"depth": 10, "width": 1},
        hp=hp,
        norm={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        gmp=None,
        sparsity=0,
        seeds=[0],
        schedule="dense",
        settings={"device": "cpu", "threads": 1, "precision": "fp32"},
    )
    assert metrics["arch"] == {"depth": 10, "width": 1, "n_classes": 100}
    model, _ = load_model(out / "model.pt")
    assert model.fc.out_features == 100
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    pred = tmp_path / "results/predictions/sup/dense/s0/seed0.npz"
    pred.parent.mkdir(parents=True)
    predict_files(
        models=[out / "model.pt"], outs=[pred], data=prepared,
        mean=[0.5] * 3, std=[0.25] * 3, device="cpu",
    )  # fmt: skip
    got = load_predictions(pred)
    assert got.logits is not None
    assert got.logits.shape == (200, 100)
