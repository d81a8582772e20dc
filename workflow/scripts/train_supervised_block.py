"""Rule train_supervised_seeds<a>_<b>: Sup training of a block of seeds at once."""

from typing import TYPE_CHECKING

from prunelens.runtime import log_to
from prunelens.stacked import train_supervised_block

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0]):
    train_supervised_block(
        data=snakemake.input.data,
        seeds=snakemake.params.seeds,
        model_outs=snakemake.output.model,
        metrics_outs=snakemake.output.metrics,
        arch=snakemake.params.arch,
        hp=snakemake.params.hp,
        norm=snakemake.params.norm,
        gmp=snakemake.params.gmp,
        sparsity=int(snakemake.wildcards.sparsity),
        schedule=snakemake.wildcards.schedule,
        device=snakemake.params.device,
        threads=snakemake.threads,
        eval_batch_size=snakemake.params.eval_batch_size,
        precision=snakemake.params.precision,
        compile=snakemake.params.compile,
    )
