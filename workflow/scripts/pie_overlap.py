"""Rule pie_overlap: PIEs shared by Sup and SCL, per schedule and sparsity."""

from typing import TYPE_CHECKING

from prunelens.runtime import log_to
from prunelens.tables import pie_overlap, write_table

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    long = pie_overlap(snakemake.params.cells)
    write_table(
        long,
        long.round({"iou": 3}),
        csv=snakemake.output.csv,
        md=snakemake.output.md,
        tex=snakemake.output.tex,
        title="PIEs shared by Sup and SCL (intersection over union)",
        label="tab:pie_overlap",
        note=(
            ""
            if len(long)
            else "Not in this grid: no schedule and sparsity trained for both "
            "Sup and SCL, so the table has no rows."
        ),
    )
