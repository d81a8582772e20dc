"""Rules fit_linear_head[_seeds<a>_<b>]: linear classifiers on frozen encoders
(SCL or SimCLR)."""

from typing import TYPE_CHECKING

from prunelens.runtime import as_paths, log_to
from prunelens.settings import job_settings
from prunelens.train import fit_linear_head

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    fit_linear_head(
        data=snakemake.input.data,
        encoders=as_paths(snakemake.input.encoder),
        seeds=snakemake.params.seeds,
        model_outs=as_paths(snakemake.output.model),
        metrics_outs=as_paths(snakemake.output.metrics),
        hp=snakemake.params.hp,
        augment_cfg=snakemake.params.augment,
        norm=snakemake.params.norm,
        gmp=snakemake.params.gmp,
        sparsity=int(snakemake.wildcards.sparsity),
        schedule=snakemake.wildcards.schedule,
        method=snakemake.wildcards.method,
        settings=job_settings(snakemake),
        curves_outs=as_paths(snakemake.output.curves),
        tensorboard_dirs=snakemake.params.tensorboard,
    )
