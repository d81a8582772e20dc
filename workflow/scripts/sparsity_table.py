"""Rule sparsity_table: every cell's per-tensor target and measured sparsity."""

from typing import TYPE_CHECKING

from prunelens.runtime import atomic_path, log_to, write_csv
from prunelens.tables import sparsity_html, sparsity_markdown, sparsity_table

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    tolerance = snakemake.params.tolerance_pp
    long = sparsity_table(snakemake.params.cells, tolerance_pp=tolerance)
    write_csv(snakemake.output.csv, long)
    with atomic_path(snakemake.output.md) as tmp:
        tmp.write_text(sparsity_markdown(long, tolerance_pp=tolerance))
    with atomic_path(snakemake.output.html) as tmp:
        tmp.write_text(sparsity_html(long, tolerance_pp=tolerance))
