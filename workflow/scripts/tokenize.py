from pathlib import Path

from peftsum import stages

with stages.guarded(snakemake.log[0]):
    stages.tokenize(snakemake.config, snakemake.input.model, Path(snakemake.input[0]).parent,
                    Path(snakemake.output.stats).parent)
