"""Per-population analyses on top of the predictions files (study-reference §7-§9).

* Q-Score, Z-Score and L1 per example, averaged over a population's models.
* Prediction depth per model (k-NN probes on 16 hidden layers), then
  averaged over the first N models of a population.
* UMAP of one population's representations, coloured by its modal label.

Each function reads files, returns a DataFrame keyed by the example ``index``
and leaves writing to the caller, so all are testable without Snakemake.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from prunelens.pie import load_population, load_populations, modal_labels
from prunelens.scores import population_scores, summarise

log = logging.getLogger("prunelens.analysis")

__all__ = [
    "model_depth",
    "population_depth",
    "population_depth_files",
    "population_qscores",
    "split_summary",
    "umap_cells_frame",
    "umap_embedding",
]


def population_qscores(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Columns ``index,q,z,l1,n_degenerate``: per example, mean over models."""
    population = load_population(paths, reps=True)
    assert population.reps is not None
    index = population.index
    scores = population_scores(population.reps)
    n_bad = int(scores.n_degenerate.sum())
    if n_bad:
        log.warning(
            "%d (model, example) representations are degenerate (zero norm or "
            "spread) and left out of the means",
            n_bad,
        )
    return pd.DataFrame(
        {
            "index": index,
            "q": scores.q,
            "z": scores.z,
            "l1": scores.l1,
            "n_degenerate": scores.n_degenerate,
        }
    )


def split_summary(
    values: pd.DataFrame, pie: pd.DataFrame, columns: Sequence[str]
) -> list[dict[str, Any]]:
    """Mean, std and count of ``columns`` over all examples, PIEs and non-PIEs."""
    merged = values.merge(pie[["index", "pie"]], on="index", validate="one_to_one")
    flags = merged["pie"].to_numpy(bool)
    rows = []
    for subset, mask in (("all", None), ("pie", flags), ("non_pie", ~flags)):
        row: dict[str, Any] = {"subset": subset}
        for col in columns:
            mean, std, n = summarise(merged[col].to_numpy(float), mask)
            row |= {f"{col}_mean": mean, f"{col}_std": std, "n": n}
        rows.append(row)
    return rows


def model_depth(
    *,
    model: str | Path,
    data: str | Path,
    k: int,
    probe_data: Literal["clean", "augmented"],
    augment_cfg: Mapping[str, Any],
    mean: Sequence[float],
    std: Sequence[float],
    seed: int,
    final_pred: np.ndarray,
    device: str = "auto",
    threads: int = 1,
    batch: int = 256,
    chunk: int = 1024,
) -> dict[str, np.ndarray]:
    """k-NN probe predictions on every probed layer and the PD of each test image.

    The probes are fitted on the training split's pooled activations with
    true labels; ``probe_data="augmented"`` passes each training image through
    the Sup augmentation once (as the authors' loader did), ``"clean"`` uses
    the images as they are. ``final_pred`` is the network's own test
    prediction (from its predictions file), the target of Baldock's depth.
    """
    import torch

    from prunelens import augment
    from prunelens.data import load_prepared
    from prunelens.depth import prediction_depth, probe_activations, probe_predictions
    from prunelens.files import load_model
    from prunelens.runtime import keep_freed_memory, pick_device

    torch.set_num_threads(max(1, threads))
    keep_freed_memory()
    dev = pick_device(device)
    net, _ = load_model(model, dev)
    net = net.to(memory_format=torch.channels_last)
    train, test = load_prepared(data, "train"), load_prepared(data, "test")
    if k > len(train.labels):
        raise ValueError(f"k = {k} exceeds the {len(train.labels)} training images")
    gen = torch.Generator(device="cpu")  # the same augmentations on any device
    gen.manual_seed(seed)

    def inputs(images: np.ndarray, augmented: bool) -> torch.Tensor:
        x = augment.to_unit_float(torch.from_numpy(images).to(dev))
        if augmented:
            x = augment.crop_flip(x, gen, **augment_cfg)
        return augment.normalize(x, mean, std).contiguous(
            memory_format=torch.channels_last
        )

    train_acts = probe_activations(
        net.encoder, inputs(train.images, probe_data == "augmented"), batch=batch
    )
    test_acts = probe_activations(net.encoder, inputs(test.images, False), batch=batch)
    probes = probe_predictions(
        train_acts,
        train.labels,
        test_acts,
        k=k,
        n_classes=net.fc.out_features,
        device=dev,
        chunk=chunk,
    )
    return {
        "index": test.index,
        "label": test.labels,
        "final_pred": final_pred,
        "probe_preds": probes.astype(np.int8),
        "pd": prediction_depth(probes, test.labels, definition="corti"),
        "pd_baldock": prediction_depth(probes, final_pred, definition="baldock"),
    }


