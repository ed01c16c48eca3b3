rule download_model:
    output:
        directory(paths.MODEL),
    log:
        paths.download_log("download_model", "{model}"),
    benchmark:
        paths.download_benchmark("download_model", "{model}")
    conda:
        "../../envs/torch.yaml"
    params:
        # The source's identity only: name, source and the keys that source reads.
        model=MODEL_IDENTITY,
    script:
        "../scripts/download_model.py"


rule download_data:
    output:
        expand(paths.SOURCE_SPLIT, split=SPLITS, allow_missing=True),
    log:
        paths.download_log("download_data", "{dataset}"),
    benchmark:
        paths.download_benchmark("download_data", "{dataset}")
    conda:
        "../../envs/torch.yaml"
    params:
        # Not sizes or seed: the sampling is split's; a new size never downloads again.
        data=DATA_IDENTITY,
    script:
        "../scripts/download_data.py"


rule split:
    input:
        expand(paths.SOURCE_SPLIT, dataset=DATASET, split=SPLITS),
    output:
        expand(paths.split_file(paths.SPLIT), split=SPLITS, allow_missing=True),
        stats=paths.stats(paths.SPLIT),
    log:
        paths.log("split", "split"),
    benchmark:
        paths.benchmark("split", "split")
    conda:
        "../../envs/torch.yaml"
    params:
        sizes=peftsum_config.canonical(config["data"]["sizes"]),
        seed=config["data"]["seed"],
    script:
        "../scripts/split.py"


rule tokenize:
    input:
        expand(paths.split_file(paths.SPLIT), split=SPLITS, allow_missing=True),
        model=paths.MODEL.format(model=MODEL),
    output:
        expand(paths.split_file(paths.TOKENIZED), split=SPLITS, allow_missing=True),
        stats=paths.stats(paths.TOKENIZED),
    log:
        paths.log("tokenize", "tokenize"),
    benchmark:
        paths.benchmark("tokenize", "tokenize")
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
        split=paths.split_file(paths.SPLIT, "test"),
        model=paths.MODEL.format(model=MODEL),
    output:
        paths.TOKENIZED_CHAT_TEST,
    log:
        paths.log("tokenize", "tokenize_chat"),
    benchmark:
        paths.benchmark("tokenize", "tokenize_chat")
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
        paths.split_file(paths.TOKENIZED, "train"),
        paths.split_file(paths.TOKENIZED, "validation"),
        stats=paths.stats(paths.TOKENIZED),
    output:
        paths.split_file(paths.SUBSET, "train"),
        paths.split_file(paths.SUBSET, "validation"),
        stats=paths.stats(paths.SUBSET),
    log:
        paths.log("train_subset", "n{size}"),
    conda:
        "../../envs/torch.yaml"
    params:
        seed=config["data"]["seed"],
    script:
        "../scripts/train_subset.py"


# The validation articles each grid point summarises when selection is by ROUGE-L.
rule validation_articles:
    input:
        tokenized=paths.split_file(paths.TOKENIZED, "validation"),
        split=paths.split_file(paths.SPLIT, "validation"),
    output:
        tokenized=paths.SELECT_TOKENIZED,
        split=paths.SELECT_SPLIT,
    log:
        paths.log("validation_articles", "validation_articles"),
    conda:
        "../../envs/torch.yaml"
    params:
        n=SELECTION["validation_articles"],
    script:
        "../scripts/validation_articles.py"
