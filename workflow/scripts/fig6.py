"""Rule fig6: gallery of one method's test images (SCL's in the paper) whose
modal label changes with pruning."""

from typing import TYPE_CHECKING

from prunelens.paper import fig_gallery_pies
from prunelens.runtime import log_to

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    fig_gallery_pies(
        {sc: snakemake.input[sc] for sc in snakemake.params.schedules},
        data=snakemake.input.data,
        method=snakemake.params.method,
        sparsity=snakemake.params.sparsity,
        requested=snakemake.params.requested,
        per_group=snakemake.params.per_group,
        pdf=snakemake.output.pdf,
        png=snakemake.output.png,
    )
