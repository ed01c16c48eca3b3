"""Learning curves: each method's test scores against the training-set size, with intervals over
seeds and articles, and the crossovers between methods with their significance.

Reads result files only (numpy, no torch): each evaluation's metrics.json and
predictions.jsonl, and the run.json of its training run (how many training examples it saw).
"""

from __future__ import annotations

import itertools
from pathlib import Path

from peftsum import paths, records
from peftsum.analysis.aggregate import to_tsv
from peftsum.analysis.stats import (
    ALPHA,
    holm,
    seed_article_interval,
    seed_article_t_test,
    seed_interval,
)
from peftsum.files import read_jsonl, write_atomic, write_json

POINT_COLUMNS = ["method", "train_examples", "n_seeds", "rougeL", "rougeL_low", "rougeL_high",
                 "test_loss", "test_loss_low", "test_loss_high"]


def run(metrics: list[Path], runs: list[Path], out_json: Path, out_tsv: Path) -> dict:
    """metrics: every curve evaluation's metrics.json (its predictions.jsonl beside it); runs:
    the run.json of each, in the same order (the full training split's runs among them: swept
    hyperparameters were chosen there, the largest size)."""
    if len(metrics) != len(runs):
        raise ValueError(f"{len(metrics)} evaluations for {len(runs)} training runs")
    groups = group_runs(metrics, runs)
    points = [curve_point(method, size, seeds)
              for (method, size), seeds in sorted(groups.items(), key=lambda kv: kv[0][1])]
    comparisons = compare_at_each_size(groups)
    sizes = sorted({size for _, size in groups})
    curve = {
        "sizes": sizes,
        "selected_at": sizes[-1] if sizes else None,
        "interval": "95 % t-interval over seeds and test articles together (ROUGE-L; "
                    "stats.seed_article_interval); t-interval over seeds (test loss)",
        "test": "paired t-test over seeds and test articles (stats.seed_article_t_test)",
        "correction": "Holm over every pair of methods at every size",
        "points": points,
        "comparisons": comparisons,
        "crossovers": crossovers(comparisons),
    }
    write_json(out_json, curve)
    write_atomic(out_tsv, to_tsv(points, POINT_COLUMNS))
    return curve


def group_runs(metrics: list[Path], runs: list[Path]) -> dict[tuple[str, int], list[dict]]:
    """(method, training examples) -> one entry per seed: its test loss and per-article ROUGE-L
    by example id."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for metrics_json, run_json in zip(metrics, runs):
        evaluation = records.read_metrics(metrics_json, needs=("name",))
        run = records.read_run(run_json, needs=("train_examples",))
        examples = read_jsonl(paths.predictions(Path(metrics_json).parent))
        groups.setdefault((evaluation.name, run.train_examples), []).append({
            "seed": evaluation.seed, "test_loss": evaluation.test_loss,
            "rougeL": {e["id"]: e["rougeL"] for e in examples}})
    return groups


def _score_matrix(seeds: list[dict], ids: list[str]) -> list[list[float]]:
    return [[s["rougeL"][i] for i in ids] for s in seeds]


def curve_point(method: str, size: int, seeds: list[dict]) -> dict:
    ids = sorted(seeds[0]["rougeL"])
    rouge, low, high = seed_article_interval(_score_matrix(seeds, ids))
    loss, loss_low, loss_high = seed_interval([s["test_loss"] for s in seeds])
    return {"method": method, "train_examples": size, "n_seeds": len(seeds),
            "seeds": sorted(s["seed"] for s in seeds), "rougeL": rouge, "rougeL_low": low,
            "rougeL_high": high, "test_loss": loss, "test_loss_low": loss_low,
            "test_loss_high": loss_high}


def compare_at_each_size(groups: dict) -> list[dict]:
    """Every pair of methods at every size: difference a - b of ROUGE-L (a before b in name
    order), the seed-and-article t-test, Holm over the whole family."""
    methods = sorted({method for method, _ in groups})
    sizes = sorted({size for _, size in groups})
    comparisons = []
    for i, a in enumerate(methods):
        for b in methods[i + 1:]:
            for size in sizes:
                if (a, size) not in groups or (b, size) not in groups:
                    continue
                ids = sorted(groups[a, size][0]["rougeL"])
                test = seed_article_t_test(_score_matrix(groups[a, size], ids),
                                           _score_matrix(groups[b, size], ids))
                comparisons.append({"a": a, "b": b, "train_examples": size,
                                    **{key: float(test[key]) for key in
                                       ("diff", "low", "high", "se", "df", "p")}})
    for comparison, adjusted in zip(comparisons, holm([c["p"] for c in comparisons])):
        comparison["p_holm"] = adjusted
    return comparisons


def crossovers(comparisons: list[dict]) -> list[dict]:
    """Pairs whose order on ROUGE-L differs between any two sizes (not only neighbours; an exact
    tie has no order and neither hides nor makes one): per pair, the two sizes with opposite
    signs whose larger Holm p is smallest; significant when the difference is significant
    (Holm) at both of them."""
    by_pair: dict[tuple[str, str], list[dict]] = {}
    for c in comparisons:
        by_pair.setdefault((c["a"], c["b"]), []).append(c)
    found = []
    for (a, b), rows in by_pair.items():
        rows.sort(key=lambda c: c["train_examples"])
        changes = [(before, after) for before, after in itertools.combinations(rows, 2)
                   if before["diff"] * after["diff"] < 0]
        if changes:
            before, after = min(changes, key=lambda pair: max(c["p_holm"] for c in pair))
            found.append({"a": a, "b": b, "before": before, "after": after,
                          "significant": before["p_holm"] < ALPHA and after["p_holm"] < ALPHA})
    return found
