"""Hyperparameter sweeps: a method entry's `sweep:` lists become grid points, one training job
each with a selection seed of their own, and the point chosen on validation (loss, or ROUGE-L)
trains afresh with every training seed and is evaluated on test.

No torch here: the workflow expands the grid while it builds the DAG, and selection reads only
the sweep runs' run.json (validation losses) and their summaries of validation articles, never
anything of the test split.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from peftsum import records
from peftsum.config import safe_folder_name
from peftsum.errors import UserError
from peftsum.files import write_json


def split_spec(name: str, spec: dict) -> tuple[dict, dict]:
    """(the entry without `sweep`, its sweep lists); a sweep value must be a non-empty list."""
    spec = dict(spec)
    sweep = spec.pop("sweep", None) or {}
    if not isinstance(sweep, dict):
        raise UserError(f"config: methods.{name}.sweep must map hyperparameters to lists")
    for key, values in sweep.items():
        if key == "kind":
            raise UserError(f"config: methods.{name}.sweep cannot sweep 'kind'")
        if not isinstance(values, list) or not values:
            raise UserError(f"config: methods.{name}.sweep.{key} must be a non-empty list, "
                            f"got {values!r}")
        _check_values(f"methods.{name}.sweep.{key}", key, values)
    return spec, sweep


def _check_values(where: str, key: str, values: list) -> None:
    """Each value names a grid point's folder (results/.../sweep/<method>/<point>/): one folder
    name; and no value twice, which would train the same point twice under two names."""
    seen = {}
    for value in values:
        safe_folder_name(point_name({key: value}), f"{where}'s grid point {value!r}")
        same = json.dumps(_as_read(value), sort_keys=True)
        if same in seen:
            raise UserError(f"config: {where} lists one value twice: {seen[same]!r} and {value!r}")
        seen[same] = value


def _as_read(value):
    """The value a method's check reads: '1e-3' (text to YAML 1.1), 1e-3 and 0.001 are one."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def selection_seed(selection: dict, seeds: list[int]) -> int:
    """The seed every grid point trains with: selection.seed, or one above the largest of
    training.seeds. Never one of training.seeds: a final run that shared its seed with the
    grid's winner would be the run picked for its validation luck."""
    seed = selection.get("seed")
    if seed is None:
        return max(seeds) + 1
    if seed in seeds:
        raise UserError(f"config: selection.seed {seed} is one of training.seeds {seeds}; the "
                        "grid needs a seed of its own so that no final run is the grid's winner")
    return seed


def point_name(overrides: dict) -> str:
    """A readable folder name: lr=0.001,r=16 (keys sorted)."""
    return ",".join(f"{key}={overrides[key]}" for key in sorted(overrides))


def points(sweep: dict) -> dict[str, dict]:
    """Every combination of the sweep's lists, by point name, in the lists' order."""
    keys = sorted(sweep)
    grid = [dict(zip(keys, values)) for values in itertools.product(*(sweep[k] for k in keys))]
    return {point_name(p): p for p in grid}


def with_selection(spec: dict, chosen: dict | None) -> dict:
    """The method entry with the chosen point's hyperparameters (a swept method's final runs);
    chosen: the content of select's choice file."""
    if not chosen:
        return spec
    return {**spec, **chosen["chosen_hparams"]}


def select(method: str, grid: dict[str, dict], runs: list[str | Path], out: Path,
           out_chosen: Path, metric: str = "val_loss",
           validation: list[str | Path] = ()) -> dict:
    """Choose the point with the lowest best validation loss (metric val_loss) or the highest
    validation ROUGE-L (metric rougeL: `validation` holds each point's metrics.json of its
    summaries of validation articles); write the whole grid to `out` and the choice alone to
    `out_chosen` (what the final runs depend on: a new point that does not win leaves it as it
    was); return the selection.

    grid: point name -> hyperparameters; runs (and validation): each point's file in the
    grid's order.
    """
    if len(runs) != len(grid) or (metric == "rougeL" and len(validation) != len(grid)):
        raise ValueError(f"{len(runs)} runs, {len(validation)} validation evaluations for "
                         f"{len(grid)} grid points of {method}")
    rows = []
    for i, ((name, hparams), run_json) in enumerate(zip(grid.items(), runs)):
        run = records.read_run(run_json, needs=("best", "seed"))
        row = {"point": name, "hparams": hparams, "val_loss": run.best["val_loss"],
               "best_step": run.best["step"], "seed": run.seed,
               "run": str(Path(run_json).parent)}
        if metric == "rougeL":
            scored = records.read_metrics(validation[i], needs=("rougeL", "n_test"))
            row.update(val_rougeL=scored.rougeL, val_articles=scored.n_test)
        rows.append(row)
    key = "val_rougeL" if metric == "rougeL" else "val_loss"
    scored = [r for r in rows if r[key] is not None]
    if not scored:
        what = "ROUGE-L" if metric == "rougeL" else "loss"
        raise UserError(f"no sweep point of {method} recorded a validation {what}")
    best = max if metric == "rougeL" else min
    chosen = best(scored, key=lambda r: r[key])
    choice = {"method": method, "chosen": chosen["point"], "chosen_hparams": chosen["hparams"],
              "chosen_run": chosen["run"], "chosen_seed": chosen["seed"]}
    selection = {**choice, "metric": metric, "points": rows}
    write_json(out, selection)
    write_json(out_chosen, choice)
    return selection
