"""Rule prune_oneshot: global magnitude pruning of a dense model + fine-tuning."""

from typing import TYPE_CHECKING

from prunelens.runtime import log_to
from prunelens.train import oneshot_finetune

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0]):
    oneshot_finetune(
        data=snakemake.input.data,
        dense_model=snakemake.input.dense,
        model_out=snakemake.output.model,
        metrics_out=snakemake.output.metrics,
        hp=snakemake.params.hp,
        augment_cfg=snakemake.params.augment,
        norm=snakemake.params.norm,
        method=snakemake.wildcards.method,
        sparsity=int(snakemake.wildcards.sparsity),
        seed=int(snakemake.wildcards.seed),
        device=snakemake.params.device,
        precision=snakemake.params.precision,
        threads=snakemake.threads,
        eval_batch_size=snakemake.params.eval_batch_size,
    )
