"""Rule embed_umap: 2-D UMAP of every population shown in Figures 1 and 5."""

from typing import TYPE_CHECKING

from prunelens.analysis import umap_cells_frame
from prunelens.runtime import log_to, write_csv

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    write_csv(
        snakemake.output[0],
        umap_cells_frame(
            snakemake.params.cells,
            dict(snakemake.input.items()),
            **snakemake.params.umap,
            tie_break=snakemake.params.tie_break,
        ),
    )
