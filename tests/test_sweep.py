"""Sweeps: the grid a method entry's `sweep:` lists make, the selection by validation loss
(from the sweep runs' run.json alone), the grid's own seed, and final runs trained afresh."""

import itertools
import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import SMOKE_RESULTS, snakemake
from test_reruns import job_counts

from peftsum.errors import UserError
from peftsum.files import read_jsonl
from peftsum.training import sweep

ROOT = Path(__file__).resolve().parents[1]


def test_points_are_every_combination_with_readable_names():
    grid = sweep.points({"r": [8, 16], "lr": [0.0003, 0.001]})
    assert list(grid) == ["lr=0.0003,r=8", "lr=0.0003,r=16", "lr=0.001,r=8", "lr=0.001,r=16"]
    assert grid["lr=0.001,r=16"] == {"lr": 0.001, "r": 16}


@pytest.mark.parametrize("bad, message", [
    ({"lr": 0.001}, "sweep.lr must be a non-empty list"),
    ({"lr": []}, "sweep.lr must be a non-empty list"),
    ({"kind": ["lora"]}, "cannot sweep 'kind'"),
    # A grid point's name is a folder: a '/' would aim it at another run's folder.
    ({"config": ["../../../../train/lora"]},
     r"sweep\.config's grid point '\.\./\.\./\.\./\.\./train/lora' must be one folder name"),
    ({"config": ["a/b"]}, "must be one folder name"),
    ({"lr": ["1e-3", 0.001]}, "sweep.lr lists one value twice: '1e-3' and 0.001"),
    ({"r": [8, 16, 8]}, "sweep.r lists one value twice: 8 and 8"),
])
def test_bad_sweeps_are_one_line_errors(bad, message):
    with pytest.raises(UserError, match=message):
        sweep.split_spec("lora", {"kind": "lora", "sweep": bad})


def test_split_spec_leaves_the_entry_without_its_sweep():
    spec, lists = sweep.split_spec("lora", {"kind": "lora", "r": 8, "sweep": {"lr": [1, 2]}})
    assert spec == {"kind": "lora", "r": 8} and lists == {"lr": [1, 2]}


def run_json(folder: Path, val_loss, seed: int = 0) -> Path:
    folder.mkdir(parents=True)
    path = folder / "run.json"
    path.write_text(json.dumps({"seed": seed, "best": {"step": 4, "val_loss": val_loss}}))
    return path


def test_select_picks_the_lowest_validation_loss_and_writes_the_choice_alone(tmp_path):
    grid = sweep.points({"lr": [0.001, 0.003, 0.01]})
    runs = [run_json(tmp_path / name, loss) for name, loss in zip(grid, [2.5, 2.1, None])]
    selection = sweep.select("lora", grid, runs, tmp_path / "grid.json", tmp_path / "chosen.json")
    assert selection["chosen"] == "lr=0.003" and selection["chosen_hparams"] == {"lr": 0.003}
    assert [p["val_loss"] for p in selection["points"]] == [2.5, 2.1, None]
    chosen = json.loads((tmp_path / "chosen.json").read_text())
    assert "points" not in chosen and chosen["chosen_run"] == str(tmp_path / "lr=0.003")
    assert sweep.with_selection({"kind": "lora", "lr": 1.0, "r": 8}, chosen) == {
        "kind": "lora", "lr": 0.003, "r": 8}


def test_the_grid_seed_is_never_a_training_seed():
    assert sweep.selection_seed({}, [0, 1, 2]) == 3  # the default: disjoint
    assert sweep.selection_seed({"seed": None}, [5, 0]) == 6
    assert sweep.selection_seed({"seed": 42}, [0, 1, 2]) == 42
    with pytest.raises(UserError, match="selection.seed 1 is one of training.seeds"):
        sweep.selection_seed({"seed": 1}, [0, 1, 2])


def test_select_without_any_validation_loss_is_an_error(tmp_path):
    grid = sweep.points({"lr": [0.001]})
    with pytest.raises(UserError, match="no sweep point of lora recorded a validation loss"):
        sweep.select("lora", grid, [run_json(tmp_path / "a", None)], tmp_path / "g.json",
                     tmp_path / "c.json")


