rule evaluate:
    input:
        tokenized="results/data/tokenized/test.jsonl",
        split="results/data/split/test.jsonl",
        model=f"resources/models/{MODEL}",
        # run.json names the method and its hyperparameters: the config is not read again.
        run="results/train/{method}/seed{seed}/run.json",
        weights="results/train/{method}/seed{seed}/trainable.safetensors",
    output:
        metrics="results/eval/{method}/seed{seed}/metrics.json",
        predictions="results/eval/{method}/seed{seed}/predictions.jsonl",
    log:
        "logs/evaluate/{method}_seed{seed}.log",
    benchmark:
        "benchmarks/evaluate/{method}_seed{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: THREADS
    resources:
        gpu=1,
    params:
        decoding=DECODING,
    script:
        "../scripts/evaluate.py"


rule evaluate_zero_shot:
    input:
        tokenized=zero_shot_tokens,
        split="results/data/split/test.jsonl",
        model=f"resources/models/{MODEL}",
    output:
        metrics="results/eval/{baseline}/metrics.json",
        predictions="results/eval/{baseline}/predictions.jsonl",
    log:
        "logs/evaluate/{baseline}.log",
    benchmark:
        "benchmarks/evaluate/{baseline}.tsv"
    wildcard_constraints:
        baseline="zero_shot|zero_shot_chat",
    conda:
        "../../envs/torch.yaml"
    threads: THREADS
    resources:
        gpu=1,
    params:
        decoding=DECODING,
    script:
        "../scripts/evaluate.py"


rule evaluate_lead3:
    input:
        split="results/data/split/test.jsonl",
    output:
        metrics="results/eval/lead3/metrics.json",
        predictions="results/eval/lead3/predictions.jsonl",
    log:
        "logs/evaluate/lead3.log",
    benchmark:
        "benchmarks/evaluate/lead3.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/lead3.py"
