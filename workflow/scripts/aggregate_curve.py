from peftsum import stages

with stages.guarded(snakemake.log[0]):
    stages.aggregate_curve(snakemake.input.metrics, snakemake.input.runs, snakemake.output.json,
                           snakemake.output.tsv)
