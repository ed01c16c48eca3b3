from pathlib import Path

from peftsum import stages

with stages.guarded(snakemake.log[0]):
    stages.report(snakemake.input.metrics, snakemake.input.significance,
                  snakemake.input.by_method, snakemake.input.runs, snakemake.input.predictions,
                  snakemake.input.model, snakemake.input.split_stats,
                  snakemake.input.tokenize_stats, snakemake.input.articles,
                  Path(snakemake.input.templates[0]).parent, snakemake.params.data,
                  snakemake.output.md, snakemake.output.html, snakemake.output.explorer,
                  snakemake.input.selections, next(iter(snakemake.input.curve), None))
