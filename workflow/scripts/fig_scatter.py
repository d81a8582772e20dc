"""Rules fig2 and fig3: per-image score of dense versus sparse models."""

from typing import TYPE_CHECKING

from prunelens.paper import fig_scatter
from prunelens.runtime import log_to

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    fig_scatter(
        snakemake.params.cells,
        column=snakemake.params.column,
        axis_label=snakemake.params.axis_label,
        title=snakemake.params.title,
        sparsity=snakemake.params.sparsity,
        requested=snakemake.params.requested,
        pdf=snakemake.output.pdf,
        png=snakemake.output.png,
    )
