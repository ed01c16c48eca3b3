"""Join evaluation metrics with their training runs into one tidy results table.

Only reads JSON files (no torch/transformers), so the table can be rebuilt on
any machine from copied results.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from peftsum import records
from peftsum.analysis import evaluations
from peftsum.analysis.stats import (
    ALPHA,
    N_RESAMPLES,
    bootstrap_ci,
    design_needed,
    detectable_difference,
    holm,
    seed_article_t_test,
    seed_interval,
    seed_summary,
    standard_error,
    variance_components,
)
from peftsum.files import write_atomic, write_json
from peftsum.metrics import ROUGE_KEYS, ROUGE_L, ROUGE_LSUM
from peftsum.records import MetricsRecord, RunRecord

# ROUGE-L carries the verdicts (Holm within each family); ROUGE-Lsum is secondary: tested the
# same way, corrected within the same families, and shown as context, never a verdict.
PRIMARY_METRIC = ROUGE_L.key
TESTED_METRICS = [PRIMARY_METRIC, ROUGE_LSUM.key]
# Two pre-specified questions, each its own family, Holm-corrected within itself so that each
# keeps a family-wise error rate of ALPHA: the verdicts, which method is best (each trained
# method against the strongest baseline, each pair of trained methods), and the floor, whether
# training helped at all (each trained method against the untrained model). Every other pair
# is context: shown, not corrected, no verdict.
VERDICT, FLOOR, CONTEXT = "verdict", "floor", "context"
# The base model in the methods' template, evaluated without training: the floor's reference.
UNTRAINED = "zero_shot"
_PAIR_PARTS = ("a", "b", "diff", "low", "high", "se", "df", "p", "p_holm", "seeds_ahead",
               "seed_pairs")
# Metrics summarised across training seeds (mean and sample std).
SEED_METRICS = ["test_loss", "perplexity", *ROUGE_KEYS, "train_wall_s"]

COLUMNS = [
    "name",
    "kind",
    "seed",
    "trainable_params",
    "added_params",
    "total_params",
    "trainable_pct",
    "test_loss",
    "perplexity",
    *ROUGE_KEYS,
    "n_test",
    "mean_pred_words",
    "mean_ref_words",
    "hit_max_new_tokens",
    "train_wall_s",
    "tokens_per_s",
    "peak_rss_mb",
    "peak_gpu_mb",
    "optimizer_steps",
    "best_step",
    "best_val_loss",
    "gen_wall_s",
    "trains",
    "formula",
    # Added later; appended so the columns above keep their positions.
    # 95 % percentile-bootstrap intervals from per-example scores (empty without predictions).
    *[f"{key}_ci_{side}" for key in ROUGE_KEYS for side in ("low", "high")],
    "mean_gen_tokens",
    "gen_tokens_per_s",
    "samples_per_s",
    "peak_gpu_reserved_mb",
    "device",
    "gpu_count",
    "precision",
    "flops_per_token",
    "train_flops",
    "mfu",
    "checkpoint_mb",
    "gpu_util_pct",
    "gpu_energy_j",
]

SIGNIFICANCE_COLUMNS = [
    "system_a",
    "seeds_a",
    "system_b",
    "seeds_b",
    "n_examples",
    "family",
    "design",
    *[f"{key}_{part}" for key in TESTED_METRICS for part in _PAIR_PARTS],
    "detectable_80",
    "seeds_needed",
    "articles_needed",
]

BY_METHOD_COLUMNS = [
    "name",
    "kind",
    "n_seeds",
    "seeds",
    "trainable_params",
    *[f"{key}_{stat}" for key in SEED_METRICS for stat in ("mean", "std", "seed_low", "seed_high")],
]

_METRIC_COLUMNS = [
    "kind",
    "test_loss",
    "perplexity",
    *ROUGE_KEYS,
    "n_test",
    "mean_pred_words",
    "mean_ref_words",
    "hit_max_new_tokens",
    "gen_wall_s",
    "gen_tokens_per_s",
]
_RESOURCE_COLUMNS = [
    "train_wall_s",
    "tokens_per_s",
    "peak_rss_mb",
    "peak_gpu_mb",
    "optimizer_steps",
    "samples_per_s",
    "peak_gpu_reserved_mb",
    "device",
    "gpu_count",
    "precision",
    "train_flops",
    "mfu",
    "checkpoint_mb",
    "gpu_util_pct",
    "gpu_energy_j",
]


def run(
    eval_metrics: list[Path],
    train_runs: list[Path],
    outputs: dict[str, Path],
    predictions: list[Path] | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> list[dict]:
    """Build the results table, write it as TSV and JSON, and return its rows.

    Rows with a matching run.json (same name and seed) come first, in the order
    of `train_runs`; rows without one (baselines) follow in the order of `eval_metrics`.

    `outputs` names every path written, by key: tsv and json (the table); by_method and
    by_method_json (mean and sample std of each metric across the seeds of a method, one row
    per name); with `predictions` (predictions.jsonl paths in the order of `eval_metrics`),
    significance and significance_json (paired t-tests between every pair of systems over
    their seeds and articles: significance()), and each row gains bootstrap confidence
    intervals and length columns from the per-example scores.
    """
    if predictions is not None and len(predictions) != len(eval_metrics):
        raise ValueError(f"{len(predictions)} prediction files for {len(eval_metrics)} evaluations")
    runs = [records.read_run(path, needs=("name",)) for path in train_runs]
    run_position = {_run_key(r): i for i, r in enumerate(runs)}
    rows = []
    for metrics, examples in evaluations.read_all(eval_metrics, predictions):
        position = run_position.get(_run_key(metrics))
        train_run = runs[position] if position is not None else None
        row = table_row(metrics, train_run)
        if examples is not None:
            row.update(prediction_columns(row, examples, n_resamples, seed))
        rows.append((position, row, examples))
    # Stable sort: trained rows by run order, baselines (no run) keep eval order at the end.
    rows.sort(key=lambda item: (item[0] is None, item[0] or 0))
    table = [row for _, row, _ in rows]
    write_atomic(outputs["tsv"], to_tsv(table))
    write_atomic(outputs["json"], json.dumps(table, indent=2, ensure_ascii=False) + "\n")

    by_method = method_summary(table)
    write_atomic(outputs["by_method"], to_tsv(by_method, BY_METHOD_COLUMNS))
    write_json(outputs["by_method_json"], by_method)
    if predictions is not None:
        pairs = significance([(row, examples) for _, row, examples in rows])
        write_atomic(outputs["significance"], to_tsv(pairs, SIGNIFICANCE_COLUMNS))
        write_json(outputs["significance_json"], {**SIGNIFICANCE_HEADER, "pairs": pairs})
    return table


def table_row(metrics: MetricsRecord, train_run: RunRecord | None) -> dict:
    """One table row: evaluation metrics plus, for trained methods, cost and training facts."""
    row = dict.fromkeys(COLUMNS)
    row["name"] = metrics.name
    row["seed"] = _normalise_seed(metrics.seed)
    row.update({col: getattr(metrics, col) for col in _METRIC_COLUMNS})
    if train_run is not None:
        row.update(_train_columns(train_run))
        row["kind"] = row["kind"] or train_run.kind
    return row


def _train_columns(train_run: RunRecord) -> dict:
    params = train_run.params or {}
    resources = train_run.resources or {}
    best = train_run.best or {}
    trainable, base_total = params.get("trainable"), params.get("base_total")
    columns = {col: resources.get(col) for col in _RESOURCE_COLUMNS}
    columns.update(
        trainable_params=trainable,
        added_params=params.get("added"),
        total_params=params.get("total"),
        # Share of the *base* model, so methods that add parameters are compared on the same scale.
        trainable_pct=trainable / base_total * 100
        if trainable is not None and base_total
        else None,
        best_step=best.get("step"),
        best_val_loss=best.get("val_loss"),
        trains=train_run.trains,
        formula=params.get("formula"),
        flops_per_token=(resources.get("flops_per_token") or {}).get("total"),
    )
    return columns


def prediction_columns(row: dict, examples: list[dict], n_resamples: int, seed: int) -> dict:
    """Bootstrap intervals and length statistics from one system's per-example rows.

    Values already in metrics.json are kept; a column is filled only when every example
    carries the field (lead3 has no generated tokens, older files no per-example scores).
    """
    columns = {}
    for key in ROUGE_KEYS:
        scores = _every(examples, key)
        if scores is not None:
            _, columns[f"{key}_ci_low"], columns[f"{key}_ci_high"] = bootstrap_ci(
                scores, n_resamples=n_resamples, seed=seed
            )
    for column, field in [
        ("mean_gen_tokens", "gen_tokens"),
        ("hit_max_new_tokens", "hit_max"),
        ("mean_pred_words", "pred_words"),
        ("mean_ref_words", "ref_words"),
    ]:
        values = _every(examples, field)
        if row.get(column) is None and values is not None:
            columns[column] = sum(values) / len(values)
    return columns


def _every(examples: list[dict], field: str) -> list | None:
    values = [e.get(field) for e in examples]
    return values if values and all(v is not None for v in values) else None


SIGNIFICANCE_HEADER = {
    "test": "paired t-test over training seeds and test articles (seed, noise and "
            "system-by-article variance, Satterthwaite degrees of freedom; "
            "peftsum.analysis.stats.seed_article_t_test), two-sided; design 'checkpoints' (one "
            "run each): the paired t-test over articles, a comparison of two trained "
            "checkpoints on these articles that says nothing about seed variance",
    "diff": "mean over seeds and examples of system_a - system_b, ROUGE F1 x 100",
    "primary_metric": PRIMARY_METRIC,
    "secondary_metrics": TESTED_METRICS[1:],
    "family": "verdict (which method is best): each trained method against the strongest "
              "baseline and each pair of trained methods; floor (did training help): each "
              f"trained method against {UNTRAINED}, the untrained model, where that is not the "
              "strongest baseline (where it is, the pair is corrected once, in the verdict "
              "family, the stricter of the two); context: the other pairs (no Holm, no verdict)",
    "correction": "Holm within each of the verdict and floor families, per metric (p_holm)",
    "alpha": ALPHA,
    "power": "detectable_80: the difference found with 80 % power at Holm's strictest level "
             "(alpha / family size); seeds_needed / articles_needed: roughly how many would "
             "find the observed ROUGE-L difference so",
}


def significance(systems: list[tuple[dict, list[dict] | None]]) -> list[dict]:
    """Paired tests on ROUGE-L and ROUGE-Lsum between every pair of systems, over all seeds.

    `systems` holds (table row, per-example rows) in table order; a name's rows are its seeds.
    Each test is stats.seed_article_t_test on the (seeds x articles) scores, matched by example
    id; with one run per system it compares two checkpoints (`design`). Holm's correction runs
    within the verdict family and within the floor family (family_of), per metric. Within a
    pair, system_a is the one with the higher mean ROUGE-L, so differences read "how far
    ahead".
    `{metric}_seeds_ahead` of `{metric}_seed_pairs`: in how many pairings of a's and b's runs
    with the same seed (each of a's seeds against a system with one run, a baseline) a scored
    higher.
    """
    runs: dict[str, list[tuple[int | None, dict[str, dict]]]] = {}
    trained = set()
    for row, examples in systems:
        if examples is not None:
            runs.setdefault(row["name"], []).append((row["seed"], _scores_by_id(row["name"], examples)))
            if row.get("trainable_params") is not None:
                trained.add(row["name"])
    names = list(runs)
    tested = []  # (pair, the primary metric's variance components)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = (first, second)
            if _mean(runs[b], PRIMARY_METRIC) > _mean(runs[a], PRIMARY_METRIC):
                a, b = b, a
            tested.append(_test_pair(a, b, runs))
    pairs = [pair for pair, _ in tested]
    strongest = strongest_baseline(trained, {name: _mean(r, PRIMARY_METRIC)
                                             for name, r in runs.items()})
    for pair in pairs:
        pair["family"] = family_of(pair, trained, strongest)
    sizes = {family: holm_within(pairs, family) for family in (VERDICT, FLOOR)}
    for pair, parts in tested:
        # A context pair is sized as a verdict would be: the difference it would take to call.
        pair.update(_power(pair, parts, sizes.get(pair["family"], sizes[VERDICT])))
    return pairs


def strongest_baseline(trained: set[str], means: dict[str, float]) -> str | None:
    """The system that trains nothing with the highest mean ROUGE-L."""
    baselines = [name for name in means if name not in trained]
    return max(baselines, key=lambda name: means[name], default=None)


def family_of(pair: dict, trained: set[str], strongest: str | None) -> str:
    """The question a pair answers. VERDICT: two trained methods, or a trained method against
    the strongest baseline. FLOOR: a trained method against the untrained model. A pair that is
    both (the untrained model is the strongest baseline) is tested and corrected once, in the
    verdict family: it answers both questions, and Holm over the larger family is the stricter,
    so neither question's error rate grows. CONTEXT: every other pair."""
    systems = {pair["system_a"], pair["system_b"]}
    if systems <= trained or (systems & trained and strongest in systems):
        return VERDICT
    if systems & trained and UNTRAINED in systems:
        return FLOOR
    return CONTEXT


def holm_within(pairs: list[dict], family: str) -> int:
    """Holm's correction over the pairs of one family, per tested metric (`{metric}_p_holm`);
    returns the family's size."""
    members = [pair for pair in pairs if pair["family"] == family]
    for key in TESTED_METRICS:
        for pair, adjusted in zip(members, holm([pair[f"{key}_p"] for pair in members])):
            pair[f"{key}_p_holm"] = adjusted
    return len(members)


def _power(pair: dict, parts: dict | None, family_size: int) -> dict:
    """The primary metric's detectable difference (80 % power at alpha / family size) and, when
    the observed difference was not called, the seeds or articles that would call it."""
    if parts is None:
        return {"detectable_80": None, "seeds_needed": None, "articles_needed": None}
    alpha = ALPHA / max(family_size, 1)
    se, df = standard_error(parts)
    needed = {"seeds": None, "articles": None}
    if pair.get(f"{PRIMARY_METRIC}_p_holm") is not None and pair[f"{PRIMARY_METRIC}_p_holm"] >= ALPHA:
        needed = design_needed(parts, pair[f"{PRIMARY_METRIC}_diff"], alpha)
    return {"detectable_80": float(detectable_difference(float(se), float(df), alpha)),
            "seeds_needed": needed["seeds"], "articles_needed": needed["articles"]}


def _scores_by_id(name: str, examples: list[dict]) -> dict[str, dict]:
    by_id = {e["id"]: e for e in examples}
    if len(by_id) != len(examples):
        raise ValueError(f"predictions of {name} repeat an example id")
    return by_id


def _mean(runs: list[tuple], key: str) -> float:
    values = [e.get(key) for _, by_id in runs for e in by_id.values()]
    return -math.inf if None in values or not values else sum(values) / len(values)


def _seed_pairs(a: list[tuple], b: list[tuple]) -> list[tuple[dict, dict]]:
    """a's and b's runs with the same seed; with one run of b (a baseline), each of a's."""
    if len(b) == 1:
        return [(by_id, b[0][1]) for _, by_id in a]
    b_by_seed = dict(b)
    return [(by_id, b_by_seed[s]) for s, by_id in a if s in b_by_seed]


def _test_pair(a: str, b: str, runs: dict) -> tuple[dict, dict | None]:
    ids = list(runs[a][0][1])  # a's order; every run is matched by id
    for name in (a, b):
        if any(by_id.keys() != set(ids) for _, by_id in runs[name]):
            raise ValueError(f"predictions of {a} and {b} cover different test examples")
    pair = {
        "system_a": a,
        "seeds_a": [s for s, _ in runs[a] if s is not None],
        "system_b": b,
        "seeds_b": [s for s, _ in runs[b] if s is not None],
        "n_examples": len(ids),
        "design": "seeds" if max(len(runs[a]), len(runs[b])) > 1 else "checkpoints",
    }
    parts = None
    for key in TESTED_METRICS:
        x = [[by_id[i].get(key) for i in ids] for _, by_id in runs[a]]
        y = [[by_id[i].get(key) for i in ids] for _, by_id in runs[b]]
        pair.update({f"{key}_{part}": None for part in _PAIR_PARTS})
        if any(None in r for r in x + y):
            continue
        test = seed_article_t_test(x, y)
        pair[f"{key}_a"], pair[f"{key}_b"] = _mean(runs[a], key), _mean(runs[b], key)
        pair.update({f"{key}_{part}": float(test[part])
                     for part in ("diff", "low", "high", "se", "df", "p")})
        seed_pairs = _seed_pairs(runs[a], runs[b])
        pair[f"{key}_seeds_ahead"] = sum(
            sum(r[i][key] for i in ids) > sum(q[i][key] for i in ids) for r, q in seed_pairs)
        pair[f"{key}_seed_pairs"] = len(seed_pairs)
        if key == PRIMARY_METRIC:
            parts = variance_components(x, y)
    return pair, parts


def method_summary(table: list[dict]) -> list[dict]:
    """One row per name: mean, sample std (ddof=1) and 95% t-interval (seed_low, seed_high) of
    each metric across its seeds."""
    groups: dict[str, list[dict]] = {}
    for row in table:
        groups.setdefault(row["name"], []).append(row)
    summary = []
    for name, rows in groups.items():
        entry = {
            "name": name,
            "kind": rows[0]["kind"],
            "n_seeds": len(rows),
            "seeds": [r["seed"] for r in rows if r["seed"] is not None],
            "trainable_params": rows[0]["trainable_params"],
        }
        for key in SEED_METRICS:
            values = [r[key] for r in rows]
            entry[f"{key}_mean"], entry[f"{key}_std"] = seed_summary(values)
            present = [v for v in values if v is not None]
            _, entry[f"{key}_seed_low"], entry[f"{key}_seed_high"] = (
                seed_interval(present) if present else (None, None, None))
        summary.append(entry)
    return summary


def to_tsv(rows: list[dict], columns: list[str] = COLUMNS) -> str:
    """Tab-separated text with a header; None becomes an empty cell, lists comma-joined."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_tsv_cell(row.get(col)) for col in columns])
    return buffer.getvalue()


def _tsv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(map(str, value))
    return value


def _run_key(record: RunRecord | MetricsRecord) -> tuple[str, int | None]:
    return record.name, _normalise_seed(record.seed)


def _normalise_seed(seed) -> int | None:
    # Seeds may arrive as "0" from configs or wildcards; compare them as integers.
    return None if seed is None or seed == "" else int(seed)
