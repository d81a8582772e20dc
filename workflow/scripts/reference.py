"""Rule reference: the compact per-model files Table 1 and the claims need."""

from pathlib import Path
from typing import TYPE_CHECKING

from prunelens.reference import export
from prunelens.runtime import log_to

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    export(
        snakemake.params.populations,
        Path(snakemake.output.arrays).parent,
        settings=snakemake.params.settings,
    )
