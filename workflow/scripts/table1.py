"""Rule table1: PIE counts and accuracy per method, schedule and sparsity."""

from typing import TYPE_CHECKING

from prunelens.runtime import log_to
from prunelens.tables import load_paper, table1, table1_wide, write_table

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0]):
    long = table1(snakemake.params.cells, load_paper(snakemake.input.paper))
    write_table(
        long,
        table1_wide(long),
        csv=snakemake.output.csv,
        md=snakemake.output.md,
        tex=snakemake.output.tex,
        title="Table 1: PIEs and test accuracy (ours, paper in parentheses)",
        label="tab:table1",
        note="Accuracy in %, mean ± std over seeds; PIE counts over the test set.",
    )
