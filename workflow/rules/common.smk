from glob import glob

from snakemake.exceptions import WorkflowError

from peftsum import config as peftsum_config
from peftsum import methods as peftsum_methods
from peftsum.errors import UserError

# Validated once, at start: a typo fails in the first seconds with the key's name.
try:
    config.update(peftsum_config.validate(config))
    METHOD_LIST = peftsum_methods.all_from_config(config)
except UserError as err:
    raise WorkflowError(str(err)) from None

# Each rule's params hold exactly what its outputs depend on, in a canonical form (sorted keys,
# lists for tuples): Snakemake reruns a job whose params changed, compared by their repr, so a
# param holding more (every method, the list of seeds) or another key order would redo
# finished work.
METHODS = [m.name for m in METHOD_LIST]
METHOD_SPECS = {m.name: peftsum_config.canonical(m.hparams()) for m in METHOD_LIST}
RESERVED_POSITIONS = peftsum_methods.reserved_positions(METHOD_LIST)
TEMPLATE = peftsum_config.canonical(config["template"])
TRAINING = peftsum_config.training_params(config["training"])
DECODING = peftsum_config.decoding_params(config["evaluation"])
MODEL_IDENTITY = peftsum_config.model_identity(config["model"])
DATA_IDENTITY = peftsum_config.data_identity(config["data"])

SEEDS = config["training"]["seeds"]
THREADS = config["threads"]
SPLITS = ["train", "validation", "test"]
BASELINES = config["evaluation"]["baselines"]
MODEL = config["model"]["name"]
DATASET = config["data"]["name"]
# The report's templates and CSS are inputs: a changed one reruns render_report, nothing else.
REPORT_TEMPLATES = sorted(glob(f"{workflow.basedir}/report_templates/*"))


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
