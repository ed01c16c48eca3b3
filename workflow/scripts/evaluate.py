from pathlib import Path

from peftsum import stages

trained = hasattr(snakemake.input, "weights")  # the zero-shot baseline has none
with stages.guarded(snakemake.log[0], snakemake.threads, snakemake.resources.gpu):
    stages.evaluate(snakemake.config, snakemake.input.model, snakemake.input.tokenized,
                    snakemake.input.split, Path(snakemake.output.metrics).parent,
                    method_name=snakemake.wildcards.method if trained else None,
                    weights=snakemake.input.weights if trained else None,
                    seed=int(snakemake.wildcards.seed) if trained else None,
                    baseline=snakemake.wildcards.get("baseline", "zero_shot"))
