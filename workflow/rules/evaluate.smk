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


# A learning curve's run on the same test set and decoding as the full-size runs.
use rule evaluate as evaluate_size with:
    input:
        tokenized="results/data/tokenized/test.jsonl",
        split="results/data/split/test.jsonl",
        model=f"resources/models/{MODEL}",
        run="results/curve/n{size}/train/{method}/seed{seed}/run.json",
        weights="results/curve/n{size}/train/{method}/seed{seed}/trainable.safetensors",
    output:
        metrics="results/curve/n{size}/eval/{method}/seed{seed}/metrics.json",
        predictions="results/curve/n{size}/eval/{method}/seed{seed}/predictions.jsonl",
    log:
        "logs/evaluate/curve_n{size}_{method}_seed{seed}.log",
    benchmark:
        "benchmarks/evaluate/curve_n{size}_{method}_seed{seed}.tsv"


# A grid point's summaries of validation articles, for selection by ROUGE-L: the validation
# split only, decoded as the test evaluation is.
use rule evaluate as evaluate_point with:
    input:
        tokenized="results/data/select/validation_tokenized.jsonl",
        split="results/data/select/validation.jsonl",
        model=f"resources/models/{MODEL}",
        run="results/sweep/{method}/{point}/seed{seed}/run.json",
        weights="results/sweep/{method}/{point}/seed{seed}/trainable.safetensors",
    output:
        metrics="results/sweep/{method}/{point}/seed{seed}/validation/metrics.json",
        predictions="results/sweep/{method}/{point}/seed{seed}/validation/predictions.jsonl",
    log:
        "logs/evaluate/{method}_{point}_seed{seed}_validation.log",
    benchmark:
        "benchmarks/evaluate/{method}_{point}_seed{seed}_validation.tsv"
