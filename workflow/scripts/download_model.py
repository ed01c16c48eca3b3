from peftsum import stages

with stages.guarded(snakemake.log[0]):
    stages.download_model(snakemake.config, snakemake.output[0])
