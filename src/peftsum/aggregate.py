"""Join evaluation metrics with their training runs into one tidy results table.

Only reads JSON files (no torch/transformers), so the table can be rebuilt on
any machine from copied results.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from peftsum.io import read_json, write_atomic

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
]
_RESOURCE_COLUMNS = [
    "train_wall_s",
    "tokens_per_s",
    "peak_rss_mb",
    "peak_gpu_mb",
    "optimizer_steps",
]


def run(
    eval_metrics: list[Path], train_runs: list[Path], out_tsv: Path, out_json: Path
) -> list[dict]:
    """Build the results table, write it as TSV and JSON, and return its rows.

    Rows with a matching run.json (same name and seed) come first, in the order
    of `train_runs`; rows without one (baselines) follow in the order of `eval_metrics`.
    """
    runs = [read_json(path) for path in train_runs]
    run_position = {_run_key(r): i for i, r in enumerate(runs)}
    rows = []
    for metrics in map(read_json, eval_metrics):
        position = run_position.get(_run_key(metrics))
        train_run = runs[position] if position is not None else None
        rows.append((position, table_row(metrics, train_run)))
    # Stable sort: trained rows by run order, baselines (no run) keep eval order at the end.
    rows.sort(key=lambda item: (item[0] is None, item[0] or 0))
    table = [row for _, row in rows]
    write_atomic(out_tsv, to_tsv(table))
    write_atomic(out_json, json.dumps(table, indent=2, ensure_ascii=False) + "\n")
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
    )
    return columns


def to_tsv(rows: list[dict]) -> str:
    """Tab-separated text with a header; None becomes an empty cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if row[col] is None else row[col] for col in COLUMNS])
    return buffer.getvalue()


def _run_key(record: dict) -> tuple[str, int | None]:
    return record["name"], _normalise_seed(record.get("seed"))


def _normalise_seed(seed) -> int | None:
    # Seeds may arrive as "0" from configs or wildcards; compare them as integers.
    return None if seed is None or seed == "" else int(seed)
