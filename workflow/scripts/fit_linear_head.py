"""Rule fit_linear_head: linear classifier on the frozen SCL encoder."""

from typing import TYPE_CHECKING

from prunelens.runtime import log_to
from prunelens.train import fit_linear_head

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0]):
    fit_linear_head(
        data=snakemake.input.data,
        encoder=snakemake.input.encoder,
        model_out=snakemake.output.model,
        metrics_out=snakemake.output.metrics,
        hp=snakemake.params.hp,
        augment_cfg=snakemake.params.augment,
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
