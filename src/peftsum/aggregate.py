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

from peftsum.io import read_json, read_jsonl, write_atomic, write_json
from peftsum.stats import bootstrap_ci, paired_bootstrap_pvalue, seed_summary

ROUGE_KEYS = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
# Metrics compared between systems with the paired bootstrap test.
TESTED_METRICS = ["rougeL", "rougeLsum"]
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
    "rouge1",
    "rouge2",
    "rougeL",
    "rougeLsum",
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
    "seed_a",
    "system_b",
    "seed_b",
    "n_examples",
    *[f"{key}_{part}" for key in TESTED_METRICS for part in ("a", "b", "diff", "p")],
]

BY_METHOD_COLUMNS = [
    "name",
    "kind",
    "n_seeds",
    "seeds",
    "trainable_params",
    *[f"{key}_{stat}" for key in SEED_METRICS for stat in ("mean", "std")],
]

_METRIC_COLUMNS = [
    "kind",
    "test_loss",
    "perplexity",
    "rouge1",
    "rouge2",
    "rougeL",
    "rougeLsum",
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
    n_resamples: int = 1000,
    seed: int = 0,
) -> list[dict]:
    """Build the results table, write it as TSV and JSON, and return its rows.

    Rows with a matching run.json (same name and seed) come first, in the order
    of `train_runs`; rows without one (baselines) follow in the order of `eval_metrics`.

    `outputs` names every path written, by key: tsv and json (the table); by_method and
    by_method_json (mean and sample std of each metric across the seeds of a method, one row
    per name); with `predictions` (predictions.jsonl paths in the order of `eval_metrics`),
    significance and significance_json (paired bootstrap tests between every pair of systems;
    a method with several seeds is represented by its lowest seed), and each row gains
    bootstrap confidence intervals and length columns from the per-example scores.
    """
    if predictions is not None and len(predictions) != len(eval_metrics):
        raise ValueError(f"{len(predictions)} prediction files for {len(eval_metrics)} evaluations")
    runs = [read_json(path) for path in train_runs]
    run_position = {_run_key(r): i for i, r in enumerate(runs)}
    rows = []
    for i, metrics in enumerate(map(read_json, eval_metrics)):
        position = run_position.get(_run_key(metrics))
        train_run = runs[position] if position is not None else None
        row = table_row(metrics, train_run)
        examples = read_jsonl(predictions[i]) if predictions is not None else None
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
        pairs = significance([(row, examples) for _, row, examples in rows], n_resamples, seed)
        write_atomic(outputs["significance"], to_tsv(pairs, SIGNIFICANCE_COLUMNS))
        write_json(
            outputs["significance_json"],
            {
                "test": "paired bootstrap, two-sided, shift to the null (peftsum.stats)",
                "diff": "mean over examples of system_a - system_b, ROUGE F1 x 100",
                "metrics": TESTED_METRICS,
                "n_resamples": n_resamples,
                "seed": seed,
                "pairs": pairs,
            },
        )
    return table


def table_row(metrics: dict, train_run: dict | None) -> dict:
    """One table row: evaluation metrics plus, for trained methods, cost and training facts."""
    row = dict.fromkeys(COLUMNS)
    row["name"] = metrics["name"]
    row["seed"] = _normalise_seed(metrics.get("seed"))
    row.update({col: metrics.get(col) for col in _METRIC_COLUMNS})
    if train_run is not None:
        row.update(_train_columns(train_run))
        row["kind"] = row["kind"] or train_run.get("kind")
    return row


def _train_columns(train_run: dict) -> dict:
    params = train_run.get("params") or {}
    resources = train_run.get("resources") or {}
    best = train_run.get("best") or {}
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
        trains=train_run.get("trains"),
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


def significance(
    systems: list[tuple[dict, list[dict] | None]], n_resamples: int = 1000, seed: int = 0
) -> list[dict]:
    """Paired bootstrap tests on ROUGE-L and ROUGE-Lsum between every pair of systems.

    `systems` holds (table row, per-example rows) in table order. Each name is
    represented by its lowest seed. Within a pair, system_a is the one with the higher
    mean ROUGE-L, so differences read "how far ahead"; examples are matched by id.
    """
    chosen: dict[str, tuple[dict, list[dict]]] = {}
    for row, examples in systems:
        if examples is None:
            continue
        current = chosen.get(row["name"])
        if current is None or (row["seed"] or 0) < (current[0]["seed"] or 0):
            chosen[row["name"]] = (row, examples)
    scores = {name: _scores_by_id(name, examples) for name, (_, examples) in chosen.items()}
    names = list(chosen)
    pairs = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = (first, second)
            if _mean(scores[b], "rougeL") > _mean(scores[a], "rougeL"):
                a, b = b, a
            pairs.append(_test_pair(a, b, chosen, scores, n_resamples, seed))
    return pairs


def _scores_by_id(name: str, examples: list[dict]) -> dict[str, dict]:
    by_id = {e["id"]: e for e in examples}
    if len(by_id) != len(examples):
        raise ValueError(f"predictions of {name} repeat an example id")
    return by_id


def _mean(by_id: dict[str, dict], key: str) -> float:
    values = [e.get(key) for e in by_id.values()]
    return -math.inf if None in values or not values else sum(values) / len(values)


def _test_pair(a: str, b: str, chosen: dict, scores: dict, n_resamples: int, seed: int) -> dict:
    if scores[a].keys() != scores[b].keys():
        raise ValueError(f"predictions of {a} and {b} cover different test examples")
    ids = list(scores[a])  # a's order; b is matched by id
    pair = {
        "system_a": a,
        "seed_a": chosen[a][0]["seed"],
        "system_b": b,
        "seed_b": chosen[b][0]["seed"],
        "n_examples": len(ids),
    }
    for key in TESTED_METRICS:
        x = [scores[a][i].get(key) for i in ids]
        y = [scores[b][i].get(key) for i in ids]
        if None in x or None in y:
            pair.update(dict.fromkeys([f"{key}_a", f"{key}_b", f"{key}_diff", f"{key}_p"]))
            continue
        pair[f"{key}_a"], pair[f"{key}_b"] = sum(x) / len(x), sum(y) / len(y)
        pair[f"{key}_diff"] = sum(xi - yi for xi, yi in zip(x, y)) / len(x)
        pair[f"{key}_p"] = paired_bootstrap_pvalue(x, y, n_resamples=n_resamples, seed=seed)
    return pair


def method_summary(table: list[dict]) -> list[dict]:
    """One row per name: mean and sample std (ddof=1) of each metric across its seeds."""
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
            entry[f"{key}_mean"], entry[f"{key}_std"] = seed_summary([r[key] for r in rows])
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


def _run_key(record: dict) -> tuple[str, int | None]:
    return record["name"], _normalise_seed(record.get("seed"))


def _normalise_seed(seed) -> int | None:
    # Seeds may arrive as "0" from configs or wildcards; compare them as integers.
    return None if seed is None or seed == "" else int(seed)
