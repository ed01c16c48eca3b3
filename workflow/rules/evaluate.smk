rule evaluate:
    input:
        tokenized="results/{experiment}/data/tokenized/test.jsonl",
        split="results/{experiment}/data/split/test.jsonl",
        model=f"resources/models/{MODEL}",
        # run.json names the method and its hyperparameters: the config is not read again.
        run="results/{experiment}/train/{method}/seed{seed}/run.json",
        weights="results/{experiment}/train/{method}/seed{seed}/trainable.safetensors",
    output:
        metrics="results/{experiment}/eval/{method}/seed{seed}/metrics.json",
        predictions="results/{experiment}/eval/{method}/seed{seed}/predictions.jsonl",
    log:
        "logs/{experiment}/evaluate/{method}_seed{seed}.log",
    benchmark:
        "benchmarks/{experiment}/evaluate/{method}_seed{seed}.tsv"
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
        split="results/{experiment}/data/split/test.jsonl",
        model=f"resources/models/{MODEL}",
    output:
        metrics="results/{experiment}/eval/{baseline}/metrics.json",
        predictions="results/{experiment}/eval/{baseline}/predictions.jsonl",
    log:
        "logs/{experiment}/evaluate/{baseline}.log",
    benchmark:
        "benchmarks/{experiment}/evaluate/{baseline}.tsv"
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
        split="results/{experiment}/data/split/test.jsonl",
    output:
        metrics="results/{experiment}/eval/lead3/metrics.json",
        predictions="results/{experiment}/eval/lead3/predictions.jsonl",
    log:
        "logs/{experiment}/evaluate/lead3.log",
    benchmark:
        "benchmarks/{experiment}/evaluate/lead3.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/lead3.py"


# A learning curve's run on the same test set and decoding as the full-size runs.
use rule evaluate as evaluate_size with:
    input:
        tokenized="results/{experiment}/data/tokenized/test.jsonl",
        split="results/{experiment}/data/split/test.jsonl",
        model=f"resources/models/{MODEL}",
        run="results/{experiment}/curve/n{size}/train/{method}/seed{seed}/run.json",
        weights="results/{experiment}/curve/n{size}/train/{method}/seed{seed}/trainable.safetensors",
    output:
        metrics="results/{experiment}/curve/n{size}/eval/{method}/seed{seed}/metrics.json",
        predictions="results/{experiment}/curve/n{size}/eval/{method}/seed{seed}/predictions.jsonl",
    log:
        "logs/{experiment}/evaluate/curve_n{size}_{method}_seed{seed}.log",
    benchmark:
        "benchmarks/{experiment}/evaluate/curve_n{size}_{method}_seed{seed}.tsv"


# A grid point's summaries of validation articles, for selection by ROUGE-L: the validation
# split only, decoded as the test evaluation is.
use rule evaluate as evaluate_point with:
    input:
        tokenized="results/{experiment}/data/select/validation_tokenized.jsonl",
        split="results/{experiment}/data/select/validation.jsonl",
        model=f"resources/models/{MODEL}",
        run="results/{experiment}/sweep/{method}/{point}/seed{seed}/run.json",
        weights="results/{experiment}/sweep/{method}/{point}/seed{seed}/trainable.safetensors",
    output:
        metrics="results/{experiment}/sweep/{method}/{point}/seed{seed}/validation/metrics.json",
        predictions="results/{experiment}/sweep/{method}/{point}/seed{seed}/validation/predictions.jsonl",
    log:
        "logs/{experiment}/evaluate/{method}_{point}_seed{seed}_validation.log",
    benchmark:
        "benchmarks/{experiment}/evaluate/{method}_{point}_seed{seed}_validation.tsv"
