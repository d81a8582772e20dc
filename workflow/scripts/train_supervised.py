"""Rule train_supervised: Sup training, dense or with GMP."""

from typing import TYPE_CHECKING

from prunelens.runtime import log_to
from prunelens.train import train_supervised

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0]):
    train_supervised(
        data=snakemake.input.data,
        model_out=snakemake.output.model,
        metrics_out=snakemake.output.metrics,
        arch=snakemake.params.arch,
        hp=snakemake.params.hp,
        norm=snakemake.params.norm,
        gmp=snakemake.params.gmp,
        sparsity=int(snakemake.wildcards.sparsity),
        seed=int(snakemake.wildcards.seed),
        schedule=snakemake.wildcards.schedule,
        device=snakemake.params.device,
        precision=snakemake.params.precision,
        threads=snakemake.threads,
        eval_batch_size=snakemake.params.eval_batch_size,
    )
