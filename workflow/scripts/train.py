from pathlib import Path

from peftsum import methods, stages
from peftsum.config import TrainingConfig
from peftsum.training import sweep

chosen = snakemake.params.get("chosen")  # a swept method's final run: the chosen point
with stages.guarded(snakemake.log[0], snakemake.threads, snakemake.resources.gpu) as lease:
    stages.train(methods.from_config(snakemake.wildcards.method,
                                     sweep.with_selection(snakemake.params.method, chosen)),
                 TrainingConfig.from_dict(snakemake.params.training),
                 int(snakemake.wildcards.seed), snakemake.input.model,
                 Path(snakemake.input.stats).parent, Path(snakemake.output.run).parent,
                 snakemake.params.checkpoint_dir, processes=max(1, len(lease.ids)))
