rule train:
    input:
        # stats.json: the template and reserved positions, recorded in run.json for restoring.
        "results/{experiment}/data/tokenized/train.jsonl",
        "results/{experiment}/data/tokenized/validation.jsonl",
        stats="results/{experiment}/data/tokenized/stats.json",
        model=f"resources/models/{MODEL}",
        # A swept method's choice (nothing for a method without sweep): orders this job after
        # the select checkpoint; its content is the `chosen` param.
        chosen=selection,
    output:
        weights="results/{experiment}/train/{method}/seed{seed}/trainable.safetensors",
        steps="results/{experiment}/train/{method}/seed{seed}/steps.jsonl",
        run="results/{experiment}/train/{method}/seed{seed}/run.json",
    log:
        "logs/{experiment}/train/{method}_seed{seed}.log",
    benchmark:
        "benchmarks/{experiment}/train/{method}_seed{seed}.tsv"
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
        checkpoint_dir="results/{experiment}/checkpoints/{method}/seed{seed}",
    script:
        "../scripts/train.py"


# One grid point of a swept method: its own job, so points train in parallel or on SLURM.
use rule train as train_point with:
    input:
        "results/{experiment}/data/tokenized/train.jsonl",
        "results/{experiment}/data/tokenized/validation.jsonl",
        stats="results/{experiment}/data/tokenized/stats.json",
        model=f"resources/models/{MODEL}",
    output:
        weights="results/{experiment}/sweep/{method}/{point}/seed{seed}/trainable.safetensors",
        steps="results/{experiment}/sweep/{method}/{point}/seed{seed}/steps.jsonl",
        run="results/{experiment}/sweep/{method}/{point}/seed{seed}/run.json",
    log:
        "logs/{experiment}/train/{method}_{point}_seed{seed}.log",
    benchmark:
        "benchmarks/{experiment}/train/{method}_{point}_seed{seed}.tsv"
    params:
        method=lambda wc: POINT_SPECS[wc.method][wc.point],
        training=TRAINING,
        chosen={},  # a grid point is its own choice
        checkpoint_dir="results/{experiment}/checkpoints/sweep/{method}/{point}/seed{seed}",


# One point of a learning curve: a method with its chosen hyperparameters on a nested subset
# of the training split (results/data/subsets/n{size}/), with every seed.
use rule train as train_size with:
    input:
        "results/{experiment}/data/subsets/n{size}/train.jsonl",
        "results/{experiment}/data/subsets/n{size}/validation.jsonl",
        stats="results/{experiment}/data/subsets/n{size}/stats.json",
        model=f"resources/models/{MODEL}",
        chosen=selection,
    output:
        weights="results/{experiment}/curve/n{size}/train/{method}/seed{seed}/trainable.safetensors",
        steps="results/{experiment}/curve/n{size}/train/{method}/seed{seed}/steps.jsonl",
        run="results/{experiment}/curve/n{size}/train/{method}/seed{seed}/run.json",
    log:
        "logs/{experiment}/train/curve_n{size}_{method}_seed{seed}.log",
    benchmark:
        "benchmarks/{experiment}/train/curve_n{size}_{method}_seed{seed}.tsv"
    params:
        method=lambda wc: METHOD_SPECS[wc.method],
        training=TRAINING,
        chosen=chosen_hparams,
        checkpoint_dir="results/{experiment}/checkpoints/curve/n{size}/{method}/seed{seed}",


# Reads only the grid's run.json files (their validation losses) and, with selection by
# ROUGE-L, their summaries of validation articles: never the test split.
checkpoint select:
    input:
        runs=sweep_runs,
        validation=sweep_validation,
    output:
        grid="results/{experiment}/select/{method}.json",
        chosen="results/{experiment}/select/{method}.chosen.json",
    log:
        "logs/{experiment}/select/{method}.log",
    conda:
        "../../envs/report.yaml"
    params:
        grid=lambda wc: GRIDS[wc.method],
        metric=SELECTION["metric"],
    script:
        "../scripts/select.py"
