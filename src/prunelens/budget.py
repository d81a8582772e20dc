"""How much computing a config asks for: image-steps per training stage, and
its wall time projected from measured throughputs.

An image-step is one image through one training step (a view for SupCon
pre-training, which sees two per image). The rates below are measurements
(BENCHMARKS.md), each with its provenance; a projection is never a
measurement and says so wherever it is printed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunelens.study import PRETRAIN_OBJECTIVE, SPLIT_SIZES, Grid

__all__ = ["H200", "Rates", "image_steps", "n_models", "project", "table"]

CIFAR10_TRAIN, CIFAR10_TEST = SPLIT_SIZES["train"], SPLIT_SIZES["test"]


@dataclass(frozen=True)
class Rates:
    """Aggregate throughput of concurrent jobs on one device, and fixed costs."""

    sup: float  # img/s, Sup training and One-Shot fine-tuning
    scl_pretrain: float  # image-views/s, SupCon pre-training
    head: float  # img/s, a linear-head step (frozen encoder forward + head)
    predict: float  # img/s, inference
    depth_s_per_model: float  # s, prediction depth of one model at full size
    umap_s: Mapping[int, float]  # s per embedding of N points (after compile)
    gpu_job_overhead_s: float  # s per GPU job: process start, torch, data load
    cpu_job_overhead_s: float  # s per CPU-only job (tables, PIE votes, figures)
    prepare_s: float  # s, preparing the full data set from the JPEG archive
    gpu_slots: int  # concurrent GPU jobs (profiles/gpu: resources gpu)
    cpu_slots: int  # concurrent CPU-only jobs beside them
    source: str


# NVIDIA H200, BENCHMARKS.md (cuda-2026-11-26.json) unless noted.
H200 = Rates(
    # "Sup prunelens: 4 processes x one model, bf16, eager": four GPU slots
    # of profiles/gpu each training one model (stacks of K >= 16 are faster:
    # 58,381 img/s fp32; not counted)
    sup=51_522,
    # "SCL prunelens: one model": one job alone; what concurrent jobs add is
    # unmeasured and not counted
    scl_pretrain=61_096,
    # BENCHMARKS' convention: a head step costs a third of a training step
    head=3 * 51_522,
    # inference is a forward pass, a third of a training step (same convention)
    predict=3 * 51_522,
    # "probe activations 60,000 images" 0.51 s + "k-NN 50,000 x 10,000" 0.21 s
    depth_s_per_model=0.72,
    # measured on our 2-core CPU (umap-learn 0.5.12, one thread as with a
    # fixed random_state): an upper bound for the GPU machine's host
    umap_s={2_000: 3.9, 10_000: 33.4},
    # measured on our 2-core CPU: `import torch` and loading the full
    # prepared data took 7.2-9.6 s; an upper bound for the GPU machine's host
    gpu_job_overhead_s=8.0,
    # measured: the analysis imports take 1.4-1.6 s; doubled for Snakemake's
    # script start
    cpu_job_overhead_s=3.0,
    # measured on our 2-core CPU (57 s wall, 10 s of CPU): an upper bound
    prepare_s=57.0,
    gpu_slots=4,  # profiles/gpu
    cpu_slots=12,  # a 16-core host less the GPU jobs' cores
    source="H200 rates from BENCHMARKS.md (cuda-2026-11-26); UMAP and per-job "
    "overhead measured on the 2-core CPU (upper bounds)",
)


def _sizes(config: Mapping[str, Any]) -> tuple[int, int]:
    data = config["data"]
    return data["subset_train"] or CIFAR10_TRAIN, data["subset_test"] or CIFAR10_TEST


def n_models(config: Mapping[str, Any]) -> dict[str, int]:
    """Models trained per stage (seeds x populations)."""
    grid, seeds = Grid.from_config(config), len(config["seeds"])

    def count(method: str, schedules: tuple[str, ...], dense: bool) -> int:
        if method not in grid.methods:
            return 0
        pops = sum(len(grid.sparsities(method, sc)) for sc in schedules)
        return seeds * (pops + dense)

    out = {
        "sup": count("sup", ("gmp",), True),
        "sup_oneshot": count("sup", ("oneshot",), False),
    }
    for m in _contrastive(grid):
        pretrained = count(m, ("gmp", "delayed_gmp"), True)
        out |= {f"{m}_pretrain": pretrained, f"{m}_head": pretrained}
        out[f"{m}_oneshot"] = count(m, ("oneshot",), False)
    return out


def _contrastive(grid: Grid) -> list[str]:
    """The contrastive methods with stages in the projection: SCL always (the
    paper's), SimCLR when trained."""
    return [m for m in PRETRAIN_OBJECTIVE if m == "scl" or m in grid.methods]


def _stage_rates(config: Mapping[str, Any], rates: Rates) -> dict[str, float]:
    """Images (views) per second of each stage of ``n_models``."""
    out = {"sup": rates.sup, "sup_oneshot": rates.sup}
    for m in _contrastive(Grid.from_config(config)):
        out |= {f"{m}_pretrain": rates.scl_pretrain, f"{m}_head": rates.head}
        out[f"{m}_oneshot"] = rates.sup
    return out


def image_steps(config: Mapping[str, Any]) -> dict[str, float]:
    """Image-steps per training stage (views for SupCon pre-training)."""
    n_train, _ = _sizes(config)
    models = n_models(config)
    epochs = {
        "sup": config["sup"]["epochs"],
        "sup_oneshot": config["oneshot"]["epochs"],
    }
    for m in _contrastive(Grid.from_config(config)):
        epochs[f"{m}_pretrain"] = 2 * config[m]["pretrain"]["epochs"]  # two views
        epochs[f"{m}_head"] = config[m]["head"]["epochs"]
        epochs[f"{m}_oneshot"] = config["oneshot"]["epochs"]
    return {stage: float(models[stage] * epochs[stage] * n_train) for stage in models}


def project(
    config: Mapping[str, Any], rates: Rates, *, gpu_jobs: int, cpu_jobs: int
) -> dict[str, float]:
    """Seconds per stage at ``rates`` (aggregates: the device kept busy), the
    analyses, data preparation, and the per-job overhead of ``gpu_jobs`` and
    ``cpu_jobs`` jobs spread over their slots. Serial sums: work that the DAG
    overlaps (analyses of early populations during later trainings) counts
    in full, so the total is an upper bound at these rates."""
    n_train, n_test = _sizes(config)
    steps = image_steps(config)
    stage_rate = _stage_rates(config, rates)
    out = {stage: steps[stage] / stage_rate[stage] for stage in steps}
    grid = Grid.from_config(config)
    populations = sum(len(grid.cells(m)) for m in grid.methods)
    seeds, depth = len(config["seeds"]), config["analysis"]["depth"]["models"]
    out["predict"] = populations * seeds * n_test / rates.predict
    scale = (n_train + n_test) / (CIFAR10_TRAIN + CIFAR10_TEST)
    out["probe_depth"] = populations * depth * rates.depth_s_per_model * scale
    umap_points = config["analysis"]["umap"].get("max_examples") or n_test
    umap_cells = sum(
        1 + len(grid.sparsities(m, "gmp")) + len(grid.sparsities(m, "oneshot"))
        for m in grid.methods
    )
    per_embedding = max(
        (t for n, t in rates.umap_s.items() if n <= umap_points),
        default=min(rates.umap_s.values()),
    )
    out["embed_umap"] = umap_cells * per_embedding
    out["prepare"] = rates.prepare_s * scale
    out["job_overhead"] = (
        rates.gpu_job_overhead_s * gpu_jobs / rates.gpu_slots
        + rates.cpu_job_overhead_s * cpu_jobs / rates.cpu_slots
    )
    return out


def table(config: Mapping[str, Any], rates: Rates, **jobs: int) -> str:
    """The projection as Markdown: image-steps, rate and seconds per stage."""
    steps = image_steps(config)
    seconds = project(config, rates, **jobs)
    rate = _stage_rates(config, rates)
    lines = ["| stage | image-steps | rate (/s) | seconds |", "|---|---:|---:|---:|"]
    for stage, s in seconds.items():
        if stage in steps:
            lines.append(
                f"| {stage} | {steps[stage]:,.0f} | {rate[stage]:,.0f} | {s:,.1f} |"
            )
        else:
            lines.append(f"| {stage} | | | {s:,.1f} |")
    lines.append(f"| **total (projected)** | | | **{sum(seconds.values()):,.1f}** |")
    return "\n".join(lines) + f"\n\n{rates.source}.\n"


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    import yaml

    parser = argparse.ArgumentParser(
        prog="python -m prunelens.budget",
        description="Project a config's wall time on one H200 from measured rates.",
    )
    parser.add_argument(
        "configs", nargs="+", help="config.yaml and overlays, merged in order"
    )
    parser.add_argument("--gpu-jobs", type=int, required=True, help="from a dry run")
    parser.add_argument("--cpu-jobs", type=int, required=True, help="from a dry run")
    args = parser.parse_args(argv)
    config: dict[str, Any] = {}
    for path in args.configs:
        config = _merge(config, yaml.safe_load(Path(path).read_text()))
    print(table(config, H200, gpu_jobs=args.gpu_jobs, cpu_jobs=args.cpu_jobs), end="")


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Snakemake's configfile merge: mappings merge, everything else replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            _merge(out[k], v)
            if isinstance(v, dict) and isinstance(out.get(k), dict)
            else v
        )
    return out


if __name__ == "__main__":
    main()
