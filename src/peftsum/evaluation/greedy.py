"""Greedy decoding that stops computing a summary once it has ended.

HF generate() keeps every row of a batch in every step until the last row ends: in the study's
evaluation ~40 % of the decoded row-steps belonged to summaries already past their EOS. Here
generate() makes only the first token (the prefill: every method keeps its own way of putting a
prompt before the sources), and the model that owns the cache (generate.cache_owner) continues
it over the rows still running; rows that ended leave the batch and the cache a few at a time.
Each step is HF's greedy step: the logits processors on the tokens generated so far, argmax,
and the mask and positions generate() would give (tests/test_methods_kinds.py: the same tokens
as generate() for every kind of method). On the CPU the prefill can run in length groups whose
caches are merged (prefill_grouped), so that short sources are not computed at the longest's
width.
"""

from __future__ import annotations

import dataclasses

import torch
from transformers import LogitsProcessor, LogitsProcessorList, NoRepeatNGramLogitsProcessor

from peftsum.evaluation.kv_cache import growing_cache, stack_left_padded

# Rows that ended are dropped once they are this share of the batch: each drop copies the cache.
DROP_SHARE = 0.25


@dataclasses.dataclass
class Prefilled:
    first_logits: torch.Tensor  # (B, V) fp32: the raw logits of the first new token
    first_tokens: torch.Tensor  # (B,)
    prefix_mask: torch.Tensor  # (B, P + W): the cached positions, a soft prompt's then the sources'


class _KeepFirstLogits(LogitsProcessor):
    def __init__(self):
        self.logits: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.logits = scores.clone()
        return scores


def prefill(model, sources: dict[str, torch.Tensor], cache, pad_id: int) -> Prefilled:
    """generate() of one token for left-padded sources: the cache then holds whatever the method
    puts before them (a soft prompt, P-tuning's virtual tokens) and the sources."""
    keep = _KeepFirstLogits()
    out = model.generate(**sources, max_new_tokens=1, do_sample=False, num_beams=1,
                         past_key_values=cache, logits_processor=LogitsProcessorList([keep]),
                         pad_token_id=pad_id)
    mask = sources["attention_mask"]
    before = cache.get_seq_length() - mask.shape[1]
    return Prefilled(keep.logits, out[:, -1], torch.cat([mask.new_ones(len(mask), before), mask], 1))


def length_groups(lengths: list[int], overhead: int) -> list[range]:
    """Consecutive rows in groups that minimise the prefill's tokens, each group padded to its
    longest row, plus `overhead` tokens for each group (what one more forward costs)."""
    best, cut = [0] + [float("inf")] * len(lengths), [0] * (len(lengths) + 1)
    for end in range(1, len(lengths) + 1):
        width = 0
        for start in range(end - 1, -1, -1):
            width = max(width, lengths[start])
            cost = best[start] + (end - start) * width + overhead
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], len(lengths)
    while end:
        groups.append(range(cut[end], end))
        end = cut[end]
    return groups[::-1]


def prefill_grouped(model, sources: dict[str, torch.Tensor], reserve: int, pad_id: int,
                    overhead: int | None):
    """prefill() in length_groups, their caches merged into one left-padded cache of the whole
    batch: the padding of rows much shorter than the longest is not computed (overhead None:
    one group). Returns the Prefilled and the cache, with room for `reserve` more tokens."""
    mask = sources["attention_mask"]
    lengths = mask.sum(-1).tolist()
    groups = [range(len(lengths))] if overhead is None else length_groups(lengths, overhead)
    if len(groups) == 1:
        cache = growing_cache(reserve)
        return prefill(model, sources, cache, pad_id), cache
    caches, starts = [], []
    for rows in groups:
        width = max(lengths[i] for i in rows)
        caches.append(growing_cache(reserve))
        starts.append(prefill(model, {k: v[rows.start:rows.stop, v.shape[1] - width:]
                                      for k, v in sources.items()}, caches[-1], pad_id))
    before = starts[0].prefix_mask.shape[1] - max(lengths[i] for i in groups[0])
    start = Prefilled(torch.cat([s.first_logits for s in starts]),
                      torch.cat([s.first_tokens for s in starts]),
                      torch.cat([mask.new_ones(len(mask), before), mask], 1))
    return start, stack_left_padded(caches, before, mask.shape[1], reserve)


def decode(owner, cache, start: Prefilled, max_new_tokens: int, eos_id: int, pad_id: int,
           no_repeat_ngram_size: int = 0) -> list[list[int]]:
    """The new tokens of every row (first included), up to its EOS or max_new_tokens; rows past
    their EOS hold pad_id until they leave the batch."""
    blocker = NoRepeatNGramLogitsProcessor(no_repeat_ngram_size) if no_repeat_ngram_size else None
    # The batch rows still in the cache, on the device of the masks that select among them.
    rows = torch.arange(len(start.first_tokens), device=start.first_tokens.device)
    tokens, mask = start.first_tokens[:, None], start.prefix_mask
    ended = tokens[:, -1] == eos_id
    results: dict[int, list[int]] = {}
    for _ in range(max_new_tokens - 1):
        if ended.all():
            break
        if ended.sum() >= max(1, DROP_SHARE * len(rows)):
            results.update(zip(rows[ended].tolist(), tokens[ended].tolist()))
            keep = (~ended).nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, tokens, mask, ended = rows[keep], tokens[keep], mask[keep], ended[keep]
        positions = mask.sum(-1, keepdim=True)  # the new token's: the cumsum of the mask - 1
        mask = torch.cat([mask, mask.new_ones(len(mask), 1)], 1)
        logits = owner(input_ids=tokens[:, -1:], attention_mask=mask, position_ids=positions,
                       past_key_values=cache, use_cache=True).logits[:, -1].float()
        if blocker is not None:
            logits = blocker(tokens, logits)
        new = logits.argmax(-1).where(~ended, pad_id)
        tokens = torch.cat([tokens, new[:, None]], 1)
        ended = ended | (new == eos_id)
    results.update(zip(rows.tolist(), tokens.tolist()))
    return [results[row] for row in range(len(start.first_tokens))]
