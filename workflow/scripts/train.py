from pathlib import Path

from peftsum import stages

with stages.guarded(snakemake.log[0], snakemake.threads, snakemake.resources.gpu) as lease:
    stages.train(snakemake.config, snakemake.wildcards.method, int(snakemake.wildcards.seed),
                 snakemake.input.model, Path(snakemake.input[0]).parent,
                 Path(snakemake.output.run).parent, snakemake.params.checkpoint_dir,
                 processes=max(1, len(lease.ids)))
