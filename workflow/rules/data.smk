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
        expand("results/data/split/{split}.jsonl", split=SPLITS),
        stats="results/data/split/stats.json",
    log:
        "logs/split/split.log",
    benchmark:
        "benchmarks/split/split.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        sizes=peftsum_config.canonical(config["data"]["sizes"]),
        seed=config["data"]["seed"],
    script:
        "../scripts/split.py"


rule tokenize:
    input:
        expand("results/data/split/{split}.jsonl", split=SPLITS),
        model=f"resources/models/{MODEL}",
    output:
        expand("results/data/tokenized/{split}.jsonl", split=SPLITS),
        stats="results/data/tokenized/stats.json",
    log:
        "logs/tokenize/tokenize.log",
    benchmark:
        "benchmarks/tokenize/tokenize.tsv"
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
        split="results/data/split/test.jsonl",
        model=f"resources/models/{MODEL}",
    output:
        "results/data/tokenized_chat/test.jsonl",
    log:
        "logs/tokenize/tokenize_chat.log",
    benchmark:
        "benchmarks/tokenize/tokenize_chat.tsv"
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
        "results/data/tokenized/train.jsonl",
        "results/data/tokenized/validation.jsonl",
        stats="results/data/tokenized/stats.json",
    output:
        "results/data/subsets/n{size}/train.jsonl",
        "results/data/subsets/n{size}/validation.jsonl",
        stats="results/data/subsets/n{size}/stats.json",
    log:
        "logs/train_subset/n{size}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        seed=config["data"]["seed"],
    script:
        "../scripts/train_subset.py"


# The validation articles each grid point summarises when selection is by ROUGE-L.
rule validation_articles:
    input:
        tokenized="results/data/tokenized/validation.jsonl",
        split="results/data/split/validation.jsonl",
    output:
        tokenized="results/data/select/validation_tokenized.jsonl",
        split="results/data/select/validation.jsonl",
    log:
        "logs/validation_articles/validation_articles.log",
    conda:
        "../../envs/torch.yaml"
    params:
        n=SELECTION["validation_articles"],
    script:
        "../scripts/validation_articles.py"
