from peftsum import stages
from peftsum.training import sweep

with stages.guarded(snakemake.log[0]):
    sweep.select(snakemake.wildcards.method, snakemake.params.grid, snakemake.input.runs,
                 snakemake.output.grid, snakemake.output.chosen, snakemake.params.metric,
                 snakemake.input.validation)
