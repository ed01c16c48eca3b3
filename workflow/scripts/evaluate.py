from pathlib import Path

from peftsum import stages
from peftsum.config import EvalConfig

trained = hasattr(snakemake.input, "run")  # the zero-shot baselines have none
with stages.guarded(snakemake.log[0], snakemake.threads, snakemake.resources.gpu):
    stages.evaluate(snakemake.input.model, snakemake.input.tokenized, snakemake.input.split,
                    Path(snakemake.output.metrics).parent,
                    EvalConfig.from_dict(snakemake.params.decoding),
                    run_dir=Path(snakemake.input.run).parent if trained else None,
                    baseline=snakemake.wildcards.get("baseline", "zero_shot"))
