"""Rule table6: prediction depth of PIEs and non-PIEs."""

from typing import TYPE_CHECKING

from prunelens.runtime import log_to
from prunelens.tables import absent_note, depth_table, depth_wide, write_table

if TYPE_CHECKING:
    from snakemake.script import snakemake

definition = snakemake.params.definition
with log_to(snakemake.log[0], snakemake.output):
    long = depth_table(snakemake.params.cells, snakemake.params.paper)
    write_table(
        long,
        depth_wide(long, definition),
        csv=snakemake.output.csv,
        md=snakemake.output.md,
        tex=snakemake.output.tex,
        title=f"Table 6: prediction depth ({definition}) of PIEs and non-PIEs",
        label="tab:table6",
        note="Mean ± std over test images; ours (paper). Dense rows use the PIEs "
        "of the largest sparsity. Both PD definitions are in the CSV. "
        + absent_note(long, schedule_column="group"),
    )
