"""Rules fig4 and fig7: PIEs per class, shared by Sup and SCL or unique."""

from typing import TYPE_CHECKING

from prunelens.paper import fig_pies_by_class
from prunelens.runtime import log_to

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    fig_pies_by_class(
        snakemake.params.pies,
        rows=snakemake.params.rows,
        title=snakemake.params.title,
        sharey=snakemake.params.sharey,
        pdf=snakemake.output.pdf,
        png=snakemake.output.png,
        dataset=snakemake.params.dataset,
    )
