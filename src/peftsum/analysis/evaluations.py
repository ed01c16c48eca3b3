"""Evaluation files read for the tables, checked against each other.

The table shows each evaluation's means from metrics.json; the confidence intervals and the
tests come from the per-article scores in predictions.jsonl beside it. A hand-edited,
truncated or half-copied file would make them disagree silently, so each file is checked
before either is used, with one line naming the file (and the article, where one is missing).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from peftsum import records
from peftsum.errors import UserError
from peftsum.metrics import ROUGE_KEYS
from peftsum.records import MetricsRecord


def read_all(metrics: list[Path], predictions: list[Path] | None
             ) -> list[tuple[MetricsRecord, list[dict] | None]]:
    """(metrics, per-article rows or None) of each evaluation, in order, checked."""
    read = [_read_metrics(Path(path)) for path in metrics]
    if predictions is None:
        return [(m, None) for m in read]
    rows = [_read_predictions(Path(path)) for path in predictions]
    _check_same_articles([Path(p) for p in predictions], rows)
    for path, scores, prediction_path, examples in zip(metrics, read, predictions, rows):
        _check_means(Path(path), scores, Path(prediction_path), examples)
    return list(zip(read, rows))


def _read_metrics(path: Path) -> MetricsRecord:
    metrics = records.read_metrics(path, needs=("name",))
    for key in ROUGE_KEYS:
        value = getattr(metrics, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value <= 100):
            raise UserError(f"{path}: {key} = {value!r} is not a ROUGE score (0 to 100)")
    return metrics


def _read_predictions(path: Path) -> list[dict]:
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{number}: not valid JSON ({err})") from None
            if not isinstance(row, dict) or "id" not in row:
                raise UserError(f"{path}:{number}: a prediction without an id")
            rows.append(row)
    return rows


def _check_same_articles(paths: list[Path], rows: list[list[dict]]) -> None:
    """Every system summarised the same test articles: name the first one missing or extra."""
    if not paths:
        return
    first = [r["id"] for r in rows[0]]
    for path, examples in zip(paths[1:], rows[1:]):
        ids = {r["id"] for r in examples}
        missing = [i for i in first if i not in ids]
        if missing:
            raise UserError(f"{path} lacks test article {missing[0]!r} (in {paths[0]})")
        extra = sorted(ids - set(first), key=str)
        if extra:
            raise UserError(f"{path} has test article {extra[0]!r}, which {paths[0]} lacks")


def _check_means(path: Path, metrics: MetricsRecord, predictions: Path,
                 examples: list[dict]) -> None:
    n_test = metrics.n_test
    if n_test is not None and n_test != len(examples):
        raise UserError(f"{predictions} holds {len(examples)} articles, but {path} says "
                        f"n_test = {n_test}: one of them is incomplete")
    for key in ROUGE_KEYS:
        scores = [e.get(key) for e in examples]
        if getattr(metrics, key) is None or not scores or None in scores:
            continue
        mean = sum(scores) / len(scores)
        if not math.isclose(mean, getattr(metrics, key), rel_tol=1e-9, abs_tol=1e-6):
            raise UserError(f"{path}: {key} = {getattr(metrics, key)}, but its articles' scores in "
                            f"{predictions} average {mean:.6g}: one of them was edited")
