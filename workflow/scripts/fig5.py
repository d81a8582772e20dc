"""Rule fig5: UMAP grid across methods, schedules and sparsities."""

from typing import TYPE_CHECKING

from prunelens.paper import fig5
from prunelens.runtime import log_to

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    fig5(
        snakemake.input[0],
        sparsities=snakemake.params.sparsities,
        methods=snakemake.params.methods,
        columns=[tuple(c) for c in snakemake.params.columns],
        pdf=snakemake.output.pdf,
        png=snakemake.output.png,
        dataset=snakemake.params.dataset,
    )
