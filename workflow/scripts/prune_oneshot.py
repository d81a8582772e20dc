"""Rules prune_oneshot[_seeds<a>_<b>]: post-training pruning (One-Shot, Random)
+ fine-tuning."""

from typing import TYPE_CHECKING

from prunelens.runtime import as_paths, log_to
from prunelens.settings import job_settings
from prunelens.train import oneshot_finetune

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    oneshot_finetune(
        data=snakemake.input.data,
        dense_models=as_paths(snakemake.input.dense),
        seeds=snakemake.params.seeds,
        model_outs=as_paths(snakemake.output.model),
        metrics_outs=as_paths(snakemake.output.metrics),
        hp=snakemake.params.hp,
        augment_cfg=snakemake.params.augment,
        norm=snakemake.params.norm,
        method=snakemake.wildcards.method,
        sparsity=int(snakemake.wildcards.sparsity),
        pruner=snakemake.wildcards.schedule,
        pruner_options=snakemake.params.pruner,
        settings=job_settings(snakemake),
        curves_outs=as_paths(snakemake.output.curves),
        tensorboard_dirs=snakemake.params.tensorboard,
    )
