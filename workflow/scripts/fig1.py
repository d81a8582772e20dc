"""Rule fig1: UMAP of dense and sparse representations, Sup and SCL."""

from typing import TYPE_CHECKING

from prunelens.paper import fig1
from prunelens.runtime import log_to

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    fig1(
        snakemake.input[0],
        methods=snakemake.params.methods,
        sparsity=snakemake.params.sparsity,
        requested=snakemake.params.requested,
        columns=[tuple(c) for c in snakemake.params.columns],
        pdf=snakemake.output.pdf,
        png=snakemake.output.png,
        dataset=snakemake.params.dataset,
    )
