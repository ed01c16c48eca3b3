import json
import os
import re
from glob import glob
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config

from peftsum import config as peftsum_config
from peftsum import experiment as peftsum_experiment
from peftsum import methods as peftsum_methods
from peftsum import paths
from peftsum.training import sweep as peftsum_sweep
from peftsum.errors import UserError

# Validated once, at start: a typo fails in the first seconds with the key's name.
# A method entry with `sweep:` lists is a grid: each point trains (seed: selection.seed, never one
# of training.seeds) under results/<experiment>/sweep/, the select checkpoint picks one on
# validation, and only that point trains afresh with every seed and is evaluated on test.
try:
    # Snakemake's YAML reader keeps the last of two equal keys (a method written twice).
    for _path in workflow.configfiles:
        peftsum_config.read_yaml(_path)
    # Snakemake leaves every value of a nested --config override a string.
    update_config(
        config, peftsum_config.typed_overrides(workflow.config_settings.config)
    )
    config.update(peftsum_config.validate(config))
    # Outputs of another model or data under this experiment's name are refused, with or
    # without Snakemake's records in .snakemake/ (a copied project has none).
    peftsum_experiment.check(config)
    BASE_SPECS, GRIDS = {}, {}
    for _name, _spec in config["methods"].items():
        BASE_SPECS[_name], _sweep = peftsum_sweep.split_spec(_name, _spec)
        if _sweep:
            GRIDS[_name] = peftsum_sweep.points(_sweep)
    METHOD_LIST = [peftsum_methods.from_config(n, s) for n, s in BASE_SPECS.items()]
    POINT_METHODS = {
        name: {
            p: peftsum_methods.from_config(name, {**BASE_SPECS[name], **v})
            for p, v in grid.items()
        }
        for name, grid in GRIDS.items()
    }
    # The grid's own seed, never one of training.seeds: every final run trains afresh.
    SELECTION_SEED = peftsum_sweep.selection_seed(
        config["selection"], config["training"]["seeds"]
    )
except UserError as err:
    raise WorkflowError(str(err)) from None

# Each rule's params hold exactly what its outputs depend on, in a canonical form (sorted keys,
# lists for tuples): Snakemake reruns a job whose params changed, compared by their repr, so a
# param holding more (every method, the list of seeds) or another key order would redo
# finished work.
METHODS = [m.name for m in METHOD_LIST]
METHOD_SPECS = {m.name: peftsum_config.canonical(m.hparams()) for m in METHOD_LIST}
POINT_SPECS = {
    name: {p: peftsum_config.canonical(m.hparams()) for p, m in points.items()}
    for name, points in POINT_METHODS.items()
}
RESERVED_POSITIONS = peftsum_methods.reserved_positions(
    METHOD_LIST + [m for points in POINT_METHODS.values() for m in points.values()]
)
TEMPLATE = peftsum_config.canonical(config["template"])
TRAINING = peftsum_config.training_params(config["training"])
DECODING = peftsum_config.decoding_params(config["evaluation"])
MODEL_IDENTITY = peftsum_config.model_identity(config["model"])
DATA_IDENTITY = peftsum_config.data_identity(config["data"])

# Every output of this config lies under results/<experiment>/ (logs/, benchmarks/ alike): the
# rules' {experiment} wildcard matches this config's name only, so another config's outputs are
# never planned or read.
EXPERIMENT = config["experiment"]
SEEDS = config["training"]["seeds"]
# Learning curves: every method again at each smaller training size (nested subsets).
TRAIN_SIZES = config["data"]["train_sizes"]
SELECTION = config["selection"]
# Baselines that generate with the model (lead3 needs none).
MODEL_BASELINES = ["zero_shot", "zero_shot_chat"]
# threads: auto shares this machine's cores among the model jobs that can run at once: every
# training run with the model baselines (which need no training), then as many evaluations,
# or a sweep's grid points. A cluster's job has its cores to itself.
THREADS = peftsum_config.job_threads(
    config["threads"],
    (
        workflow.resource_settings.cores
        if workflow.local_exec and workflow.is_main_process
        else None
    ),
    max(
        len(METHODS) * len(SEEDS) * (1 + len(TRAIN_SIZES))
        + len(set(config["evaluation"]["baselines"]) & set(MODEL_BASELINES)),
        sum(len(grid) for grid in GRIDS.values()),
    ),
)
SPLITS = ["train", "validation", "test"]
BASELINES = config["evaluation"]["baselines"]
MODEL = config["model"]["name"]
DATASET = config["data"]["name"]
# The report's templates and CSS are inputs: a changed one reruns render_report, nothing else.
# Relative to the working directory: a project moved as a whole keeps the same input paths,
# and so reruns nothing.
REPORT_TEMPLATES = sorted(
    os.path.relpath(p)
    for p in glob(f"{workflow.basedir}/src/peftsum/report/templates/*")
)
TRACKING = config["tracking"]["tensorboard"] or config["tracking"]["mlflow"]


