from peftsum import stages

with stages.guarded(snakemake.log[0]):
    stages.tokenize_chat(snakemake.config, snakemake.input.model, snakemake.input.split,
                         snakemake.output[0])
