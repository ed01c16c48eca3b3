"""Learning curves (data.train_sizes) and the selection by validation ROUGE-L: nested subsets,
the intervals and crossovers of the curve, the jobs a dry run plans."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import snakemake
from test_reruns import job_counts
from test_sweep import run_json

from peftsum.analysis import curve
from peftsum.analysis.stats import holm, seed_article_interval
from peftsum.data import subsets
from peftsum.errors import UserError
from peftsum.files import read_jsonl, write_json, write_jsonl
from peftsum.report import study as report_study
from peftsum.training import sweep

ROOT = Path(__file__).resolve().parents[1]


def test_subsets_are_nested_deterministic_and_in_file_order():
    small, large = subsets.nested_indices(100, 10, 0), subsets.nested_indices(100, 40, 0)
    assert set(small) < set(large) and len(small) == 10 and len(large) == 40
    assert small == sorted(small) and small == subsets.nested_indices(100, 10, 0)
    assert small != subsets.nested_indices(100, 10, 1)  # the seed draws them
    assert subsets.nested_indices(100, 100, 0) == list(range(100))


def test_a_size_beyond_the_training_split_is_a_one_line_error():
    with pytest.raises(UserError, match="train_sizes: 33 is not between 1 and the 32"):
        subsets.nested_indices(32, 33, 0)


def tokenized_folder(folder: Path, n_train: int) -> Path:
    folder.mkdir(parents=True)
    write_jsonl(folder / "train.jsonl", ({"id": f"t{i}", "input_ids": [i]} for i in range(n_train)))
    write_jsonl(folder / "validation.jsonl", [{"id": "v0", "input_ids": [7]}])
    write_json(folder / "stats.json", {"reserved_positions": 8})
    return folder


def test_a_subset_folder_reads_like_the_full_one(tmp_path):
    full = tokenized_folder(tmp_path / "tokenized", 20)
    record = subsets.write_train_subset(full, tmp_path / "n5", 5, seed=0)
    ids = [row["id"] for row in read_jsonl(tmp_path / "n5" / "train.jsonl")]
    assert ids == [f"t{i}" for i in subsets.nested_indices(20, 5, 0)]
    assert (tmp_path / "n5" / "validation.jsonl").read_text() == (
        full / "validation.jsonl").read_text()
    stats = json.loads((tmp_path / "n5" / "stats.json").read_text())
    assert stats["reserved_positions"] == 8 and record == {"size": 5, "of": 20, "seed": 0}


def test_the_first_validation_articles_match_by_id(tmp_path):
    write_jsonl(tmp_path / "split.jsonl", [{"id": f"v{i}", "article": "a"} for i in range(5)])
    write_jsonl(tmp_path / "tok.jsonl", [{"id": f"v{i}", "input_ids": [i]} for i in (4, 3, 2, 1, 0)])
    n = subsets.write_first_articles(tmp_path / "tok.jsonl", tmp_path / "split.jsonl", 3,
                                     tmp_path / "out_tok.jsonl", tmp_path / "out_split.jsonl")
    assert n == 3
    assert {r["id"] for r in read_jsonl(tmp_path / "out_tok.jsonl")} == {"v0", "v1", "v2"}


def test_selection_by_rouge_l_takes_the_highest_validation_rouge_l(tmp_path):
    grid = sweep.points({"lr": [0.001, 0.003, 0.01]})
    runs, scores = [], []
    # The lowest loss (lr=0.003) is not the best summariser (lr=0.01): ROUGE-L decides.
    for name, loss, rouge_l in zip(grid, [2.5, 2.1, 2.3], [20.0, 21.0, 24.0]):
        runs.append(run_json(tmp_path / name, loss))
        scores.append(tmp_path / name / "validation.json")
        write_json(scores[-1], {"rougeL": rouge_l, "n_test": 4})
    selection = sweep.select("lora", grid, runs, tmp_path / "g.json", tmp_path / "c.json",
                             "rougeL", scores)
    assert selection["chosen"] == "lr=0.01" and selection["metric"] == "rougeL"
    assert [p["val_rougeL"] for p in selection["points"]] == [20.0, 21.0, 24.0]
    table = report_study.grid_table([selection])
    assert table.headers[-1] == "Validation ROUGE-L"
    assert [row[1].text for row in table.rows if row[1].bold] == ["lr=0.01"]


def test_the_seed_and_article_interval_widens_with_the_seeds_spread():
    agreeing = [[10.0, 20.0, 30.0, 40.0]] * 3
    mean, low, high = seed_article_interval(agreeing)
    assert mean == 25.0 and low < mean < high
    spread = [[s + 10.0 * k for s in agreeing[0]] for k in (-1, 0, 1)]
    _, spread_low, spread_high = seed_article_interval(spread)
    assert spread_high - spread_low > high - low
    assert seed_article_interval([[5.0, 5.0]]) == (5.0, 5.0, 5.0)


def fake_evaluation(root: Path, method: str, size: int, seed: int, scores: list[float],
                    loss: float) -> tuple[Path, Path]:
    folder = root / f"n{size}" / method / f"seed{seed}"
    folder.mkdir(parents=True)
    write_jsonl(folder / "predictions.jsonl",
                ({"id": f"a{i}", "rougeL": s} for i, s in enumerate(scores)))
    write_json(folder / "metrics.json", {"name": method, "seed": seed, "test_loss": loss})
    write_json(folder / "run.json", {"name": method, "seed": seed, "train_examples": size})
    return folder / "metrics.json", folder / "run.json"


def curve_files(tmp_path: Path, lead_small: float, lead_large: float, noise: float = 0.0):
    """Two methods at 10 and 100 examples, 3 seeds, 30 articles: b ahead of a by lead_small
    at 10, a ahead of b by lead_large at 100."""
    return curve_files_at(tmp_path, {10: -lead_small, 100: lead_large}, noise)


def curve_files_at(tmp_path: Path, leads: dict[int, float], noise: float | dict = 0.0):
    """Methods a and b, 3 seeds, 30 articles: a ahead of b by leads[size] at each size; the
    seeds spread a and b by -noise, 0, +noise in opposite directions (noise: one for every
    size, or by size)."""
    metrics, runs = [], []
    base = [20.0 + (i % 7) for i in range(30)]
    for size, lead in leads.items():
        spread = noise[size] if isinstance(noise, dict) else noise
        for seed in range(3):
            jitter = spread * (seed - 1)
            for method, shift in (("a", lead + jitter), ("b", -jitter)):
                m, r = fake_evaluation(tmp_path, method, size, seed,
                                       [s + shift for s in base], 3.0 - shift / 10)
                metrics.append(m)
                runs.append(r)
    return metrics, runs


def test_a_clear_crossover_is_found_and_called_significant(tmp_path):
    metrics, runs = curve_files(tmp_path, lead_small=3.0, lead_large=4.0)
    result = curve.run(metrics, runs, tmp_path / "curve.json", tmp_path / "curve.tsv")
    assert result["sizes"] == [10, 100] and result["selected_at"] == 100
    point = next(p for p in result["points"] if (p["method"], p["train_examples"]) == ("a", 100))
    base_mean = sum(20.0 + (i % 7) for i in range(30)) / 30
    assert point["n_seeds"] == 3 and point["rougeL"] == pytest.approx(base_mean + 4.0)
    [crossing] = result["crossovers"]
    assert crossing["significant"]
    assert crossing["before"]["diff"] == pytest.approx(-3.0)
    assert crossing["after"]["diff"] == pytest.approx(4.0)
    [sentence] = report_study.crossover_sentences(result)
    assert "b is ahead of a with 10 training examples" in sentence
    assert "the order changes with the data" in sentence
    assert report_study.curve_figure(result, {"a": "#000000", "b": "#ff0000"}) is not None


def test_a_crossover_the_seeds_disagree_on_is_not_significant(tmp_path):
    # The seeds spread by +-8 points, far more than the 0.5-point leads.
    metrics, runs = curve_files(tmp_path, lead_small=0.5, lead_large=0.5, noise=8.0)
    result = curve.run(metrics, runs, tmp_path / "curve.json", tmp_path / "curve.tsv")
    [crossing] = result["crossovers"]
    assert not crossing["significant"]
    assert "do not show a crossover" in report_study.crossover_sentences(result)[0]


def test_a_crossover_needs_significance_on_both_sides(tmp_path):
    # Clearly ahead at 10; behind at 100 by a lead its seeds disagree on.
    metrics, runs = curve_files_at(tmp_path, {10: 5.0, 100: -0.5}, noise={10: 0.0, 100: 8.0})
    result = curve.run(metrics, runs, tmp_path / "curve.json", tmp_path / "curve.tsv")
    [crossing] = result["crossovers"]
    assert crossing["before"]["p_holm"] < 0.05 <= crossing["after"]["p_holm"]
    assert not crossing["significant"]


def test_no_crossover_is_said_plainly(tmp_path):
    metrics, runs = curve_files(tmp_path, lead_small=-2.0, lead_large=2.0)  # a ahead at both
    result = curve.run(metrics, runs, tmp_path / "curve.json", tmp_path / "curve.tsv")
    assert result["crossovers"] == []
    assert "no two methods change order" in report_study.crossover_sentences(result)[0]


def test_a_crossover_between_sizes_that_are_not_neighbours_is_found(tmp_path):
    # +3 (clear), -0.1 (seeds disagree), -4 (clear): the order changes between 10 and 1000.
    metrics, runs = curve_files_at(tmp_path, {10: 3.0, 100: -0.1, 1000: -4.0}, noise=0.0)
    result = curve.run(metrics, runs, tmp_path / "curve.json", tmp_path / "curve.tsv")
    [crossing] = result["crossovers"]
    assert crossing["significant"]
    assert (crossing["before"]["train_examples"], crossing["after"]["train_examples"]) == (10, 1000)


def test_an_exact_tie_between_two_sizes_hides_no_crossover(tmp_path):
    metrics, runs = curve_files_at(tmp_path, {10: 3.0, 100: 0.0, 1000: -4.0})
    result = curve.run(metrics, runs, tmp_path / "curve.json", tmp_path / "curve.tsv")
    [crossing] = result["crossovers"]
    assert crossing["significant"] and crossing["before"]["diff"] == pytest.approx(3.0)


def test_the_comparisons_are_holm_corrected(tmp_path):
    metrics, runs = curve_files_at(tmp_path, {10: 3.0, 100: -0.5, 1000: -4.0}, noise=1.0)
    comparisons = curve.run(metrics, runs, tmp_path / "curve.json",
                            tmp_path / "curve.tsv")["comparisons"]
    assert [c["p_holm"] for c in comparisons] == pytest.approx(holm([c["p"] for c in comparisons]))
    assert any(c["p_holm"] > c["p"] for c in comparisons)


def study_config(tmp_path: Path, sizes: list[int], metric: str = "val_loss") -> Path:
    """The smoke config as a small study: LoRA swept over two learning rates, last layers,
    two seeds, learning curves at `sizes`."""
    config = yaml.safe_load((ROOT / "tests" / "smoke.yaml").read_text())
    config["methods"] = {"lora": {"kind": "lora", "sweep": {"lr": [0.001, 0.003]}},
                         "last_layers": config["methods"]["last_layers"]}
    config["training"]["seeds"] = [0, 1]
    config["data"]["train_sizes"] = sizes
    config["selection"] = {"metric": metric, "validation_articles": 4}
    path = tmp_path / f"study_{'_'.join(map(str, sizes))}_{metric}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_study_plans_one_training_per_size_method_and_seed(tmp_path):
    done = snakemake(tmp_path, study_config(tmp_path, [8, 16]), "-n")
    assert done.returncode == 0, done.stderr[-3000:]
    counts = job_counts(done.stdout + done.stderr)
    assert counts["train_subset"] == 2
    assert counts["train_size"] == counts["evaluate_size"] == 2 * 2 * 2  # sizes x methods x seeds
    assert counts["aggregate_curve"] == 1 and counts["evaluate_point"] == 0


def test_selection_by_rouge_l_summarises_validation_articles_only(tmp_path):
    done = snakemake(tmp_path, study_config(tmp_path, [], "rougeL"), "-n", "--forcerun",
                     "select")
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert job_counts(output)["evaluate_point"] == 2  # one per grid point
    for rule in ("rule evaluate_point:", "checkpoint select:", "rule validation_articles:"):
        for block in output.split(rule)[1:]:
            inputs = next(line for line in block.split("\n\n")[0].splitlines()
                          if line.strip().startswith("input:"))
            assert "test" not in inputs, (rule, inputs)
