from peftsum import stages

with stages.guarded(snakemake.log[0]):
    stages.track(snakemake.params.tracking, snakemake.params.run_dirs, snakemake.params.eval_dirs,
                 [snakemake.input.report, snakemake.input.explorer], snakemake.output.tensorboard,
                 snakemake.output.record)
