"""One prompt template for every method: prefix + article + suffix, then summary + EOS.

The article alone is truncated, so that reserved positions (a soft prompt) + source +
max_target_tokens always fit the model's context. Loss labels cover the summary and EOS only.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path

from peftsum.config import TemplateConfig
from peftsum.data.sources import SPLITS
from peftsum.errors import UserError
from peftsum.io import read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # positions that cross-entropy skips


def make_labels(input_ids: list[int], source_len: int) -> list[int]:
    """Labels equal the input on summary + EOS tokens and IGNORE_INDEX on the source."""
    return [IGNORE_INDEX] * source_len + list(input_ids[source_len:])


def source_budget(template: TemplateConfig, context: int, reserved: int) -> int:
    """Tokens left for prefix + article + suffix."""
    budget = min(template.max_length, context) - reserved - template.max_target_tokens
    if budget < 16:
        raise UserError(
            f"template.max_length leaves only {budget} source tokens after {reserved} soft-prompt "
            f"positions and {template.max_target_tokens} target tokens"
        )
    return budget


class Encoder:
    """Turns (article, summary) pairs into token ids with the template."""

    def __init__(self, tokenizer, template: TemplateConfig, budget: int):
        self.tokenizer = tokenizer
        self.template = template
        self.prefix = self._ids([template.prefix])[0]
        self.suffix = self._ids([template.suffix])[0]
        self.article_budget = budget - len(self.prefix) - len(self.suffix)

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def encode(self, articles: list[str], summaries: list[str]) -> list[dict]:
        eos = self.tokenizer.eos_token_id
        max_summary = self.template.max_target_tokens - 1  # one position for EOS
        rows = []
        for article, target in zip(
            self._ids(articles),
            self._ids([self.template.summary_prefix + s for s in summaries]),
        ):
            source = self.prefix + article[: self.article_budget] + self.suffix
            rows.append({
                "input_ids": source + target[:max_summary] + [eos],
                "source_len": len(source),
                "article_tokens": len(article),
                "summary_tokens": len(target),
            })
        return rows


def _length_stats(lengths: list[int], limit: int) -> dict:
    ordered = sorted(lengths)
    return {
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
        "limit": limit,
        "truncated_rate": sum(n > limit for n in ordered) / len(ordered),
    }


def run(tokenizer, context: int, split_dir: Path, out_dir: Path, template: TemplateConfig,
        reserved: int) -> dict:
    """Write out_dir/{split}.jsonl (id, input_ids, source_len) and out_dir/stats.json."""
    encoder = Encoder(tokenizer, template, source_budget(template, context, reserved))
    stats = {"reserved_positions": reserved, "max_length": min(template.max_length, context)}
    for split in SPLITS:
        examples = read_jsonl(Path(split_dir) / f"{split}.jsonl")
        encoded = encoder.encode([e["article"] for e in examples], [e["highlights"] for e in examples])
        write_jsonl(Path(out_dir) / f"{split}.jsonl", (
            {"id": e["id"], "input_ids": r["input_ids"], "source_len": r["source_len"]}
            for e, r in zip(examples, encoded)
        ))
        stats[split] = {
            "article_tokens": _length_stats([r["article_tokens"] for r in encoded],
                                            encoder.article_budget),
            "summary_tokens": _length_stats([r["summary_tokens"] for r in encoded],
                                            template.max_target_tokens - 1),
        }
    write_json(Path(out_dir) / "stats.json", stats)
    log.info("tokenized: %s", {s: stats[s]["article_tokens"] for s in SPLITS})
    return stats
