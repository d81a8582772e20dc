"""Rule prepare_cifar10: one .npz with both splits of data.dataset."""

from typing import TYPE_CHECKING

from prunelens.data import prepare
from prunelens.runtime import log_to

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    prepare(
        snakemake.params.source,
        snakemake.input.archive,
        snakemake.output[0],
        sha256=snakemake.params.sha256,
        md5=snakemake.params.md5,
        subset_train=snakemake.params.subset_train,
        subset_test=snakemake.params.subset_test,
        dataset=snakemake.params.dataset,
    )
