"""Rules train_imp[_seeds<a>_<b>]: Sup IMP, every IMP sparsity in one job."""

from typing import TYPE_CHECKING

from prunelens.runtime import as_paths, log_to
from prunelens.settings import job_settings
from prunelens.train import train_imp

if TYPE_CHECKING:
    from snakemake.script import snakemake

# Outputs are sparsity-major: each sparsity's paths, one per seed of the job.
n = len(snakemake.params.seeds)
sparsities = snakemake.params.sparsities
models, metrics = as_paths(snakemake.output.model), as_paths(snakemake.output.metrics)
model_outs = {s: models[i * n : (i + 1) * n] for i, s in enumerate(sparsities)}
metrics_outs = {s: metrics[i * n : (i + 1) * n] for i, s in enumerate(sparsities)}
curves = as_paths(snakemake.output.curves)
curves_outs = {s: curves[i * n : (i + 1) * n] for i, s in enumerate(sparsities)}
with log_to(snakemake.log[0], snakemake.output):
    train_imp(
        data=snakemake.input.data,
        seeds=snakemake.params.seeds,
        model_outs=model_outs,
        metrics_outs=metrics_outs,
        arch=snakemake.params.arch,
        hp=snakemake.params.hp,
        norm=snakemake.params.norm,
        imp=snakemake.params.imp,
        settings=job_settings(snakemake),
        curves_outs=curves_outs,
        tensorboard_dirs=snakemake.params.tensorboard,
    )
