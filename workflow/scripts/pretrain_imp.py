"""Rules pretrain_imp[_seeds<a>_<b>]: IMP over contrastive pre-training (SCL:
SupCon; SimCLR: NT-Xent), every IMP sparsity of the method in one job."""

from typing import TYPE_CHECKING

from prunelens.runtime import as_paths, log_to
from prunelens.settings import job_settings
from prunelens.study import PRETRAIN_OBJECTIVE
from prunelens.train import pretrain_imp

if TYPE_CHECKING:
    from snakemake.script import snakemake

# Outputs are sparsity-major: each sparsity's paths, one per seed of the job.
n = len(snakemake.params.seeds)
encoders = as_paths(snakemake.output.encoder)
encoder_outs = {
    s: encoders[i * n : (i + 1) * n] for i, s in enumerate(snakemake.params.sparsities)
}
curves = as_paths(snakemake.output.curves)
curves_outs = {
    s: curves[i * n : (i + 1) * n] for i, s in enumerate(snakemake.params.sparsities)
}
with log_to(snakemake.log[0], snakemake.output):
    pretrain_imp(
        data=snakemake.input.data,
        seeds=snakemake.params.seeds,
        encoder_outs=encoder_outs,
        arch=snakemake.params.arch,
        hp=snakemake.params.hp,
        norm=snakemake.params.norm,
        imp=snakemake.params.imp,
        objective=PRETRAIN_OBJECTIVE[snakemake.wildcards.method],
        settings=job_settings(snakemake),
        curves_outs=curves_outs,
        tensorboard_dirs=snakemake.params.tensorboard,
    )