def sweep_config(tmp_path: Path, lrs: list, unswept: tuple = (), sizes: tuple = (16,)) -> Path:
    """A smoke study: the smoke config with LoRA swept over lrs, the methods unswept as they
    are, two seeds, a learning curve at `sizes` (and the full 32 training papers)."""
    config = yaml.safe_load((ROOT / "tests" / "smoke.yaml").read_text())
    config["methods"] = {"lora": {"kind": "lora", "sweep": {"lr": lrs}},
                         **{name: config["methods"][name] for name in unswept}}
    config["training"]["seeds"] = [0, 1]
    config["data"]["train_sizes"] = list(sizes)
    path = tmp_path / f"sweep{len(lrs)}_{len(sizes)}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def sweep_workflow(tmp_path_factory):
    """The swept LoRA alone, run for real (the dry run plans an unswept method beside it): two
    trainings and two evaluations fewer, and every check here is about the sweep."""
    workdir = tmp_path_factory.mktemp("sweep")
    done = snakemake(workdir, sweep_config(workdir, [0.001, 0.003]))
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def planned(done) -> Counter:
    assert done.returncode == 0, done.stderr[-3000:]
    return job_counts(done.stdout + done.stderr)


def test_a_grid_plans_one_training_per_point_and_seed(tmp_path):
    config = sweep_config(tmp_path, [0.001, 0.003, 0.01], unswept=("last_layers",))
    counts = planned(snakemake(tmp_path, config, "-n"))
    # 3 points with the selection seed; every seed of each method (lora's chosen point too).
    assert (counts["train_point"], counts["select"], counts["train"]) == (3, 1, 2 * 2)
    assert counts["evaluate"] == 2 * 2  # on test: only the chosen point, every seed


@pytest.mark.slow
def test_selection_reads_only_the_sweep_runs_and_every_final_run_trains_afresh(sweep_workflow):
    results = sweep_workflow / SMOKE_RESULTS
    selection = json.loads((results / "select" / "lora.json").read_text())
    losses = {p["point"]: p["val_loss"] for p in selection["points"]}
    assert selection["chosen"] == min(losses, key=losses.get)
    # The grid trains with seed 2 (one above training.seeds [0, 1]); no final run is its winner.
    assert {p["seed"] for p in selection["points"]} == {2}
    chosen_run = results / "sweep" / "lora" / selection["chosen"] / "seed2"
    for seed in (0, 1):
        final = results / "train" / "lora" / f"seed{seed}"
        assert (final / "trainable.safetensors").read_bytes() != (
            chosen_run / "trainable.safetensors").read_bytes()
    record = json.loads((results / "train" / "lora" / "seed1" / "run.json").read_text())
    assert record["method"]["lr"] == selection["chosen_hparams"]["lr"]
    assert not (results / "eval" / "lora" / selection["chosen"]).exists()
    # The select job's inputs are the grid's run.json files: nothing of the test split.
    forced = snakemake(sweep_workflow, sweep_config(sweep_workflow, [0.001, 0.003]), "-n",
                       "--forcerun", "select", "--nolock")
    block = (forced.stdout + forced.stderr).split("checkpoint select:")[1].split("\n\n")[0]
    inputs = next(line for line in block.splitlines() if line.strip().startswith("input:"))
    assert inputs.count("run.json") == 2 and "test" not in inputs


def executed(done) -> Counter:
    """Rule name -> jobs a real run executed (its 'rule X:' headers)."""
    assert done.returncode == 0, done.stderr[-3000:]
    return Counter(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$",
                              done.stdout + done.stderr, re.MULTILINE))


