"""Every test metric a table, figure or page shows, declared once: the key it has in
metrics.json, predictions.jsonl and metrics.tsv, its label, its digits and its direction.

Evaluation computes the keys, the report and the explorer read labels and directions from here,
so that a metric added or renamed here is added or renamed everywhere. No torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str  # in metrics.json, predictions.jsonl and metrics.tsv
    label: str  # in tables, figures and the explorer
    digits: int  # decimals shown
    higher_is_better: bool


# ROUGE F1 x 100 (rouge_score, stemmed); rougeLsum splits sentences at newlines.
ROUGE = (
    Metric("rouge1", "ROUGE-1", 2, True),
    Metric("rouge2", "ROUGE-2", 2, True),
    Metric("rougeL", "ROUGE-L", 2, True),
    Metric("rougeLsum", "ROUGE-Lsum", 2, True),
)
ROUGE_1, ROUGE_2, ROUGE_L, ROUGE_LSUM = ROUGE  # by name, for the code that picks one
ROUGE_KEYS = tuple(metric.key for metric in ROUGE)
# Per summary, in predictions.jsonl: the explorer shows and sorts by them.
LENGTHS = (
    Metric("gen_tokens", "Generated tokens", 0, False),
    Metric("pred_words", "Words", 0, False),
)
BY_KEY = {metric.key: metric for metric in ROUGE + LENGTHS}
