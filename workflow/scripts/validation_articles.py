from peftsum import stages

with stages.guarded(snakemake.log[0]):
    stages.validation_articles(snakemake.input.tokenized, snakemake.input.split,
                               snakemake.params.n, snakemake.output.tokenized,
                               snakemake.output.split)
