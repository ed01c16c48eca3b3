rule train:
    input:
        "results/data/tokenized/train.jsonl",
        "results/data/tokenized/validation.jsonl",
        model=f"resources/models/{MODEL}",
    output:
        weights="results/train/{method}/seed{seed}/trainable.safetensors",
        steps="results/train/{method}/seed{seed}/steps.jsonl",
        run="results/train/{method}/seed{seed}/run.json",
        run_info="results/train/{method}/seed{seed}/run_info.json",
    log:
        "logs/train/{method}_seed{seed}.log",
    benchmark:
        "benchmarks/train/{method}_seed{seed}.tsv"
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
        method=lambda wc: config["methods"][wc.method],
        training=config["training"],
        # Not an output: Snakemake deletes a failed job's outputs, and a restart resumes from here.
        checkpoint_dir="results/checkpoints/{method}/seed{seed}",
    script:
        "../scripts/train.py"
