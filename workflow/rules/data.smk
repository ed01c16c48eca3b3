rule download_model:
    output:
        directory("resources/models/{model}"),
    log:
        "logs/download_model/{model}.log",
    benchmark:
        "benchmarks/download_model/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        # The source's identity only: name, source and the keys that source reads.
        model=MODEL_IDENTITY,
    script:
        "../scripts/download_model.py"


rule download_data:
    output:
        expand("resources/data/{{dataset}}/{split}.jsonl", split=SPLITS),
    log:
        "logs/download_data/{dataset}.log",
    benchmark:
        "benchmarks/download_data/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        # Not sizes or seed: the sampling is split's; a new size never downloads again.
        data=DATA_IDENTITY,
    script:
        "../scripts/download_data.py"


rule split:
    input:
        expand("resources/data/{dataset}/{split}.jsonl", dataset=DATASET, split=SPLITS),
    output:
        expand("results/{{experiment}}/data/split/{split}.jsonl", split=SPLITS),
        stats="results/{experiment}/data/split/stats.json",
    log:
        "logs/{experiment}/split/split.log",
    benchmark:
        "benchmarks/{experiment}/split/split.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        sizes=peftsum_config.canonical(config["data"]["sizes"]),
        seed=config["data"]["seed"],
    script:
        "../scripts/split.py"


rule tokenize:
    input:
        expand("results/{{experiment}}/data/split/{split}.jsonl", split=SPLITS),
        model=f"resources/models/{MODEL}",
    output:
        expand("results/{{experiment}}/data/tokenized/{split}.jsonl", split=SPLITS),
        stats="results/{experiment}/data/tokenized/stats.json",
    log:
        "logs/{experiment}/tokenize/tokenize.log",
    benchmark:
        "benchmarks/{experiment}/tokenize/tokenize.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        template=TEMPLATE,
        # Room for the longest soft prompt: every method sees the same truncated text.
        reserved=RESERVED_POSITIONS,
    script:
        "../scripts/tokenize.py"


rule tokenize_chat:
    input:
        split="results/{experiment}/data/split/test.jsonl",
        model=f"resources/models/{MODEL}",
    output:
        "results/{experiment}/data/tokenized_chat/test.jsonl",
    log:
        "logs/{experiment}/tokenize/tokenize_chat.log",
    benchmark:
        "benchmarks/{experiment}/tokenize/tokenize_chat.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        template=TEMPLATE,
        reserved=RESERVED_POSITIONS,
        instruction=config["evaluation"]["chat_instruction"],
    script:
        "../scripts/tokenize_chat.py"


# A learning curve's training data: the first n of one seeded permutation of the training split
# (nested: each size inside every larger one); validation and stats are the full data's.
rule train_subset:
    input:
        "results/{experiment}/data/tokenized/train.jsonl",
        "results/{experiment}/data/tokenized/validation.jsonl",
        stats="results/{experiment}/data/tokenized/stats.json",
    output:
        "results/{experiment}/data/subsets/n{size}/train.jsonl",
        "results/{experiment}/data/subsets/n{size}/validation.jsonl",
        stats="results/{experiment}/data/subsets/n{size}/stats.json",
    log:
        "logs/{experiment}/train_subset/n{size}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        seed=config["data"]["seed"],
    script:
        "../scripts/train_subset.py"


# The validation articles each grid point summarises when selection is by ROUGE-L.
rule validation_articles:
    input:
        tokenized="results/{experiment}/data/tokenized/validation.jsonl",
        split="results/{experiment}/data/split/validation.jsonl",
    output:
        tokenized="results/{experiment}/data/select/validation_tokenized.jsonl",
        split="results/{experiment}/data/select/validation.jsonl",
    log:
        "logs/{experiment}/validation_articles/validation_articles.log",
    conda:
        "../../envs/torch.yaml"
    params:
        n=SELECTION["validation_articles"],
    script:
        "../scripts/validation_articles.py"
