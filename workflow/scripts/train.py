from pathlib import Path

from peftsum import stages

with stages.guarded(snakemake.log[0], snakemake.threads):
    stages.train(snakemake.config, snakemake.wildcards.method, int(snakemake.wildcards.seed),
                 snakemake.input.model, Path(snakemake.input[0]).parent,
                 Path(snakemake.output.run).parent)
