from pathlib import Path

from peftsum import stages

with stages.guarded(snakemake.log[0]):
    stages.split(Path(snakemake.input[0]).parent, Path(snakemake.output.stats).parent,
                 snakemake.params.sizes, snakemake.params.seed)
