"""Rule table1: PIE counts (with CIs and noise floors) and accuracy per cell."""

from typing import TYPE_CHECKING

from prunelens.runtime import log_to
from prunelens.tables import (
    absent_note,
    noise_floor_note,
    table1,
    table1_wide,
    write_table,
)

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    long = table1(
        snakemake.params.cells,
        snakemake.params.paper,
        tie_break=snakemake.params.tie_break,
        **snakemake.params.bootstrap,
    )
    write_table(
        long,
        table1_wide(long),
        csv=snakemake.output.csv,
        md=snakemake.output.md,
        tex=snakemake.output.tex,
        title="Table 1: PIEs and test accuracy (ours, paper in parentheses)",
        label="tab:table1",
        note="Accuracy in %, mean ± std over seeds; PIE counts over the test set "
        f"with their {snakemake.params.bootstrap['confidence']:.0%} bootstrap CI over "
        "models in brackets; " + noise_floor_note(long) + " " + absent_note(long),
    )