@pytest.mark.slow
def test_the_smoke_study_reports_its_learning_curve(sweep_workflow):
    # Before the new grid point's test, which changes the finished study.
    results = sweep_workflow / SMOKE_RESULTS
    curve = json.loads((results / "curve.json").read_text())
    assert curve["sizes"] == [16, 32] and curve["selected_at"] == 32
    assert {(p["method"], p["train_examples"], p["n_seeds"]) for p in curve["points"]} == {
        ("lora", n, 2) for n in (16, 32)}
    subset = [r["id"] for r in read_jsonl(results / "data" / "subsets" / "n16" / "train.jsonl")]
    full = [r["id"] for r in read_jsonl(results / "data" / "tokenized" / "train.jsonl")]
    assert len(subset) == 16 and set(subset) < set(full)
    selection = json.loads((results / "select" / "lora.json").read_text())
    record = json.loads((results / "curve" / "n16" / "train" / "lora" / "seed0" / "run.json")
                        .read_text())
    assert record["method"]["lr"] == selection["chosen_hparams"]["lr"]
    assert record["train_examples"] == 16 and "lora" in (results / "report" / "report.md").read_text()
    assert (results / "report" / "figures" / "learning_curves.png").stat().st_size > 0
    assert "Learning curves" in (results / "report" / "report.html").read_text()


@pytest.mark.slow
def test_a_new_training_size_plans_only_its_own_jobs(sweep_workflow, tmp_path):
    done = snakemake(sweep_workflow, sweep_config(tmp_path, [0.001, 0.003], sizes=(16, 8)), "-n")
    assert planned(done) == Counter({"train_subset": 1, "train_size": 2, "evaluate_size": 2,
                                     "aggregate_curve": 1, "render_report": 1})


@pytest.mark.slow
def test_a_new_grid_point_that_does_not_win_retrains_none_of_the_chosen_point(sweep_workflow,
                                                                             tmp_path):
    # lr 1e-6 barely moves LoRA's zero-initialised update: its validation loss cannot win.
    # A dry run cannot know the choice before select has run, so it lists the chosen point's
    # runs as pending; the real run re-evaluates them after select and retrains none. (Their
    # evaluations still rerun: Snakemake planned them before the checkpoint, as downstream of
    # the pending trainings, and does not unplan them.)
    weights = sweep_workflow / SMOKE_RESULTS / "train" / "lora" / "seed1" / "trainable.safetensors"
    before = weights.stat().st_mtime_ns
    done = snakemake(sweep_workflow, sweep_config(tmp_path, [0.001, 0.003, 1.0e-6]))
    jobs = executed(done)
    assert (jobs["train_point"], jobs["select"], jobs["train"], jobs["train_size"]) == (
        1, 1, 0, 0), jobs
    assert weights.stat().st_mtime_ns == before


def test_the_report_shows_the_grid_with_its_choice_and_the_sensitivity(tmp_path):
    from peftsum.report import study as report_study

    grid = sweep.points({"lr": [0.001, 0.01], "r": [8, 16]})
    losses = [2.5, 2.1, 2.4, 2.6]
    runs = [run_json(tmp_path / name, loss) for name, loss in zip(grid, losses)]
    selection = sweep.select("lora", grid, runs, tmp_path / "g.json", tmp_path / "c.json")
    table = report_study.grid_table([selection])
    bold = [row[1].text for row in table.rows if row[1].bold]
    assert bold == ["lr=0.001,r=16"] and len(table.rows) == 4
    figure = report_study.sensitivity_figure([selection], {"lora": "#000000"})
    assert len(figure.axes) == 2  # one panel per swept hyperparameter
    assert report_study.sensitivity_figure([], {}) is None


def test_the_sensitivity_figures_tick_labels_do_not_overlap(tmp_path):
    """The study's three lr grids on one log axis: 0.0005 and 0.001 lie close together."""
    from peftsum.report import study as report_study

    selections = []
    for method, lrs in [("prompt_tuning", [0.03, 0.1]), ("lora", [0.001, 0.003]),
                        ("last_layers", [0.0005, 0.001])]:
        grid = sweep.points({"lr": lrs})
        runs = [run_json(tmp_path / method / name, 2.0 + i) for i, name in enumerate(grid)]
        selections.append(sweep.select(method, grid, runs, tmp_path / f"{method}_g.json",
                                       tmp_path / f"{method}_c.json"))
    figure = report_study.sensitivity_figure(
        selections, {"prompt_tuning": "#7b3294", "lora": "#d7191c", "last_layers": "#fdae61"})
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    labels = [t for t in figure.axes[0].get_xticklabels() if t.get_text()]
    assert [t.get_text() for t in labels] == ["0.0005", "0.001", "0.003", "0.03", "0.1"]
    boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
    for left, right in itertools.pairwise(boxes):
        assert not left.overlaps(right), (left, right)
