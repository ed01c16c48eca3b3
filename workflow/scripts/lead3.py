from pathlib import Path

from peftsum import stages

with stages.guarded(snakemake.log[0]):
    stages.lead3(snakemake.input.split, Path(snakemake.output.metrics).parent)
