rule train:
    input:
        "results/data/tokenized/train.jsonl",
        "results/data/tokenized/validation.jsonl",
        model=f"resources/models/{MODEL}",
    output:
        weights="results/train/{method}/seed{seed}/trainable.safetensors",
        steps="results/train/{method}/seed{seed}/steps.jsonl",
        run="results/train/{method}/seed{seed}/run.json",
    log:
        "logs/train/{method}_seed{seed}.log",
    benchmark:
        "benchmarks/train/{method}_seed{seed}.tsv"
    params:
        method=lambda wc: config["methods"][wc.method],
        training=config["training"],
    threads: 4
    resources:
        gpu=1,
    script:
        "../scripts/train.py"
