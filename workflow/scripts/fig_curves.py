"""Rule fig_curves: the training curves of every (method, schedule), one
figure each (outputs in the order of params.families)."""

from typing import TYPE_CHECKING

from prunelens.paper import fig_training_curves
from prunelens.runtime import log_to

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    for family, pdf, png in zip(
        snakemake.params.families,
        snakemake.output.pdf,
        snakemake.output.png,
        strict=True,
    ):
        fig_training_curves(family["panels"], method=family["method"],
                            schedule=family["schedule"], pdf=pdf, png=png)  # fmt: skip
