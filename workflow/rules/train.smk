rule train:
    input:
        # stats.json: the template and reserved positions, recorded in run.json for restoring.
        paths.split_file(paths.TOKENIZED, "train"),
        paths.split_file(paths.TOKENIZED, "validation"),
        stats=paths.stats(paths.TOKENIZED),
        model=paths.MODEL.format(model=MODEL),
        # A swept method's choice (nothing for a method without sweep): orders this job after
        # the select checkpoint; its content is the `chosen` param.
        chosen=selection,
    output:
        weights=paths.weights(paths.TRAIN_RUN),
        steps=paths.steps(paths.TRAIN_RUN),
        run=paths.run_json(paths.TRAIN_RUN),
    log:
        paths.log("train", "{method}_seed{seed}"),
    benchmark:
        paths.benchmark("train", "{method}_seed{seed}")
    # The longest jobs first: evaluations (shorter) then fill the cores while the last training
    # runs, instead of a training running alone at the end (seen in the demo: 90 s on 1 of 2 cores).
    priority: 1
    conda:
        "../../envs/torch.yaml"
    threads: THREADS
    resources:
        # GPUs per job (0 = CPU); a profile can raise it (set-resources: train: gpu: 2), which
        # turns the job into a torchrun data-parallel run over the leased GPUs.
        gpu=1,
    params:
        # This method's resolved hyperparameters (a swept method's: without the swept keys,
        # which come from `chosen`) and the shared training settings without the list of
        # seeds: adding a seed or another method retrains nothing that exists.
        method=lambda wc: METHOD_SPECS[wc.method],
        training=TRAINING,
        chosen=chosen_point,
        # Not an output: Snakemake deletes a failed job's outputs, and a restart resumes from here.
        checkpoint_dir=paths.CHECKPOINT,
    script:
        "../scripts/train.py"


# One grid point of a swept method: its own job, so points train in parallel or on SLURM.
use rule train as train_point with:
    input:
        paths.split_file(paths.TOKENIZED, "train"),
        paths.split_file(paths.TOKENIZED, "validation"),
        stats=paths.stats(paths.TOKENIZED),
        model=paths.MODEL.format(model=MODEL),
    output:
        weights=paths.weights(paths.SWEEP_RUN),
        steps=paths.steps(paths.SWEEP_RUN),
        run=paths.run_json(paths.SWEEP_RUN),
    log:
        paths.log("train", "{method}_{point}_seed{seed}"),
    benchmark:
        paths.benchmark("train", "{method}_{point}_seed{seed}")
    params:
        method=lambda wc: POINT_SPECS[wc.method][wc.point],
        training=TRAINING,
        chosen={},  # a grid point is its own choice
        checkpoint_dir=paths.SWEEP_CHECKPOINT,


# One point of a learning curve: a method with its chosen hyperparameters on a nested subset
# of the training split (results/data/subsets/n{size}/), with every seed.
use rule train as train_size with:
    input:
        paths.split_file(paths.SUBSET, "train"),
        paths.split_file(paths.SUBSET, "validation"),
        stats=paths.stats(paths.SUBSET),
        model=paths.MODEL.format(model=MODEL),
        chosen=selection,
    output:
        weights=paths.weights(paths.CURVE_RUN),
        steps=paths.steps(paths.CURVE_RUN),
        run=paths.run_json(paths.CURVE_RUN),
    log:
        paths.log("train", "curve_n{size}_{method}_seed{seed}"),
    benchmark:
        paths.benchmark("train", "curve_n{size}_{method}_seed{seed}")
    params:
        method=lambda wc: METHOD_SPECS[wc.method],
        training=TRAINING,
        chosen=chosen_hparams,
        checkpoint_dir=paths.CURVE_CHECKPOINT,


# Reads only the grid's run.json files (their validation losses) and, with selection by
# ROUGE-L, their summaries of validation articles: never the test split.
checkpoint select:
    input:
        runs=sweep_runs,
        validation=sweep_validation,
    output:
        grid=paths.SELECT_GRID,
        chosen=paths.SELECT_CHOSEN,
    log:
        paths.log("select", "{method}"),
    conda:
        "../../envs/report.yaml"
    params:
        grid=lambda wc: GRIDS[wc.method],
        metric=SELECTION["metric"],
    script:
        "../scripts/select.py"
