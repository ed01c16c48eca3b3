"""Cross-entropy on summary tokens only (labels are IGNORE_INDEX elsewhere): the training loss,
the validation loss that picks the best weights, and the test loss that evaluation reports."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from peftsum.data.batches import collate, sorted_batches
from peftsum.data.tokenize import IGNORE_INDEX
from peftsum.runtime.precision import autocast


def summary_span(labels: torch.Tensor) -> tuple[int, int]:
    """The batch's first summary column and its number of summary tokens that can be predicted
    (all but a label in column 0). From labels on the host, no GPU sync is needed."""
    is_target = (labels != IGNORE_INDEX).any(0)
    first = int(is_target.nonzero()[0]) if is_target.any() else labels.shape[1] - 1
    return first, int((labels[:, 1:] != IGNORE_INDEX).sum())


def logit_columns(labels: torch.Tensor, span: tuple[int, int]) -> int:
    """How many of the last columns the loss pass computes logits for: from the one before the
    batch's first summary column (span: summary_span of labels) to the end."""
    return labels.shape[1] - max(span[0] - 1, 0)


def summary_nll(model, batch: dict[str, torch.Tensor], span: tuple[int, int] | None = None
                ) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of the summary tokens, and how many there were; span:
    summary_span of the batch's labels, when already known.

    Logits are computed only from the position before the batch's first summary token on: the
    LM head over the article would be wasted work (most of GPT-2's head FLOPs on CNN/DailyMail).
    """
    labels = batch["labels"]  # (B, T)
    span = span or summary_span(labels)
    keep, count = logit_columns(labels, span), span[1]
    # use_cache=False: HF models default to the config's use_cache, and a cache would copy every
    # layer's keys and values (torch.cat) in a pass that never decodes.
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   logits_to_keep=keep, use_cache=False).logits  # (B, keep, V): T-keep .. T-1
    targets = labels[:, labels.shape[1] - keep + 1:]  # token t is predicted from position t-1
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                          ignore_index=IGNORE_INDEX, reduction="sum")
    return nll, count


def summary_nll_after_prefill(decoder, cache, prefix_mask: torch.Tensor, first_logits: torch.Tensor,
                              summaries: list[list[int]]) -> tuple[torch.Tensor, int]:
    """summary_nll of left-padded sources whose keys and values are already in cache (generation's
    prefill put them there), without running the sources again.

    prefix_mask (B, W) covers the cached positions, a soft prompt's included; first_logits (B, V)
    are the prefill's logits at the last of them, which predict each summary's first token. The
    rest of each summary is fed after the cache with positions that follow the mask, as in
    generate(): each row's text sits where it sits unpadded. The cache is then cut back to the W
    positions, for generation to go on from there; decoder is the model that owns its layers
    (without a soft prompt of its own to prepend).
    """
    batch, width = len(summaries), max(1, *map(len, summaries))
    targets = first_logits.new_full((batch, width), IGNORE_INDEX, dtype=torch.long)
    for row, summary in enumerate(summaries):
        targets[row, :len(summary)] = torch.tensor(summary)
    nll = F.cross_entropy(first_logits.float(), targets[:, 0], ignore_index=IGNORE_INDEX,
                          reduction="sum")
    if width > 1:
        fed = targets[:, :-1] != IGNORE_INDEX
        mask = torch.cat([prefix_mask, fed.long()], 1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -(width - 1):]
        logits = decoder(input_ids=targets[:, :-1].where(fed, 0), attention_mask=mask,
                         position_ids=positions, past_key_values=cache,
                         use_cache=True).logits  # (B, width - 1, V)
        nll = nll + F.cross_entropy(logits.flatten(0, 1).float(), targets[:, 1:].flatten(),
                                    ignore_index=IGNORE_INDEX, reduction="sum")
        cache.crop(-(width - 1))
    return nll, int((targets != IGNORE_INDEX).sum())


@torch.no_grad()
def loss_sums(model, examples: list[dict], batch_size: int, pad_id: int, dev,
              dtype: torch.dtype | None = None) -> tuple[float, int]:
    """Summed negative log-likelihood of all summary tokens, and their number."""
    model.eval()
    total, count = 0.0, 0
    for batch in sorted_batches([len(e["input_ids"]) for e in examples], batch_size):
        tensors = {k: v.to(dev) for k, v in collate([examples[i] for i in batch], pad_id).items()}
        with autocast(dev, dtype):
            nll, n = summary_nll(model, tensors)
        total, count = total + nll.item(), count + n
    return total, count


def mean_loss(model, examples: list[dict], batch_size: int, pad_id: int, dev,
              dtype: torch.dtype | None = None) -> float:
    """Mean negative log-likelihood per summary token over the whole set (not per batch)."""
    total, count = loss_sums(model, examples, batch_size, pad_id, dev, dtype)
    return total / count
