"""Rule probe_depth: k-NN probes on every probed layer, PD per test image."""

from typing import TYPE_CHECKING

from prunelens.analysis import population_depth_files
from prunelens.runtime import log_to

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    population_depth_files(
        models=snakemake.input.models,
        predictions=snakemake.input.predictions,
        seeds=snakemake.params.seeds,
        outs=snakemake.output.per_model,
        scores_out=snakemake.output.scores,
        data=snakemake.input.data,
        k=snakemake.params.k,
        probe_data=snakemake.params.probe_data,
        augment_cfg=snakemake.params.augment,
        mean=snakemake.params.norm["mean"],
        std=snakemake.params.norm["std"],
        device=snakemake.resources.device,
        batch=snakemake.resources.eval_batch_size,
        threads=snakemake.threads,
    )
