"""Rule fig_curves: one (method, schedule)'s training curves, every sparsity."""

from typing import TYPE_CHECKING

from prunelens.paper import fig_training_curves
from prunelens.runtime import log_to

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    fig_training_curves(
        snakemake.params.panels,
        method=snakemake.wildcards.method,
        schedule=snakemake.wildcards.schedule,
        pdf=snakemake.output.pdf,
        png=snakemake.output.png,
    )
