"""Sweeps: the grid a method entry's `sweep:` lists make, the selection by validation loss
(from the sweep runs' run.json alone), and the reuse of the chosen point's run."""

import json
from pathlib import Path

import pytest

from peftsum import sweep
from peftsum.errors import UserError


def test_points_are_every_combination_with_readable_names():
    grid = sweep.points({"r": [8, 16], "lr": [0.0003, 0.001]})
    assert list(grid) == ["lr=0.0003,r=8", "lr=0.0003,r=16", "lr=0.001,r=8", "lr=0.001,r=16"]
    assert grid["lr=0.001,r=16"] == {"lr": 0.001, "r": 16}


@pytest.mark.parametrize("bad, message", [
    ({"lr": 0.001}, "sweep.lr must be a non-empty list"),
    ({"lr": []}, "sweep.lr must be a non-empty list"),
    ({"kind": ["lora"]}, "cannot sweep 'kind'"),
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
    assert sweep.with_selection({"kind": "lora", "lr": 1.0, "r": 8}, tmp_path / "chosen.json") == {
        "kind": "lora", "lr": 0.003, "r": 8}
    assert sweep.reusable_run(tmp_path / "chosen.json", 0) == tmp_path / "lr=0.003"
    assert sweep.reusable_run(tmp_path / "chosen.json", 1) is None  # another seed trains


def test_select_without_any_validation_loss_is_an_error(tmp_path):
    grid = sweep.points({"lr": [0.001]})
    with pytest.raises(UserError, match="no sweep point of lora recorded a validation loss"):
        sweep.select("lora", grid, [run_json(tmp_path / "a", None)], tmp_path / "g.json",
                     tmp_path / "c.json")
