"""Rule predict: test-set logits, predictions and representations of one model."""

from typing import TYPE_CHECKING

from prunelens.evaluate import predict_file
from prunelens.runtime import log, log_to

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0]):
    acc = predict_file(
        model=snakemake.input.model,
        data=snakemake.input.data,
        out=snakemake.output[0],
        mean=snakemake.params.norm["mean"],
        std=snakemake.params.norm["std"],
        device=snakemake.params.device,
        batch=snakemake.params.batch,
        threads=snakemake.threads,
    )
    log.info("test accuracy %.4f", acc)
