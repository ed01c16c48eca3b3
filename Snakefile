from snakemake.utils import min_version

min_version("9.0")


# The description at the top of `snakemake --report`.
report: "workflow/report/workflow.rst"


# A --configfile replaces the default config instead of being merged into it: merged, the
# default's methods would be added to those of every other config.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# A cluster profile still holding its placeholder partition stops every run here (dry runs
# too), before sbatch refuses the jobs one by one.
from snakemake.exceptions import WorkflowError
from peftsum.runtime.cluster import placeholder_partition

if _placeholder := placeholder_partition(workflow.resource_settings):
    raise WorkflowError(_placeholder)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/tracking.smk"


# What this experiment's outputs are of (results/<experiment>/experiment.json), checked at every
# start; written when jobs are about to run, never by a dry run.
onstart:
    peftsum_experiment.record(config)


rule all:
    input:
        expand(paths.REPORT_HTML, experiment=EXPERIMENT),
        expand(paths.TABLE_TSV, experiment=EXPERIMENT),
        # Tracking, where the config turns it on.
        expand(paths.TRACKED, experiment=EXPERIMENT) if TRACKING else [],
