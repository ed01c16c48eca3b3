from peftsum import stages

with stages.guarded(snakemake.log[0]):
    stages.report(snakemake.config, snakemake.input.metrics, snakemake.params.run_dirs,
                  snakemake.params.eval_dirs, snakemake.input.model, snakemake.input.split_stats,
                  snakemake.input.tokenize_stats, snakemake.input.articles,
                  snakemake.output.md, snakemake.output.html, snakemake.input.significance,
                  snakemake.input.by_method,
                  snakemake.output.explorer)
