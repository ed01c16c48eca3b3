rule download_model:
    output:
        directory("resources/models/{model}"),
    log:
        "logs/download_model/{model}.log",
    benchmark:
        "benchmarks/download_model/{model}.tsv",
    params:
        model=config["model"],
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/download_model.py"


rule download_data:
    output:
        expand("resources/data/{{dataset}}/{split}.jsonl", split=SPLITS),
    log:
        "logs/download_data/{dataset}.log",
    benchmark:
        "benchmarks/download_data/{dataset}.tsv",
    params:
        data=config["data"],
    conda:
        "../../envs/torch.yaml"
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
        "benchmarks/split/split.tsv",
    params:
        sizes=config["data"]["sizes"],
        seed=config["data"]["seed"],
    conda:
        "../../envs/torch.yaml"
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
        "benchmarks/tokenize/tokenize.tsv",
    params:
        template=config["template"],
        methods=config["methods"],
    conda:
        "../../envs/torch.yaml"
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
        "benchmarks/tokenize/tokenize_chat.tsv",
    params:
        template=config["template"],
        instruction=config["evaluation"]["chat_instruction"],
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/tokenize_chat.py"
