"""Every file contract's loader: good files round-trip exactly; missing,
truncated, wrong-shaped and short files give one line naming the file, what
is wrong and the rule that rebuilds it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, depth_arrays, metrics_json

from prunelens.data import CLASSES
from prunelens.evaluate import write_predictions
from prunelens.files import (
    FileContractError,
    load_depth,
    load_embeddings,
    load_encoder,
    load_metrics,
    load_model,
    load_pie,
    load_predictions,
    load_scores,
    producing_rule,
    rebuild_command,
    same_examples,
)
from prunelens.models import WideResNetEncoder, build_classifier, save_model
from prunelens.pie import Population, load_population, load_populations, vote_pies
from prunelens.runtime import write_csv, write_json, write_npz
from prunelens.tables import load_paper, table1, table3

N = 20  # test examples in the hand-made files
ARCH = {"depth": 10, "width": 1}
LABELS = np.arange(N) % 10


def _error(call: Callable[[], Any], path: Path, rule: str) -> str:
    """The message of the FileContractError ``call`` raises: one line, naming
    ``path`` first and ending with the rebuild command for ``rule``."""
    with pytest.raises(FileContractError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    assert msg.endswith(f"; rebuild it with: snakemake {path} --forcerun {rule}")
    assert "allow_pickle" not in msg
    assert "weights_only" not in msg
    return msg


def _cut(path: Path, keep: float | int) -> None:
    """Truncate ``path``: to a fraction of its bytes, or by ``-keep`` bytes."""
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else len(data) + keep
    path.write_bytes(data[:n])


# ---------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("results/models/sup/dense/s0/seed0/model.pt", "train_supervised"),
        ("results/models/sup/gmp/s90/seed3/metrics.json", "train_supervised"),
        ("results/models/scl/delayed_gmp/s50/seed1/model.pt", "fit_linear_head"),
        ("results/models/scl/gmp/s50/seed1/encoder.pt", "pretrain_supcon"),
        ("results/models/sup/oneshot/s95/seed0/model.pt", "prune_oneshot"),
        ("results/models/scl/oneshot/s95/seed0/metrics.json", "prune_oneshot"),
        ("results/predictions/scl/dense/s0/seed4.npz", "predict"),
        ("results/pie/sup/gmp/s50.csv", "vote_pies"),
        ("results/scores/q/scl/oneshot/s90.csv", "score_q"),
        ("results/scores/pd/sup/dense/s0.csv", "probe_depth"),
        ("/abs/work/results/depth/sup/gmp/s50/seed0.npz", "probe_depth"),
        ("results/umap/embeddings.csv", "embed_umap"),
        ("results/reference/arrays.npz", "reference"),
        ("elsewhere/p.csv", None),
    ],
)
def test_the_rule_that_writes_a_file_follows_from_its_path(path, rule):
    assert producing_rule(path) == rule


def test_the_rebuild_command_falls_back_to_the_contract_then_to_force():
    assert (
        rebuild_command("x/p.csv", "vote_pies")
        == "snakemake x/p.csv --forcerun vote_pies"
    )
    assert rebuild_command("x/model.pt") == "snakemake x/model.pt --force"
    # the path wins over the fallback
    pie = "results/pie/scl/gmp/s90.csv"
    assert rebuild_command(pie, "predict") == f"snakemake {pie} --forcerun vote_pies"


# ------------------------------------------------------------------- models


def _model(tmp_path: Path, schedule: str = "gmp") -> tuple[Path, torch.nn.Module]:
    path = tmp_path / f"results/models/sup/{schedule}/s50/seed0/model.pt"
    torch.manual_seed(0)
    net = build_classifier(ARCH)
    meta = {"arch": ARCH, "method": "sup", "schedule": schedule, "sparsity": 50}
    save_model(path, net, meta | {"seed": 0})
    return path, net


def test_a_model_round_trips_exactly(tmp_path):
    path, net = _model(tmp_path)
    got, meta = load_model(path)
    assert meta == {
        "arch": ARCH,
        "method": "sup",
        "schedule": "gmp",
        "sparsity": 50,
        "seed": 0,
    }
    want = net.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in got.state_dict().items())


def test_bad_model_files(tmp_path):
    path, net = _model(tmp_path, "oneshot")
    rule = "prune_oneshot"
    good = path.read_bytes()
    path.unlink()
    assert _error(lambda: load_model(path), path, rule).endswith(
        f"{path}: file not found; rebuild it with: snakemake {path} --forcerun {rule}"
    )
    path.write_bytes(good)
    _cut(path, 0.5)
    msg = _error(lambda: load_model(path), path, rule)
    assert "not a readable torch file" in msg
    # a pickle with objects other than tensors is never unpickled
    torch.save({"arch": ARCH, "state_dict": {}, "meta": Path("x")}, path)
    assert "only weights are ever loaded" in _error(
        lambda: load_model(path), path, rule
    )
    state = {"arch": ARCH, "state_dict": net.state_dict(), "meta": {}}
    torch.save({k: v for k, v in state.items() if k != "meta"}, path)
    assert "missing ['meta']" in _error(lambda: load_model(path), path, rule)
    sd = dict(net.state_dict())
    sd["fc.weight"] = torch.zeros(10, 7)
    torch.save(state | {"state_dict": sd}, path)
    msg = _error(lambda: load_model(path), path, rule)
    assert (
        "tensor fc.weight is torch.float32 (10, 7), expected floating (10, 64)" in msg
    )
    sd["fc.weight"] = torch.zeros(10, 64, dtype=torch.int64)
    torch.save(state | {"state_dict": sd}, path)
    assert "fc.weight is torch.int64 (10, 64), expected floating" in _error(
        lambda: load_model(path), path, rule
    )
    # another float precision is the same network (float64 runs save float64)
    doubled = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}
    doubled["fc.weight"] = torch.ones(10, 64, dtype=torch.float64)
    torch.save(state | {"state_dict": doubled}, path)
    assert load_model(path)[0].fc.weight.sum().item() == 640
    del sd["fc.weight"]
    torch.save(state | {"state_dict": sd}, path)
    assert "state_dict lacks 1 tensors, e.g. fc.weight" in _error(
        lambda: load_model(path), path, rule
    )
    torch.save(state | {"arch": {"depth": 11, "width": 1}}, path)
    assert "builds no network" in _error(lambda: load_model(path), path, rule)


def _encoder_state() -> dict[str, Any]:
    return {
        "arch": ARCH,
        "state_dict": WideResNetEncoder(**ARCH).state_dict(),
        "meta": {"schedule": "gmp", "sparsity": 50, "seed": 0},
        "history": [{"epoch": 1, "loss": 2.5}],
        "steps": 4,
        "wall_time_s": 1.5,
        "image_views_per_s": 80.0,
        "sparsity_measured": 0.5,
        "projection_head_sparsity": 0.0,
    }


def test_encoders_load_checked(tmp_path):
    path = tmp_path / "results/models/scl/gmp/s50/seed0/encoder.pt"
    path.parent.mkdir(parents=True)
    state = _encoder_state()
    torch.save(state, path)
    got = load_encoder(path)
    assert got["history"] == state["history"]
    assert got["steps"] == 4
    assert all(
        torch.equal(v, state["state_dict"][k]) for k, v in got["state_dict"].items()
    )
    rule = "pretrain_supcon"
    torch.save({k: v for k, v in state.items() if k != "steps"}, path)
    assert "missing ['steps']" in _error(lambda: load_encoder(path), path, rule)
    torch.save(state | {"sparsity_measured": 1.5}, path)
    assert "sparsity_measured outside [0, 1)" in _error(
        lambda: load_encoder(path), path, rule
    )
    torch.save(state | {"arch": {"depth": 16, "width": 1}}, path)
    assert "state_dict lacks" in _error(lambda: load_encoder(path), path, rule)
    torch.save(state, path)
    _cut(path, 0.3)
    _error(lambda: load_encoder(path), path, rule)
    path.unlink()
    assert "file not found" in _error(lambda: load_encoder(path), path, rule)


# ------------------------------------------------------------------ metrics


def test_metrics_load_checked(tmp_path):
    path = tmp_path / "results/models/scl/oneshot/s90/seed1/metrics.json"
    rule = "prune_oneshot"
    write_json(path, metrics_json(test_acc=0.25))
    assert load_metrics(path) == metrics_json(test_acc=0.25)
    _cut(path, 0.5)
    msg = _error(lambda: load_metrics(path), path, rule)
    assert "not valid JSON, truncated?" in msg
    write_json(path, {k: v for k, v in metrics_json().items() if k != "test_acc"})
    assert "missing keys ['test_acc']" in _error(lambda: load_metrics(path), path, rule)
    write_json(path, metrics_json(test_acc=91.5, epochs="4"))
    msg = _error(lambda: load_metrics(path), path, rule)
    assert "test_acc outside [0, 1] (min 91.5, max 91.5, 0 not finite)" in msg
    assert "epochs is not a int" in msg
    path.write_text("[1, 2]\n")
    assert "holds a JSON list, not an object" in _error(
        lambda: load_metrics(path), path, rule
    )
    path.unlink()
    _error(lambda: load_metrics(path), path, rule)


# -------------------------------------------------------------- predictions


def _predictions(path: Path, pred: np.ndarray | None = None, n: int = N) -> Path:
    pred = LABELS[:n] if pred is None else pred
    write_predictions(
        path,
        index=np.arange(n) * 3,  # a subset's ids: increasing, not 0..N-1
        labels=LABELS[:n],
        logits=np.eye(10, dtype=np.float32)[pred] * 2.5,
        rep=np.arange(n * 8, dtype=np.float32).reshape(n, 8),
    )
    return path


def test_predictions_round_trip_exactly(tmp_path):
    path = _predictions(tmp_path / "results/predictions/sup/dense/s0/seed0.npz")
    got = load_predictions(path, index=np.arange(N) * 3)
    assert got.index.tolist() == (np.arange(N) * 3).tolist()
    assert got.label.tolist() == got.pred.tolist() == LABELS.tolist()
    assert got.logits.dtype == np.float32
    assert got.logits[1, 1] == 2.5
    assert got.rep.shape == (N, 8)
    assert got.rep[2, 3] == 19.0
    # only the votes: rep and logits are not read, but must exist
    small = load_predictions(path, arrays=())
    assert small.rep is None
    assert small.logits is None


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return dict(z)


def test_bad_predictions_files(tmp_path):
    path = _predictions(tmp_path / "results/predictions/sup/gmp/s50/seed2.npz")
    rule = "predict"
    good = _arrays(path)

    def load() -> Any:
        return load_predictions(path, index=good["index"], n_classes=10)

    _cut(path, 0.5)
    assert "unreadable .npz archive (BadZipFile" in _error(load, path, rule)
    # text where an archive belongs: numpy would advise unpickling it
    path.write_text("index,label\n0,1\n")
    msg = _error(load, path, rule)
    assert "unreadable (not an .npz archive; pickled data is never loaded)" in msg
    write_npz(path, good | {"pred": np.array(["cat"] * N)})
    assert f"pred is <U3 ({N},), expected int64 ({N})" in _error(load, path, rule)
    write_npz(path, good | {"logits": good["logits"][:, :9]})
    assert f"logits is float32 ({N}, 9), expected float32 ({N}x10)" in _error(
        load, path, rule
    )
    write_npz(path, {k: v for k, v in good.items() if k != "rep"})
    assert "missing arrays ['rep']" in _error(load, path, rule)
    write_npz(path, good | {"label": good["label"] + 5})
    assert "label outside 0..9 (min 5, max 14)" in _error(load, path, rule)
    write_npz(path, good | {"pred": (good["pred"] + 1) % 10})
    assert "pred is not the argmax of logits" in _error(load, path, rule)
    # short: every array cut to the first 5 examples
    write_npz(path, {k: v[:5] for k, v in good.items()})
    assert f"5 rows, but the test split has {N} examples" in _error(load, path, rule)
    path.unlink()
    assert "file not found" in _error(load, path, rule)


def test_a_population_names_its_odd_file(tmp_path):
    paths = [
        _predictions(tmp_path / f"results/predictions/sup/gmp/s50/seed{s}.npz")
        for s in range(3)
    ]
    pop = load_population(paths, reps=True)
    assert pop.preds.shape == (3, N)
    assert len(pop.reps) == 3
    # the first file is the short one: the majority's examples win
    _predictions(paths[0], n=N - 2)
    _error(lambda: load_population(paths), paths[0], "predict")
    msg = _error(lambda: load_populations([paths[1:], paths[:1]]), paths[0], "predict")
    assert msg.startswith(f"{paths[0]}: {N - 2} rows, but {paths[1]} has {N}")


# ------------------------------------------------------------------ PIE csv


def _pie_file(path: Path, n: int = N) -> pd.DataFrame:
    dense = Population(np.arange(n), LABELS[:n], np.tile(LABELS[:n], (3, 1)))
    flipped = np.tile(LABELS[:n], (3, 1))
    flipped[:, :4] = (flipped[:, :4] + 1) % 10
    flipped[0, 5] = 7  # outvoted: no PIE
    votes = vote_pies(dense, Population(dense.index, dense.labels, flipped))
    write_csv(path, votes)
    return votes


def test_pie_tables_round_trip_exactly(tmp_path):
    path = tmp_path / "results/pie/sup/gmp/s50.csv"
    votes = _pie_file(path)
    got = load_pie(path, index=np.arange(N))
    pd.testing.assert_frame_equal(got, votes)
    assert got["pie"].sum() == 4


def test_bad_pie_tables(tmp_path):
    path = tmp_path / "results/pie/scl/oneshot/s90.csv"
    rule = "vote_pies"
    votes = _pie_file(path)

    def load() -> Any:
        return load_pie(path, n_examples=N, n_classes=10)

    _cut(path, -3)  # the last row ends mid-cell
    assert "column 'tie' is not bool" in _error(load, path, rule)
    path.write_text("")
    assert "empty file" in _error(load, path, rule)
    write_csv(path, votes.drop(columns="pruned_mode"))
    assert "missing columns ['pruned_mode']" in _error(load, path, rule)
    write_csv(path, votes.assign(pie=~votes["pie"]))
    assert "pie is not where dense_mode and pruned_mode differ" in _error(
        load, path, rule
    )
    write_csv(path, votes.assign(label=votes["label"] * 2))
    assert "label outside 0..9" in _error(load, path, rule)
    write_csv(path, votes.iloc[::-1])
    assert "index is not increasing" in _error(load, path, rule)
    write_csv(path, votes.head(12))  # cut at a line: short
    assert f"12 rows, but the test split has {N} examples" in _error(load, path, rule)
    assert "the test split's examples" in _error(
        lambda: load_pie(path, index=np.arange(12) + 1), path, rule
    )
    path.unlink()
    _error(load, path, rule)


# ------------------------------------------------------------------- scores


def _q_scores(path: Path, n: int = N) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "index": np.arange(n),
            "q": np.linspace(0.1, 0.9, n),
            "z": np.linspace(1.0, 3.0, n),
            "l1": np.linspace(5.0, 6.0, n),
            "n_degenerate": np.zeros(n, np.int64),
        }
    )
    frame.loc[3, ["q", "z", "l1"]] = np.nan  # every model degenerate
    frame.loc[3, "n_degenerate"] = 2
    write_csv(path, frame)
    return frame


def _pd_scores(path: Path, n: int = N) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"index": np.arange(n), "pd": np.full(n, 2.5), "pd_baldock": np.full(n, 0.5)}
    )
    write_csv(path, frame)
    return frame


@pytest.mark.parametrize(
    ("kind", "write", "rel", "rule"),
    [
        ("q", _q_scores, "results/scores/q/scl/gmp/s50.csv", "score_q"),
        ("pd", _pd_scores, "results/scores/pd/sup/dense/s0.csv", "probe_depth"),
    ],
)
def test_scores_round_trip_and_refuse_bad_files(tmp_path, kind, write, rel, rule):
    path = tmp_path / rel
    frame = write(path)
    pd.testing.assert_frame_equal(load_scores(path, kind, n_examples=N), frame)

    def load() -> Any:
        return load_scores(path, kind, index=np.arange(N))

    _cut(path, -8)  # the last row loses its last cells
    _error(load, path, rule)
    column = frame.columns[1]
    write_csv(path, frame.drop(columns=column))
    assert f"missing columns ['{column}']" in _error(load, path, rule)
    write_csv(path, frame.assign(**{column: "x"}))
    assert f"column '{column}' is not float" in _error(load, path, rule)
    write_csv(path, frame.head(7))
    assert f"7 rows, but the test split has {N} examples" in _error(load, path, rule)
    path.unlink()
    _error(load, path, rule)


def test_score_values_out_of_range(tmp_path):
    q = tmp_path / "results/scores/q/sup/gmp/s50.csv"
    frame = _q_scores(q)
    write_csv(q, frame.assign(l1=-frame["l1"]))
    assert "l1 is negative" in _error(lambda: load_scores(q, "q"), q, "score_q")
    frame.loc[5, "z"] = np.nan
    write_csv(q, frame)
    assert "not NaN together" in _error(lambda: load_scores(q, "q"), q, "score_q")
    p = tmp_path / "results/scores/pd/sup/gmp/s50.csv"
    write_csv(p, _pd_scores(p).assign(pd=0.5))
    assert "pd outside [1, inf]" in _error(
        lambda: load_scores(p, "pd"), p, "probe_depth"
    )


# -------------------------------------------------------- per-model depth


def test_depth_files_round_trip_and_refuse_bad_files(tmp_path):
    path = tmp_path / "results/depth/sup/gmp/s50/seed0.npz"
    rule = "probe_depth"
    good = depth_arrays(pd=[1, 16, 4, 4, 2])
    write_npz(path, good)
    got = load_depth(path, index=np.arange(5))
    assert all(
        np.array_equal(got[k], v) and got[k].dtype == v.dtype for k, v in good.items()
    )

    def load() -> Any:
        return load_depth(path)

    write_npz(path, good | {"pd": np.array([1, 17, 4, 4, 2])})
    assert "pd outside [1, 16]" in _error(load, path, rule)
    write_npz(path, good | {"probe_preds": good["probe_preds"].astype(np.int64)})
    assert "probe_preds is int64 (16, 5), expected int8 (Nx5)" in _error(
        load, path, rule
    )
    write_npz(path, good | {"final_pred": good["final_pred"][:3]})
    assert "final_pred is int64 (3,), expected int64 (5)" in _error(load, path, rule)
    write_npz(path, good)
    assert "5 rows, but the test split has 3 examples" in _error(
        lambda: load_depth(path, index=np.arange(3)), path, rule
    )
    _cut(path, 0.5)
    _error(load, path, rule)
    path.unlink()
    _error(load, path, rule)


# --------------------------------------------------------------------- UMAP


def _embeddings(path: Path) -> pd.DataFrame:
    rows = []
    for method, schedule, s in (("sup", "dense", 0), ("scl", "gmp", 50)):
        for i in (0, 4, 9):
            rows.append((method, schedule, s, i, 0.5 * i, -1.0, i % 10, i == 4))
    columns = ["method", "schedule", "sparsity", "index", "x", "y", "mode", "pie"]
    frame = pd.DataFrame(rows, columns=columns)
    write_csv(path, frame)
    return frame


def test_embeddings_round_trip_and_refuse_bad_files(tmp_path):
    path = tmp_path / "results/umap/embeddings.csv"
    rule = "embed_umap"
    frame = _embeddings(path)
    pd.testing.assert_frame_equal(load_embeddings(path), frame)

    def load() -> Any:
        return load_embeddings(path)

    write_csv(path, frame.iloc[:-1])  # the last population lost an example
    assert "scl/gmp/50 has 2 examples, not the 3 of sup/dense/0" in _error(
        load, path, rule
    )
    write_csv(path, frame.assign(schedule="pruned"))
    assert "unknown schedules ['pruned']" in _error(load, path, rule)
    write_csv(path, frame.assign(x=np.inf))
    assert "x outside" in _error(load, path, rule)
    write_csv(path, frame.drop(columns="mode"))
    assert "missing columns ['mode']" in _error(load, path, rule)
    write_csv(path, frame)
    _cut(path, -3)
    _error(load, path, rule)
    path.unlink()
    _error(load, path, rule)


def test_same_examples_blames_the_minority():
    a, b = np.arange(4), np.arange(3)
    assert same_examples([("x", a), ("y", a)]).tolist() == [0, 1, 2, 3]
    with pytest.raises(
        FileContractError, match=r"^z: 3 rows, but x has 4; .* --force$"
    ):
        same_examples([("x", a), ("z", b), ("y", a)])
    with pytest.raises(
        FileContractError, match=r"^y: its labels differ from those of x"
    ):
        same_examples([("x", a), ("y", a + 1), ("w", a)], what="labels")


# ----------------------------------------------- the cases issue 13 observed


def _prepared(path: Path, n_test: int) -> Path:
    labels = np.arange(n_test) % 10
    write_npz(
        path,
        {
            "train_images": np.zeros((10, 32, 32, 3), np.uint8),
            "train_labels": np.arange(10),
            "train_index": np.arange(10),
            "test_images": np.zeros((n_test, 32, 32, 3), np.uint8),
            "test_labels": labels,
            "test_index": np.arange(n_test),
            "classes": np.array(CLASSES),
        },
    )
    return path


def test_a_pie_table_cut_to_50_of_200_rows_stops_tables_1_and_3(tmp_path):
    paper = load_paper(REPO / "workflow/resources/paper-tables.yaml")
    n = 200
    data = _prepared(tmp_path / "results/data/cifar10.npz", n)
    pie = tmp_path / "results/pie/sup/gmp/s90.csv"
    labels = np.arange(n) % 10
    flipped = labels.copy()
    flipped[:30] = (flipped[:30] + 1) % 10
    dense_pop = Population(np.arange(n), labels, np.tile(labels, (4, 1)))
    write_csv(
        pie,
        vote_pies(
            dense_pop, Population(np.arange(n), labels, np.tile(flipped, (4, 1)))
        ),
    )
    assert table3({90: pie}, paper, data=data)["pie"].tolist() == [30]
    lines = pie.read_text().splitlines(keepends=True)
    pie.write_text("".join(lines[:51]))  # the header and 50 rows
    want = f"{pie}: 50 rows, but the test split has 200 examples; rebuild it with: "
    want += f"snakemake {pie} --forcerun vote_pies"
    with pytest.raises(FileContractError) as info:
        table3({90: pie}, paper, data=data)
    assert str(info.value) == want
    cells = []
    for schedule, s, preds in (("dense", 0, labels), ("gmp", 90, flipped)):
        base = tmp_path / f"results/models/sup/{schedule}/s{s}"
        cells.append(
            {
                "method": "sup",
                "schedule": schedule,
                "sparsity": s,
                "metrics": [base / f"seed{i}/metrics.json" for i in range(4)],
                "predictions": [
                    tmp_path / f"results/predictions/sup/{schedule}/s{s}/seed{i}.npz"
                    for i in range(4)
                ],
                "pie": pie if s else None,
            }
        )
        for m, p in zip(cells[-1]["metrics"], cells[-1]["predictions"], strict=True):
            write_json(m, metrics_json())
            write_predictions(
                p,
                index=np.arange(n),
                labels=labels,
                logits=np.eye(10)[preds],
                rep=np.ones((n, 2)),
            )
    with pytest.raises(FileContractError) as info:
        table1(cells, paper, n_resamples=100)
    assert str(info.value) == want


def test_the_other_observed_cases_name_the_file(tmp_path):
    model, _ = _model(tmp_path)
    _cut(model, 0.5)
    msg = _error(lambda: load_model(model), model, "train_supervised")
    assert "PytorchStreamReader failed reading zip archive" in msg
    npz = tmp_path / "results/predictions/sup/gmp/s50/seed0.npz"
    npz.parent.mkdir(parents=True)
    npz.write_text("these are not arrays\n")
    _error(lambda: load_predictions(npz), npz, "predict")
    metrics = tmp_path / "results/models/sup/gmp/s50/seed0/metrics.json"
    write_json(metrics, metrics_json())
    _cut(metrics, 0.6)
    _error(lambda: load_metrics(metrics), metrics, "train_supervised")
