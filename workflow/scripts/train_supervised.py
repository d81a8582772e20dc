"""Rules train_supervised[_seeds<a>_<b>]: Sup training, dense or with GMP."""

from typing import TYPE_CHECKING

from prunelens.runtime import as_paths, log_to
from prunelens.settings import job_settings
from prunelens.train import train_supervised

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    train_supervised(
        data=snakemake.input.data,
        seeds=snakemake.params.seeds,
        model_outs=as_paths(snakemake.output.model),
        metrics_outs=as_paths(snakemake.output.metrics),
        arch=snakemake.params.arch,
        hp=snakemake.params.hp,
        norm=snakemake.params.norm,
        gmp=snakemake.params.gmp,
        sparsity=int(snakemake.wildcards.sparsity),
        schedule=snakemake.wildcards.schedule,
        settings=job_settings(snakemake),
        curves_outs=as_paths(snakemake.output.curves),
        tensorboard_dirs=snakemake.params.tensorboard,
    )
