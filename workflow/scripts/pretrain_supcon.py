"""Rule pretrain_supcon: SupCon pre-training of the encoder, dense or with GMP."""

from typing import TYPE_CHECKING

from prunelens.runtime import log_to
from prunelens.train import pretrain_supcon

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0]):
    pretrain_supcon(
        data=snakemake.input.data,
        encoder_out=snakemake.output[0],
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
    )
