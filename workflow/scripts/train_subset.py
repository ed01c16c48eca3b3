from pathlib import Path

from peftsum import stages

with stages.guarded(snakemake.log[0]):
    stages.train_subset(Path(snakemake.input.stats).parent, Path(snakemake.output.stats).parent,
                        int(snakemake.wildcards.size), snakemake.params.seed)
