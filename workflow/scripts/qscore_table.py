"""Rules table4 and table5: Q-Score, Z-Score and L1 norm per population."""

from typing import TYPE_CHECKING

from prunelens.runtime import log_to
from prunelens.study import PAPER_GROUPS
from prunelens.tables import absent_note, qscore_table, qscore_wide, write_table

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    long = qscore_table(
        snakemake.params.cells,
        snakemake.params.paper,
        snakemake.params.paper_table,
    )
    write_table(
        long,
        qscore_wide(long),
        csv=snakemake.output.csv,
        md=snakemake.output.md,
        tex=snakemake.output.tex,
        title=snakemake.params.title,
        label=f"tab:{snakemake.params.paper_table}",
        note="Mean ± std over test images of model-averaged scores; "
        "ours (paper). PIE and non-PIE rows are in the CSV. "
        + absent_note(
            long, [g for g in PAPER_GROUPS if g[0] == snakemake.params.method]
        ),
    )
