"""One prompt template for every method: prefix + article + suffix, then summary + EOS.

The article alone is truncated, so that reserved positions (a soft prompt) + source +
max_target_tokens always fit the model's context. Loss labels cover the summary and EOS only.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
from pathlib import Path

from peftsum.config import TemplateConfig
from peftsum.data.sources import SPLITS
from peftsum.errors import UserError
from peftsum.files import read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # positions that cross-entropy skips
MIN_SOURCE_TOKENS = 16  # fewer, and a template leaves no room for the article worth the name


def make_labels(input_ids: list[int], source_len: int) -> list[int]:
    """Labels equal the input on summary + EOS tokens and IGNORE_INDEX on the source."""
    return [IGNORE_INDEX] * source_len + list(input_ids[source_len:])


def source_budget(template: TemplateConfig, context: int, reserved: int) -> int:
    """Tokens left for prefix + article + suffix."""
    budget = min(template.max_length, context) - reserved - template.max_target_tokens
    if budget < MIN_SOURCE_TOKENS:
        raise UserError(
            f"template.max_length leaves only {budget} source tokens after {reserved} soft-prompt "
            f"positions and {template.max_target_tokens} target tokens"
        )
    return budget


class Encoder:
    """Turns (article, summary) pairs into token ids with the template."""

    def __init__(self, tokenizer, template: TemplateConfig, budget: int,
                 parts: str = "template.prefix and template.suffix", min_article: int = 1):
        self.tokenizer = tokenizer
        self.template = template
        self.prefix = self._ids([template.prefix])[0]
        self.suffix = self._ids([template.suffix])[0]
        self.article_budget = budget - len(self.prefix) - len(self.suffix)
        # Otherwise rows outgrow the context and training fails far later with an IndexError.
        if self.article_budget < min_article:
            raise UserError(
                f"{parts} take {len(self.prefix) + len(self.suffix)} of the {budget} source "
                f"tokens (template.max_length less target and soft-prompt positions), leaving "
                f"{self.article_budget} for the article, fewer than {min_article}: shorten "
                "them or raise template.max_length")

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


def chat_template(tokenizer, template: TemplateConfig, instruction: str) -> TemplateConfig:
    """The template with the article inside a user turn of the tokenizer's chat template.

    For instruct models: prefix = the chat text up to the article (system turn, user header,
    instruction), suffix = the rest up to the assistant header. The article is truncated in
    tokens between the two, as with the plain template.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the zero_shot_chat baseline needs a chat template, and this model's "
                        "tokenizer has none: use an instruct model or drop zero_shot_chat from "
                        "evaluation.baselines")
    marker = "\x00ARTICLE\x00"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": f"{instruction}\n\n{marker}"}],
        tokenize=False, add_generation_prompt=True)
    prefix, suffix = text.split(marker)
    return dataclasses.replace(template, prefix=prefix, suffix=suffix, summary_prefix="")


def _length_stats(lengths: list[int], limit: int) -> dict:
    ordered = sorted(lengths)
    return {
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
        "limit": limit,
        "truncated_rate": sum(n > limit for n in ordered) / len(ordered),
    }


def encode_split(encoder: Encoder, split_file: Path, out_file: Path) -> dict:
    """Write out_file (id, input_ids, source_len); return the article and summary length stats."""
    examples = read_jsonl(split_file)
    encoded = encoder.encode([e["article"] for e in examples], [e["highlights"] for e in examples])
    write_jsonl(out_file, (
        {"id": e["id"], "input_ids": r["input_ids"], "source_len": r["source_len"]}
        for e, r in zip(examples, encoded)
    ))
    return {
        "article_tokens": _length_stats([r["article_tokens"] for r in encoded],
                                        encoder.article_budget),
        "summary_tokens": _length_stats([r["summary_tokens"] for r in encoded],
                                        encoder.template.max_target_tokens - 1),
    }


def run(tokenizer, context: int, split_dir: Path, out_dir: Path, template: TemplateConfig,
        reserved: int) -> dict:
    """Write out_dir/{split}.jsonl (id, input_ids, source_len) and out_dir/stats.json."""
    encoder = Encoder(tokenizer, template, source_budget(template, context, reserved),
                      min_article=MIN_SOURCE_TOKENS)
    stats = {"reserved_positions": reserved, "max_length": min(template.max_length, context),
             "template": dataclasses.asdict(template)}
    for split in SPLITS:
        stats[split] = encode_split(encoder, Path(split_dir) / f"{split}.jsonl",
                                    Path(out_dir) / f"{split}.jsonl")
    write_json(Path(out_dir) / "stats.json", stats)
    log.info("tokenized: %s", {s: stats[s]["article_tokens"] for s in SPLITS})
    return stats


def run_chat(tokenizer, context: int, split_file: Path, out_file: Path, template: TemplateConfig,
             reserved: int, instruction: str) -> dict:
    """Write out_file: one split encoded with the chat template, in the same source budget."""
    chat = chat_template(tokenizer, template, instruction)
    encoder = Encoder(tokenizer, chat, source_budget(template, context, reserved),
                      "the chat template and evaluation.chat_instruction", MIN_SOURCE_TOKENS)
    stats = encode_split(encoder, Path(split_file), Path(out_file))
    log.info("tokenized with the chat template: %s", stats["article_tokens"])
    return stats
