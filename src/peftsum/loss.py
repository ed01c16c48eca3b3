"""Cross-entropy on summary tokens only (labels are IGNORE_INDEX elsewhere)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from peftsum.data.tokenize import IGNORE_INDEX


def summary_nll(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of the summary tokens, and how many there were.

    Logits are computed only from the position before the batch's first summary token on: the
    LM head over the article would be wasted work (most of GPT-2's head FLOPs on CNN/DailyMail).
    """
    labels = batch["labels"]  # (B, T)
    is_target = (labels != IGNORE_INDEX).any(0)
    first = int(is_target.nonzero()[0]) if is_target.any() else labels.shape[1] - 1
    keep = labels.shape[1] - max(first - 1, 0)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   logits_to_keep=keep).logits  # (B, keep, V): positions T-keep .. T-1
    targets = labels[:, labels.shape[1] - keep + 1:]  # token t is predicted from position t-1
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                          ignore_index=IGNORE_INDEX, reduction="sum")
    return nll, int((targets != IGNORE_INDEX).sum())


def summary_nll_after_prefill(decoder, cache, prefix_mask: torch.Tensor, last_tokens: torch.Tensor,
                              summaries: list[list[int]]) -> tuple[torch.Tensor, int]:
    """summary_nll of left-padded sources whose keys and values are already in cache (generation
    put them there), without running the sources again.

    prefix_mask (B, W) covers the cached positions of the sources, a soft prompt's included;
    the last one, last_tokens (B,), is fed again before the summary so that its logits predict
    the summary's first token. Positions follow the mask, as in generate(): each row's text sits
    where it sits unpadded. cache is cut to W - 1 positions and extended in place; decoder is
    the model that owns its layers (without a soft prompt of its own to prepend).
    """
    batch, width = len(summaries), max(1, *map(len, summaries))
    cache.crop(prefix_mask.shape[1] - 1 - cache.get_seq_length())  # a negative count: to drop
    targets = last_tokens.new_full((batch, width), IGNORE_INDEX)
    for row, summary in enumerate(summaries):
        targets[row, :len(summary)] = torch.tensor(summary)
    fed = targets[:, :-1] != IGNORE_INDEX
    feed = torch.cat([last_tokens[:, None], targets[:, :-1].where(fed, 0)], 1)  # (B, width)
    mask = torch.cat([prefix_mask, fed.long()], 1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -width:]
    logits = decoder(input_ids=feed, attention_mask=mask, position_ids=positions,
                     past_key_values=cache, use_cache=True).logits  # (B, width, V)
    nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                          ignore_index=IGNORE_INDEX, reduction="sum")
    return nll, int((targets != IGNORE_INDEX).sum())
