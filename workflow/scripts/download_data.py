from pathlib import Path

from peftsum import stages

with stages.guarded(snakemake.log[0]):
    stages.download_data(snakemake.params.data, Path(snakemake.output[0]).parent)
