"""Rules pretrain_supcon[_seeds<a>_<b>]: contrastive pre-training of encoders
(SCL: SupCon; SimCLR: NT-Xent), the objective given by the method wildcard."""

from typing import TYPE_CHECKING

from prunelens.runtime import as_paths, log_to
from prunelens.settings import job_settings
from prunelens.study import PRETRAIN_OBJECTIVE
from prunelens.train import pretrain_supcon

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    pretrain_supcon(
        data=snakemake.input.data,
        seeds=snakemake.params.seeds,
        encoder_outs=as_paths(snakemake.output.encoder),
        arch=snakemake.params.arch,
        hp=snakemake.params.hp,
        norm=snakemake.params.norm,
        gmp=snakemake.params.gmp,
        sparsity=int(snakemake.wildcards.sparsity),
        schedule=snakemake.wildcards.schedule,
        objective=PRETRAIN_OBJECTIVE[snakemake.wildcards.method],
        settings=job_settings(snakemake),
        curves_outs=as_paths(snakemake.output.curves),
        tensorboard_dirs=snakemake.params.tensorboard,
    )
