"""Rule predict: test-set logits, predictions and representations of a population."""

from typing import TYPE_CHECKING

from prunelens.evaluate import predict_files
from prunelens.runtime import log, log_to

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    accs = predict_files(
        models=snakemake.input.models,
        outs=snakemake.output,
        data=snakemake.input.data,
        mean=snakemake.params.norm["mean"],
        std=snakemake.params.norm["std"],
        device=snakemake.resources.device,
        batch=snakemake.resources.eval_batch_size,
        threads=snakemake.threads,
    )
    log.info("test accuracy per model: %s", ", ".join(f"{a:.4f}" for a in accs))