wildcard_constraints:
    experiment=re.escape(EXPERIMENT),
    method="|".join(METHODS),
    point="|".join(re.escape(p) for grid in GRIDS.values() for p in grid) or "^$",
    seed=r"\d+",
    size=r"\d+",
    split="|".join(SPLITS),
    model=MODEL,
    dataset=DATASET,
    baseline="|".join(MODEL_BASELINES + ["lead3"]),


def trained_runs():
    return expand(paths.TRAIN_RUN, experiment=EXPERIMENT, method=METHODS, seed=SEEDS)


def trained_evaluations():
    return expand(paths.EVALUATION, experiment=EXPERIMENT, method=METHODS, seed=SEEDS)


def evaluations():
    return trained_evaluations() + expand(
        paths.BASELINE, experiment=EXPERIMENT, baseline=BASELINES
    )


def curve_runs():
    return expand(
        paths.CURVE_RUN,
        experiment=EXPERIMENT,
        size=TRAIN_SIZES,
        method=METHODS,
        seed=SEEDS,
    )


def curve_evaluations():
    """Each learning-curve run's evaluation, then the full-size runs' (the curve's last point)."""
    smaller = expand(
        paths.CURVE_EVALUATION,
        experiment=EXPERIMENT,
        size=TRAIN_SIZES,
        method=METHODS,
        seed=SEEDS,
    )
    return smaller + trained_evaluations()


def curve_trained_runs():
    """The training runs of curve_evaluations(), in the same order."""
    return curve_runs() + trained_runs()


def zero_shot_tokens(wildcards):
    """The test set in the shared template, or in the model's chat template for zero_shot_chat."""
    if wildcards.baseline == "zero_shot_chat":
        return paths.TOKENIZED_CHAT_TEST.format(experiment=wildcards.experiment)
    return paths.split_file(paths.TOKENIZED, "test").format(
        experiment=wildcards.experiment
    )


def grid_folders(wildcards, pattern):
    """pattern (SWEEP_RUN or inside it) for every grid point of a swept method, trained with
    the selection seed."""
    return expand(
        pattern,
        experiment=wildcards.experiment,
        method=wildcards.method,
        point=list(GRIDS[wildcards.method]),
        seed=SELECTION_SEED,
    )


def sweep_runs(wildcards):
    """The run.json of every grid point of a swept method."""
    return [paths.run_json(p) for p in grid_folders(wildcards, paths.SWEEP_RUN)]


def sweep_validation(wildcards):
    """Each grid point's summaries of validation articles, where selection is by ROUGE-L."""
    if SELECTION["metric"] != "rougeL":
        return []
    return [
        paths.metrics_json(p) for p in grid_folders(wildcards, paths.SWEEP_VALIDATION)
    ]


def selection(wildcards):
    """A swept method's choice file, once the select checkpoint has run. ancient(): the file is
    written anew each time select runs; what the final runs depend on is its content, which
    reaches them as the `chosen` param, so a new grid point that does not win retrains none.
    """
    if wildcards.method not in GRIDS:
        return []
    return ancient(
        checkpoints.select.get(
            experiment=wildcards.experiment, method=wildcards.method
        ).output.chosen
    )


def chosen_point(wildcards):
    """The choice itself (point, hyperparameters, the sweep's run): the train rule's param."""
    if wildcards.method not in GRIDS:
        return {}
    path = checkpoints.select.get(
        experiment=wildcards.experiment, method=wildcards.method
    ).output.chosen
    return peftsum_config.canonical(json.loads(Path(path).read_text()))


def chosen_hparams(wildcards):
    """A learning curve's run depends on the chosen hyperparameters only (its data differ from
    the sweep's run, which it never copies)."""
    chosen = chosen_point(wildcards)
    return {k: chosen[k] for k in ("chosen", "chosen_hparams", "method") if k in chosen}
