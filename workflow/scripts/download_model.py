from peftsum import stages

with stages.guarded(snakemake.log[0]):
    stages.download_model(snakemake.params.model, snakemake.output[0])
