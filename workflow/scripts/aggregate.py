from peftsum import stages

with stages.guarded(snakemake.log[0]):
    stages.aggregate(snakemake.params.eval_dirs, snakemake.params.run_dirs,
                     snakemake.output.tsv, snakemake.output.json)
