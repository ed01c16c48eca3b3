from peftsum import stages
from peftsum.config import TemplateConfig

with stages.guarded(snakemake.log[0]):
    stages.tokenize_chat(snakemake.input.model, snakemake.input.split, snakemake.output[0],
                         TemplateConfig.from_dict(snakemake.params.template),
                         snakemake.params.reserved, snakemake.params.instruction)
