from pathlib import Path

from peftsum import stages
from peftsum.config import TemplateConfig

with stages.guarded(snakemake.log[0]):
    stages.tokenize(snakemake.input.model, Path(snakemake.input[0]).parent,
                    Path(snakemake.output.stats).parent,
                    TemplateConfig.from_dict(snakemake.params.template), snakemake.params.reserved)
