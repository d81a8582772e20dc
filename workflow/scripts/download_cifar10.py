"""Rule download_cifar10: the official archive, md5-checked, retried in a bound."""

from typing import TYPE_CHECKING

from prunelens.data import download
from prunelens.runtime import log_to

if TYPE_CHECKING:
    from snakemake.script import snakemake

with log_to(snakemake.log[0], snakemake.output):
    download(
        snakemake.params.url,
        snakemake.output[0],
        md5=snakemake.params.md5,
        deadline=float(snakemake.resources.download_timeout),
    )
