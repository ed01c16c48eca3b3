from peftsum import stages

with stages.guarded(snakemake.log[0]):
    stages.aggregate(snakemake.input.metrics, snakemake.input.predictions, snakemake.input.runs,
                     dict(snakemake.output.items()))
