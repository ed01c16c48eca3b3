from snakemake.exceptions import WorkflowError

from peftsum import config as peftsum_config
from peftsum import methods as peftsum_methods
from peftsum.errors import UserError

# Validated once, at start: a typo fails in the first second with the key's name.
try:
    config.update(peftsum_config.validate(config))
    METHODS = [m.name for m in peftsum_methods.all_from_config(config)]
except UserError as err:
    raise WorkflowError(str(err)) from None

SEEDS = config["training"]["seeds"]
THREADS = config["threads"]
SPLITS = ["train", "validation", "test"]
BASELINES = config["evaluation"]["baselines"]
MODEL = config["model"]["name"]
DATASET = config["data"]["name"]
TRACKING = config["tracking"]["tensorboard"] or config["tracking"]["mlflow"]


wildcard_constraints:
    method="|".join(METHODS),
    seed=r"\d+",
    split="|".join(SPLITS),
    model=MODEL,
    dataset=DATASET,
    baseline="|".join(["zero_shot", "zero_shot_chat", "lead3"]),


def trained_runs():
    return expand("results/train/{method}/seed{seed}", method=METHODS, seed=SEEDS)


def evaluations():
    trained = expand("results/eval/{method}/seed{seed}", method=METHODS, seed=SEEDS)
    return trained + expand("results/eval/{baseline}", baseline=BASELINES)


def zero_shot_tokens(wildcards):
    """The test set in the shared template, or in the model's chat template for zero_shot_chat."""
    if wildcards.baseline == "zero_shot_chat":
        return "results/data/tokenized_chat/test.jsonl"
    return "results/data/tokenized/test.jsonl"
