from pathlib import Path

from peftsum import methods, stages
from peftsum.config import TrainingConfig

with stages.guarded(snakemake.log[0], snakemake.threads, snakemake.resources.gpu) as lease:
    stages.train(methods.from_config(snakemake.wildcards.method, snakemake.params.method),
                 TrainingConfig.from_dict(snakemake.params.training),
                 int(snakemake.wildcards.seed), snakemake.input.model,
                 Path(snakemake.input.stats).parent, Path(snakemake.output.run).parent,
                 snakemake.params.checkpoint_dir, processes=max(1, len(lease.ids)))
