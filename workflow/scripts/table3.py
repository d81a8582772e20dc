"""Rule table3: Sup / GMP PIE counts beside Hooker et al. (2019) and the paper."""

from typing import TYPE_CHECKING

from prunelens.runtime import log_to
from prunelens.tables import table3, table3_note, table3_wide, write_table

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    long = table3(
        snakemake.params.pies, snakemake.params.paper, data=snakemake.input.data
    )
    write_table(
        long,
        table3_wide(long),
        csv=snakemake.output.csv,
        md=snakemake.output.md,
        tex=snakemake.output.tex,
        title="Table 3: Sup / GMP PIE counts",
        label="tab:table3",
        note=table3_note(long),
    )