def population_depth(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Columns ``index,pd,pd_baldock``: per example, mean over the models given."""
    from prunelens.files import load_depth, same_examples

    if not paths:
        raise ValueError("prediction depth needs at least one model")
    depth = [load_depth(p) for p in paths]
    index = same_examples(
        [(p, d["index"]) for p, d in zip(paths, depth, strict=True)], rule="probe_depth"
    )
    return pd.DataFrame(
        {
            "index": index,
            "pd": np.mean([d["pd"] for d in depth], axis=0),
            "pd_baldock": np.mean([d["pd_baldock"] for d in depth], axis=0),
        }
    )


def umap_embedding(
    paths: Sequence[str | Path],
    pie: str | Path | None,
    *,
    models: int,
    n_neighbors: int,
    min_dist: float,
    random_state: int,
    max_examples: int | None = None,
    tie_break: Literal["smallest", "largest"] = "smallest",
    n_classes: int | None = None,
) -> pd.DataFrame:
    """2-D UMAP of the mean representation of the first ``models`` models
    (of ``max_examples`` evenly spaced test examples, or all).

    Colour (``mode``) is the modal label of the whole population given in
    ``paths``; ``pie`` flags come from the cell's PIE table (its path; none
    for dense), which must cover the population's examples.
    """
    import umap

    from prunelens.files import load_pie

    # representations of the first ``models`` only; votes of them all
    groups = [paths[:models], paths[models:]] if len(paths) > models else [paths]
    pops = load_populations(groups, reps=[True, False][: len(groups)])
    assert pops[0].reps is not None
    index = pops[0].index
    pie_table = None if pie is None else load_pie(pie, index=index)
    preds = np.concatenate([p.preds for p in pops])
    mode, _ = modal_labels(preds, n_classes, tie_break)
    rep = np.mean(pops[0].reps, axis=0)
    if max_examples is not None and max_examples < len(index):
        # evenly spaced over the test split, which is ordered by class: every
        # class keeps its share, and every population the same examples
        keep = np.unique(
            np.linspace(0, len(index) - 1, max_examples).round().astype(int)
        )
        index, mode, rep = index[keep], mode[keep], rep[keep]
    reducer = umap.UMAP(
        n_neighbors=min(n_neighbors, len(index) - 1),
        min_dist=min_dist,
        random_state=random_state,
    )
    xy = reducer.fit_transform(rep)
    flags = np.zeros(len(index), bool)
    if pie_table is not None:
        flags = pie_table.set_index("index").loc[index, "pie"].to_numpy(bool)
    return pd.DataFrame(
        {"index": index, "x": xy[:, 0], "y": xy[:, 1], "mode": mode, "pie": flags}
    )


def umap_cells_frame(
    cells: Sequence[Sequence[Any]],
    inputs: Mapping[str, Any],
    **umap_kw: Any,
) -> pd.DataFrame:
    """Embeddings of many cells in one long table (one numba compile).

    ``cells`` are (method, schedule, sparsity); ``inputs`` maps
    ``pred_<m>_<sc>_s<s>`` to that population's predictions files and
    ``pie_<m>_<sc>_s<s>`` to its PIE table (absent for dense populations).
    """
    frames = []
    for method, schedule, sparsity in cells:
        key = f"{method}_{schedule}_s{sparsity}"
        emb = umap_embedding(
            list(inputs[f"pred_{key}"]), inputs.get(f"pie_{key}"), **umap_kw
        )
        emb.insert(0, "sparsity", sparsity)
        emb.insert(0, "schedule", schedule)
        emb.insert(0, "method", method)
        frames.append(emb)
        log.info("embedded %s/%s/s%d", method, schedule, sparsity)
    return pd.concat(frames, ignore_index=True)


def population_depth_files(
    *,
    models: Sequence[str | Path],
    predictions: Sequence[str | Path],
    seeds: Sequence[int],
    outs: Sequence[str | Path],
    scores_out: str | Path,
    **kw: Any,
) -> pd.DataFrame:
    """Run :func:`model_depth` for each model (seeded by its own seed), write
    its per-model file, then the per-example mean over the models."""
    from prunelens.runtime import write_csv, write_npz

    population = load_population(predictions)
    for model, seed, out, pred in zip(
        models, seeds, outs, population.preds, strict=True
    ):
        depth = model_depth(model=model, seed=seed, final_pred=pred, **kw)
        if not np.array_equal(depth["index"], population.index):
            raise ValueError(f"{model}: predictions cover other test examples")
        write_npz(out, depth)
        log.info("prediction depth of %s done", model)
    frame = population_depth(outs)
    write_csv(scores_out, frame)
    return frame
