"""Rule vote_pies: modal labels of the dense and pruned populations, PIE flags."""

from typing import TYPE_CHECKING

from prunelens.pie import load_populations, vote_pies
from prunelens.runtime import atomic_path, log, log_to

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    votes = vote_pies(
        *load_populations([snakemake.input.dense, snakemake.input.pruned]),
        tie_break=snakemake.params.tie_break,
    )
    with atomic_path(snakemake.output[0]) as tmp:
        votes.to_csv(tmp, index=False)
    log.info("%d PIEs, %d tied votes", votes["pie"].sum(), votes["tie"].sum())
