"""Rule score_q: per-example Q-Score, Z-Score and L1 norm of one population."""

from typing import TYPE_CHECKING

from prunelens.analysis import population_qscores
from prunelens.runtime import log_to, write_csv

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    write_csv(snakemake.output[0], population_qscores(list(snakemake.input)))
